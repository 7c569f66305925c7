"""Shared fixtures: journalist keypairs made once, a fresh desk per test, the source client,
and a real `desk serve` process for tests that need a real HTTP server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from crypto.kdf import KdfParams
from desk.app import create_app
from desk.config import Config
from desk.records.accounts import add_journalist
from desk.records.instance import init_desk
from desk.services import Services, open_services
from tests.forms import CODENAME_RE, FormBody, csrf_token
from tests.gpgtool import Keypair, make_keypair

# Argon2id's smallest legal cost: the tests derive many codenames and prove nothing about cost.
CHEAP_KDF = KdfParams(memory_cost=8, iterations=1, lanes=1)
DESK_COMMAND = str(Path(sys.executable).parent / "desk")


@pytest.fixture(scope="session", autouse=True)
def _stop_gpg_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Stop the gpg-agent that stock gpg starts for each GnuPG home the tests made."""
    yield
    for keyring in tmp_path_factory.getbasetemp().rglob("pubring.kbx"):
        subprocess.run(["gpgconf", "--homedir", str(keyring.parent), "--kill", "gpg-agent"],
                       capture_output=True, check=False, timeout=30)


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
    data = tmp_path / "data"
    return Config(data_dir=data, database_url=f"sqlite:///{data / 'desk.db'}",
                  max_upload_bytes=64 * 1024 * 1024, kdf=CHEAP_KDF)


@pytest.fixture
def empty_desk(config: Config) -> Iterator[Services]:
    """An initialised desk with no journalist yet."""
    init_desk(config)
    services = open_services(config)
    yield services
    services.engine.dispose()


@pytest.fixture
def desk(empty_desk: Services, journalist: Keypair) -> Services:
    """An initialised desk with one journalist whose key is valid."""
    with empty_desk.sessions() as session:
        add_journalist(session, empty_desk.gpg, "alice", journalist.public_key.read_bytes())
        session.commit()
    return empty_desk


@pytest.fixture
def app(desk: Services) -> Flask:
    """The source app of `desk`."""
    return create_app(desk.config, "source", services=desk)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the source app."""
    return app.test_client()


PASSWORDS = {"alice": "alice-long-passphrase-1", "bob": "bob-long-passphrase-22"}


@pytest.fixture
def accounts(desk: Services, second_journalist: Keypair) -> Services:
    """`desk` with two accounts that can log in: alice (admin) and bob (not an admin)."""
    from desk.records.accounts import find_journalist
    from desk.records.credentials import hash_password, new_totp_secret

    with desk.sessions() as session:
        alice = find_journalist(session, "alice")
        alice.is_admin = True
        alice.password_hash = hash_password(PASSWORDS["alice"], CHEAP_KDF)
        alice.totp_secret = new_totp_secret()
        add_journalist(session, desk.gpg, "bob", second_journalist.public_key.read_bytes(),
                       password=PASSWORDS["bob"], kdf=CHEAP_KDF)
        session.commit()
    desk.recipients.invalidate()
    return desk


def fresh_code(services: Services, username: str) -> str:
    """A TOTP code the account has not used yet (within the allowed drift of one step)."""
    from datetime import UTC, datetime

    from desk.records.accounts import find_journalist
    from desk.records.credentials import TOTP_STEP_SECONDS, totp_code

    with services.sessions() as session:
        journalist = find_journalist(session, username)
        secret, last = journalist.totp_secret, journalist.totp_last_step
    assert secret is not None
    now = int(datetime.now(UTC).timestamp()) // TOTP_STEP_SECONDS
    step = next(s for s in (now - 1, now, now + 1) if last is None or s > last)
    return totp_code(secret, datetime.fromtimestamp(step * TOTP_STEP_SECONDS, UTC))


@pytest.fixture
def journalist_app(accounts: Services) -> Flask:
    """The journalist app of `accounts`."""
    return create_app(accounts.config, "journalist", services=accounts)


def log_in(client: FlaskClient, services: Services, username: str,
           password: str | None = None, code: str | None = None) -> TestResponse:
    """Post the login form."""
    token = csrf_token(client.get("/login").text)
    return client.post("/login", data={
        "csrf_token": token, "username": username,
        "password": PASSWORDS.get(username, "") if password is None else password,
        "code": fresh_code(services, username) if code is None else code})


@pytest.fixture
def alice(journalist_app: Flask, accounts: Services) -> FlaskClient:
    """A client logged in as alice, an admin."""
    client = journalist_app.test_client()
    assert log_in(client, accounts, "alice").status_code == 302
    return client


@pytest.fixture
def bob(journalist_app: Flask, accounts: Services) -> FlaskClient:
    """A client logged in as bob, who is not an admin."""
    client = journalist_app.test_client()
    assert log_in(client, accounts, "bob").status_code == 302
    return client


class SourceBrowser:
    """A source walking through the interface in one browser session."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.codename: str | None = None

    def get_codename(self) -> str:
        """Open the landing page and press the codename button."""
        token = csrf_token(self.client.get("/").text)
        page = self.client.post("/generate", data={"csrf_token": token})
        assert page.status_code == 200
        match = CODENAME_RE.search(page.text)
        assert match, "no codename shown"
        self.codename = match.group(1)
        return self.codename

    def form_token(self) -> str:
        """The CSRF token of a freshly opened submit form."""
        page = self.client.get("/submit")
        assert page.status_code == 200, page.status_code
        return csrf_token(page.text)

    def submit(self, body: FormBody) -> TestResponse:
        """Post a hand-built form body."""
        return self.client.post("/submit", data=body.encode(),
                                content_type=body.content_type)

    def send(self, message: str = "", files: tuple[tuple[bytes | str, bytes], ...] = ()
             ) -> TestResponse:
        """Fill in the submit form as a browser would and send it."""
        body = FormBody().field("csrf_token", self.form_token()).field("message", message)
        for name, data in files:
            body.file(name, data)
        return self.submit(body)


@pytest.fixture
def source(client: FlaskClient) -> SourceBrowser:
    """A source who already has a codename."""
    browser = SourceBrowser(client)
    browser.get_codename()
    return browser


@dataclass(frozen=True)
class StoredObject:
    """A published object read back with stock gpg."""

    path: Path
    record: dict[str, object]
    plaintext: bytes


def read_objects(config: Config, keypair: Keypair) -> list[StoredObject]:
    """Decrypt every published object with stock gpg and `keypair`'s secret key alone."""
    objects = []
    for path in sorted((config.store_dir / "objects").iterdir()):
        record = json.loads(keypair.decrypt(path / "meta.gpg"))
        parts = sorted(path.glob("part-*.gpg"))
        objects.append(StoredObject(path, record, b"".join(keypair.decrypt(p) for p in parts)))
    return objects


def files_under(*roots: Path) -> list[Path]:
    """Every regular file below `roots`."""
    return [p for root in roots if root.is_file() for p in (root,)] + \
        [p for root in roots if root.is_dir() for p in root.rglob("*") if p.is_file()]


def find_markers(markers: list[bytes], *roots: Path) -> list[tuple[Path, bytes]]:
    """Every (file, marker) pair where a marker occurs in a file below `roots`."""
    hits = []
    for path in files_under(*roots):
        data = path.read_bytes()
        hits += [(path, marker) for marker in markers if marker in data]
    return hits


def run_desk(*args: str, data_dir: Path, extra_env: dict[str, str] | None = None,
             check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the installed `desk` command against `data_dir`."""
    env = {**os.environ, "DESK_DATA": str(data_dir), **(extra_env or {})}
    return subprocess.run([DESK_COMMAND, *args], env=env, capture_output=True, text=True,
                          check=check, timeout=120)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A `desk serve source` process on 127.0.0.1."""

    url: str
    process: subprocess.Popen[bytes]
    tmpdir: Path
    log: Path

    def worker_pids(self) -> list[int]:
        """The gunicorn worker processes (children of the arbiter)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]


@pytest.fixture
def server(desk: Services, tmp_path: Path) -> Iterator[Server]:
    """The source interface of `desk` under gunicorn, with its own TMPDIR to scan."""
    port, tmpdir, log = free_port(), tmp_path / "server-tmp", tmp_path / "server.log"
    tmpdir.mkdir()
    env = {**os.environ, "DESK_DATA": str(desk.config.data_dir), "TMPDIR": str(tmpdir),
           "DESK_MAX_UPLOAD_BYTES": str(desk.config.max_upload_bytes)}
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [DESK_COMMAND, "serve", "source", "--port", str(port)],
            env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"desk serve did not start:\n{log.read_text()}") from None
            time.sleep(0.1)
    yield Server(url, process, tmpdir, log)
    process.terminate()
    process.wait(timeout=30)
