"""Fixtures for every test folder: journalist keypairs made once, a fresh desk per test, its
apps and clients, and a real `desk serve source` for tests that need a real HTTP server. What
they are made of is in tests/harness/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from desk.app import create_app
from desk.config import Config
from desk.services import Services
from tests.harness.desks import add_account, desk_config, kill_gpg_agents, let_log_in, new_desk
from tests.harness.gpg import Keypair, make_keypair
from tests.harness.http import TIMEOUT
from tests.harness.servers import Server, start_server
from tests.harness.web import SourceBrowser, journalist_log_in


@pytest.fixture(scope="session", autouse=True)
def _stop_gpg_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Stop the gpg-agent that stock gpg starts for each GnuPG home the tests made."""
    yield
    kill_gpg_agents(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def journalist(tmp_path_factory: pytest.TempPathFactory) -> Keypair:
    """A journalist's Ed25519/Curve25519 keypair, made once with stock gpg."""
    return make_keypair(tmp_path_factory.mktemp("keys") / "alice", "Alice")


@pytest.fixture(scope="session")
def second_journalist(tmp_path_factory: pytest.TempPathFactory) -> Keypair:
    """A second journalist, with an RSA-3072 key."""
    return make_keypair(tmp_path_factory.mktemp("keys") / "bob", "Bob", algorithm="rsa3072",
                        subkey="rsa3072")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A desk configuration in a fresh temporary data directory, with a cheap KDF."""
    return desk_config(tmp_path / "data")


@pytest.fixture
def empty_desk(config: Config) -> Iterator[Services]:
    """An initialised desk with no journalist yet."""
    services = new_desk(config)
    yield services
    services.engine.dispose()


@pytest.fixture
def desk(empty_desk: Services, journalist: Keypair) -> Services:
    """An initialised desk with one journalist whose key is valid."""
    add_account(empty_desk, "alice", journalist)
    return empty_desk


@pytest.fixture
def app(desk: Services) -> Flask:
    """The source app of `desk`."""
    return create_app(desk.config, "source", services=desk)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the source app."""
    return app.test_client()


@pytest.fixture
def accounts(desk: Services, second_journalist: Keypair) -> Services:
    """`desk` with two accounts that can log in: alice (admin) and bob (not an admin)."""
    let_log_in(desk, "alice", admin=True)
    add_account(desk, "bob", second_journalist, can_log_in=True)
    return desk


@pytest.fixture
def journalist_app(accounts: Services) -> Flask:
    """The journalist app of `accounts`."""
    return create_app(accounts.config, "journalist", services=accounts)


@pytest.fixture
def alice(journalist_app: Flask, accounts: Services) -> FlaskClient:
    """A client logged in as alice, an admin."""
    client = journalist_app.test_client()
    assert journalist_log_in(client, accounts, "alice").status_code == 302
    return client


@pytest.fixture
def bob(journalist_app: Flask, accounts: Services) -> FlaskClient:
    """A client logged in as bob, who is not an admin."""
    client = journalist_app.test_client()
    assert journalist_log_in(client, accounts, "bob").status_code == 302
    return client


@pytest.fixture
def source(client: FlaskClient) -> SourceBrowser:
    """A source who already has a codename."""
    browser = SourceBrowser(client)
    browser.get_codename()
    return browser


@pytest.fixture
def server(desk: Services, tmp_path: Path) -> Iterator[Server]:
    """The source interface of `desk` under gunicorn, with its own TMPDIR to scan."""
    started = start_server(desk.config.data_dir, "source", log=tmp_path / "server.log",
                           tmpdir=tmp_path / "server-tmp", timeout=30, env={
                               "DESK_MAX_UPLOAD_BYTES": str(desk.config.max_upload_bytes)})
    yield started
    started.stop(timeout=30)


@pytest.fixture
def bounded_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give every `requests` call in the test a timeout (tuspy sets none)."""
    original = requests.Session.request

    def request(self: requests.Session, method: str, url: str, **kwargs: object
                ) -> requests.Response:
        kwargs["timeout"] = kwargs.get("timeout") or TIMEOUT
        return original(self, method, url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(requests.Session, "request", request)
