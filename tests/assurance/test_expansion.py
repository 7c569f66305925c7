"""Messages that expand: the console refuses compression and stops every decryption at its
bound.

The desk never compresses what it encrypts, and FORMAT.md ("OpenPGP files") has readers refuse
a compressed packet. A compressed message has no bound: a few hundred bytes of bzip2 decrypt to
64 MiB here, and to gigabytes at no more cost to whoever makes them, needing only a
journalist's public key. These tests put such messages where a tampered bundle (its manifest,
its custody log) or workspace (a message's or a file's part) would, and check that
`desk-review` refuses each one as compressed, says so in one line and keeps nothing; that a
compressed message is refused even when it expands to less than its own size; that an
uncompressed part is stopped at the size its record gives; and that a message is never
decrypted into memory past what a source can send. Decryptions running at once on threads of
one process (the viewer's) each hand their plaintext to their own sink.

One desk, export and workspace per module (tests/harness/tampering.py, make_evidence).
"""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from crypto.errors import CompressedMessage, PlaintextTooLarge
from crypto.gpg import GnuPG
from crypto.items import MAX_MESSAGE_BYTES
from crypto.names import PARTIAL_MARK
from tests.harness.console import BUNDLE_ROOT, diagnostic, review, tar_members, write_tar
from tests.harness.desks import files_under
from tests.harness.gpg import Keypair, gpg
from tests.harness.tampering import (
    Evidence,
    assert_workspace_empty,
    compressed_bomb,
    copy_workspace,
    make_evidence,
)

BOMB_BYTES = 64 * 1024 * 1024
COMPRESSED = "it is compressed, which the desk never does"
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
def test_import_refuses_a_compressed_manifest_or_log(
        evidence: Evidence, bomb: bytes, member: str, what: str, tmp_path: Path) -> None:
    bundle = write_tar([(name, bomb if name == f"{BUNDLE_ROOT}/{member}" else data)
                        for name, data in tar_members(evidence.bundle)], tmp_path / "bomb.tar")
    workspace = tmp_path / "ws"

    message, hint = diagnostic(review(workspace, evidence.home, "import", str(bundle)))

    assert message == f"bundle refused: its {what} does not decrypt: {COMPRESSED}"
    assert hint is not None
    assert REFUSED_HINT in hint
    assert_workspace_empty(workspace)


@pytest.mark.parametrize("attribute", ["message_id", "file_id"])
def test_open_refuses_a_compressed_part_and_keeps_nothing(
        evidence: Evidence, bomb: bytes, attribute: str, tmp_path: Path) -> None:
    # The message is decrypted into memory and its record gives its part fewer bytes than the
    # bomb's own size; the file goes to disk, its part's record allows more.
    workspace = copy_workspace(evidence, tmp_path)
    oid: str = getattr(evidence, attribute)
    (workspace / "objects" / oid / "part-000000.gpg").write_bytes(bomb)
    out = tmp_path / "out"
    args = ("--out", str(out)) if attribute == "file_id" else ()

    message, _ = diagnostic(review(workspace, evidence.home, "open", oid, *args))

    assert message == f"cannot decrypt item {oid} (part-000000.gpg): {COMPRESSED}; nothing was kept"
    assert partial_files(workspace, out) == []
    assert files_under(out) == []


def test_decryption_hands_over_no_byte_beyond_the_bound(evidence: Evidence, bomb: bytes,
                                                         tmp_path: Path) -> None:
    console = GnuPG(evidence.home)
    path = tmp_path / "bomb.gpg"
    path.write_bytes(bomb)
    received: list[int] = []

    with pytest.raises(CompressedMessage):
        console.decrypt_stream(path, lambda chunk: received.append(len(chunk)))
    with pytest.raises(CompressedMessage):
        console.decrypt_stream(path, lambda chunk: received.append(len(chunk)), limit=100)
    with pytest.raises(CompressedMessage):
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


def test_a_compressed_message_is_refused_even_when_it_does_not_expand(
        evidence: Evidence, journalist: Keypair) -> None:
    # Random bytes do not compress: zlib leaves them longer, so neither bound stops them, and
    # only the format's rule does.
    plaintext = os.urandom(4096)
    message = gpg(journalist.home, "--trust-model", "always", "--recipient",
                  journalist.fingerprint, "--compress-algo", "zlib", "--encrypt",
                  stdin=plaintext).stdout
    assert len(message) > len(plaintext)
    uncompressed = gpg(journalist.home, "--trust-model", "always", "--recipient",
                       journalist.fingerprint, "--compress-algo", "none", "--encrypt",
                       stdin=plaintext).stdout
    console = GnuPG(evidence.home)

    with pytest.raises(CompressedMessage, match=COMPRESSED):
        console.decrypt_bytes(message)
    assert console.decrypt_bytes(uncompressed) == plaintext


def test_decryptions_at_once_each_reach_their_own_sink(evidence: Evidence, journalist: Keypair,
                                                       tmp_path: Path) -> None:
    # As the viewer's threads decrypt: two files at once, in rounds.
    console = GnuPG(evidence.home)
    plaintexts = [bytes([letter]) * 400_000 for letter in b"ab"]
    paths = []
    for n, plaintext in enumerate(plaintexts):
        path = tmp_path / f"{n}.gpg"
        path.write_bytes(gpg(journalist.home, "--trust-model", "always", "--recipient",
                             journalist.fingerprint, "--compress-algo", "none", "--encrypt",
                             stdin=plaintext).stdout)
        paths.append(path)

    def decrypt(path: Path) -> bytes:
        received = bytearray()
        console.decrypt_stream(path, received.extend)
        return bytes(received)

    with ThreadPoolExecutor(max_workers=2) as pool:
        rounds = [list(pool.map(decrypt, paths)) for _ in range(10)]

    assert all(got == plaintexts for got in rounds)
