"""The desk the bad-input tests share, the tokens they use, a source on a real server, and the
tally's place at the end of the folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.gpg import Keypair
from tests.harness.refusals import RawSource, Target, make_target, make_tokens, open_raw_source
from tests.harness.servers import Server

HERE = Path(__file__).parent
TALLY = HERE / "test_tally.py"


@pytest.fixture(scope="package")
def target(tmp_path_factory: pytest.TempPathFactory, journalist: Keypair) -> Iterator[Target]:
    """One desk for every test-client request in this folder; each request is compared with a
    snapshot taken just before it, so sharing it hides nothing."""
    made = make_target(tmp_path_factory.mktemp("bad-input"), journalist)
    yield made
    made.desk.engine.dispose()


@pytest.fixture(scope="package")
def tokens(target: Target) -> dict[str, str]:
    """CSRF tokens: the target source's own, and every kind it must not be able to use."""
    return make_tokens(target)


@pytest.fixture
def raw_source(server: Server) -> RawSource:
    """A source on the real server with a codename, its form token and a tus upload."""
    return open_raw_source(server.url)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tally counts what the other tests of this folder sent: it runs after them."""
    tally = [item for item in items if item.path == TALLY]
    rest = [item for item in items if item.path != TALLY]
    if not tally:
        return
    mine = [i for i, item in enumerate(rest) if item.path.parent == HERE]
    at = mine[-1] + 1 if mine else len(rest)
    items[:] = rest[:at] + tally + rest[at:]
