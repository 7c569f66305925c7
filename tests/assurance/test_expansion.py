"""Messages that expand: the console stops every decryption at its bound.

The desk never compresses what it encrypts (FORMAT.md, "OpenPGP files"), and an uncompressed
OpenPGP message is always longer than its plaintext. A compressed one has no such bound: a few
hundred bytes of bzip2 decrypt to 64 MiB here, and to gigabytes at no more cost to whoever
makes them, needing only a journalist's public key. These tests put such messages where a
tampered bundle (its manifest, its custody log) or workspace (a message's or a file's part)
would, and check that `desk-review` stops each one at the message's own size or at the size
its record gives, says so in one line and keeps nothing; and that a message is never decrypted
into memory past what a source can send.

One desk, export and workspace per module (tests/harness/tampering.py, make_evidence).
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from crypto.errors import PlaintextTooLarge
from crypto.gpg import GnuPG
from crypto.items import MAX_MESSAGE_BYTES
from crypto.names import PARTIAL_MARK
from tests.harness.console import BUNDLE_ROOT, diagnostic, review, tar_members, write_tar
from tests.harness.desks import files_under
from tests.harness.gpg import Keypair
from tests.harness.tampering import (
    Evidence,
    assert_workspace_empty,
    compressed_bomb,
    copy_workspace,
    make_evidence,
)

BOMB_BYTES = 64 * 1024 * 1024
COMPRESSED = re.compile(r"it expands beyond its own (\d+) bytes, so it is compressed, which "
                        r"the desk never does")
REFUSED_HINT = "nothing was imported"


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory, journalist: Keypair) -> Evidence:
    """A desk after one export, its bundle, and a workspace that imported it."""
    return make_evidence(tmp_path_factory.mktemp("expansion"), journalist)


@pytest.fixture(scope="module")
def bomb(journalist: Keypair) -> bytes:
    """A few hundred bytes to alice that decrypt to 64 MiB."""
    return compressed_bomb(journalist, BOMB_BYTES)


def partial_files(*roots: Path) -> list[Path]:
    """What a decryption left under its temporary name."""
    return [path for path in files_under(*roots) if path.name.startswith(PARTIAL_MARK)]


@pytest.mark.parametrize(("member", "what"), [("manifest.gpg", "manifest"),
                                               ("custody.gpg", "custody log")])
def test_import_stops_a_compressed_manifest_or_log_at_its_own_size(
        evidence: Evidence, bomb: bytes, member: str, what: str, tmp_path: Path) -> None:
    bundle = write_tar([(name, bomb if name == f"{BUNDLE_ROOT}/{member}" else data)
                        for name, data in tar_members(evidence.bundle)], tmp_path / "bomb.tar")
    workspace = tmp_path / "ws"

    message, hint = diagnostic(review(workspace, evidence.home, "import", str(bundle)))

    assert message.startswith(f"bundle refused: its {what} does not decrypt: "), message
    match = COMPRESSED.search(message)
    assert match, message
    assert int(match.group(1)) == len(bomb)
    assert hint is not None
    assert REFUSED_HINT in hint
    assert_workspace_empty(workspace)


@pytest.mark.parametrize("attribute", ["message_id", "file_id"])
def test_open_stops_a_compressed_part_and_keeps_nothing(
        evidence: Evidence, bomb: bytes, attribute: str, tmp_path: Path) -> None:
    # The message is decrypted into memory and its record gives its part fewer bytes than the
    # bomb's own size; the file goes to disk, its part's record allows more.
    workspace = copy_workspace(evidence, tmp_path)
    oid: str = getattr(evidence, attribute)
    (workspace / "objects" / oid / "part-000000.gpg").write_bytes(bomb)
    out = tmp_path / "out"
    args = ("--out", str(out)) if attribute == "file_id" else ()

    message, _ = diagnostic(review(workspace, evidence.home, "open", oid, *args))

    assert message.startswith(f"cannot decrypt item {oid} (part-000000.gpg): "), message
    assert message.endswith("; nothing was kept")
    if attribute == "file_id":
        assert COMPRESSED.search(message), message
    else:
        assert "it holds more than the " in message
    assert partial_files(workspace, out) == []
    assert files_under(out) == []


def test_decryption_hands_over_no_byte_beyond_the_bound(evidence: Evidence, bomb: bytes,
                                                         tmp_path: Path) -> None:
    console = GnuPG(evidence.home)
    path = tmp_path / "bomb.gpg"
    path.write_bytes(bomb)
    received: list[int] = []

    with pytest.raises(PlaintextTooLarge):
        console.decrypt_stream(path, lambda chunk: received.append(len(chunk)))
    with pytest.raises(PlaintextTooLarge):
        console.decrypt_stream(path, lambda chunk: received.append(len(chunk)), limit=100)
    with pytest.raises(PlaintextTooLarge):
        console.decrypt_bytes(bomb)

    assert sum(received) <= len(bomb)


def test_an_uncompressed_part_is_stopped_at_the_size_its_record_gives(
        evidence: Evidence) -> None:
    console = GnuPG(evidence.home)
    part = evidence.workspace / "objects" / evidence.file_id / "part-000000.gpg"
    whole = bytearray()
    console.decrypt_stream(part, whole.extend)
    cut = bytearray()

    with pytest.raises(PlaintextTooLarge,
                       match=f"more than the {len(whole) - 1} bytes its record gives it"):
        console.decrypt_stream(part, cut.extend, limit=len(whole) - 1)

    assert len(whole) < part.stat().st_size
    assert len(cut) <= len(whole) - 1


def test_open_shows_no_message_longer_than_a_source_can_send(evidence: Evidence,
                                                             tmp_path: Path) -> None:
    workspace = copy_workspace(evidence, tmp_path)
    with closing(sqlite3.connect(workspace / "index.db")) as db, db:
        db.execute("UPDATE items SET size = ? WHERE id = ?",
                   (MAX_MESSAGE_BYTES + 1, evidence.message_id))

    message, hint = diagnostic(review(workspace, evidence.home, "open", evidence.message_id))

    assert message == (f"item {evidence.message_id}: its record says the message is "
                       f"{MAX_MESSAGE_BYTES + 1} bytes, more than the {MAX_MESSAGE_BYTES} a "
                       "source can send; nothing was decrypted")
    assert hint == "open it with --out to decrypt it to a file"
