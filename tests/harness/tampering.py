"""The evidence the tampering tests damage: a desk holding a message, a one-part file and a
three-part resumable upload, one export of it, and a console workspace that imported it; the
kinds of damage, copies of the desk and the workspace to damage, and the desk's database opened
as an attacker would, its append-only triggers dropped."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import select

from crypto.custody import SigningKey, entry_body
from desk.app import create_app
from desk.records.models import Item
from tests.harness.console import ok, review
from tests.harness.desks import add_account, desk_config, files_under, new_desk, run_desk
from tests.harness.gpg import Keypair, gpg
from tests.harness.tus import metadata, parts_of
from tests.harness.web import SourceBrowser, TusTestSource

HEAD_MARK = b"TAMPER-HEAD-5f0c8e2a91d4"
TAIL_MARK = b"TAMPER-TAIL-b3e71c09a6f2"
PART_MARK = b"TAMPER-PART-7a2d4c1e08b9"
MESSAGE = "TAMPER-MSG-c41e9b: the convoy left the depot at 04:10, gate 3."
MARKERS = [HEAD_MARK, TAIL_MARK, PART_MARK, MESSAGE.encode()]

# A flipped bit is the smallest change there is; every kind must still be caught.
FLIP = 0x01
DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "first byte flipped": lambda d: bytes([d[0] ^ FLIP]) + d[1:],
    "middle byte flipped": lambda d: (d[:len(d) // 2] + bytes([d[len(d) // 2] ^ FLIP])
                                      + d[len(d) // 2 + 1:]),
    "last byte flipped": lambda d: d[:-1] + bytes([d[-1] ^ FLIP]),
    "cut by 1 byte": lambda d: d[:-1],
    "cut to half": lambda d: d[:len(d) // 2],
    "1 byte appended": lambda d: d + b"\x00",
}
KINDS = list(DAMAGE)
# The part size the resumable upload is cut with (the desk's is 64 MiB).
UPLOAD_PART = 64 * 1024


def damaged(data: bytes, kind: str) -> bytes:
    """`data` with one kind of damage; always different from `data`."""
    result = DAMAGE[kind](data)
    assert result != data
    return result


def damage_file(path: Path, kind: str) -> None:
    """Damage a file in place."""
    path.write_bytes(damaged(path.read_bytes(), kind))


def compressed_bomb(journalist: Keypair, size: int) -> bytes:
    """An OpenPGP message to `journalist`, made by stock gpg, whose bzip2-compressed plaintext
    is `size` zero bytes: a few hundred bytes that expand to `size` when decrypted."""
    message = gpg(journalist.home, "--trust-model", "always", "--recipient",
                  journalist.fingerprint, "--compress-algo", "bzip2",
                  "--bzip2-compress-level", "9", "--encrypt", stdin=bytes(size)).stdout
    assert len(message) < size // 1000
    return message



@dataclass(frozen=True)
class Evidence:
    """A pristine desk after one export, its bundle, and a workspace that imported it."""

    data_dir: Path
    bundle: Path
    workspace: Path
    home: Path
    message_id: str
    file_id: str
    multi_id: str
    entries: int

    @property
    def object_ids(self) -> list[str]:
        """Every object id, in the order the desk and the console check objects."""
        return sorted((self.message_id, self.file_id, self.multi_id))


def marked_chunk(size: int) -> bytes:
    """`size` bytes, markers at both ends and random bytes between."""
    return PART_MARK + os.urandom(size - 2 * len(PART_MARK)) + PART_MARK


def make_evidence(root: Path, journalist: Keypair) -> Evidence:
    """A desk in `root` with alice's key: one source sent a message, a file and a three-part
    resumable upload; `desk export --all` made the bundle; the console imported it."""
    data = root / "data"
    config = desk_config(data)
    services = new_desk(config)
    try:
        add_account(services, "alice", journalist)
        browser = SourceBrowser(create_app(config, "source", services=services).test_client())
        browser.get_codename()
        evidence_file = HEAD_MARK + os.urandom(200_000) + TAIL_MARK
        sent = browser.send(MESSAGE, (("evidence.bin", evidence_file),))
        assert sent.status_code == 200
        # Three PATCHes; with parts of 64 KiB the 180,000 bytes (Padmé: 184,320) are stored
        # as three parts, whose boundaries are not those of the PATCHes.
        with parts_of(UPLOAD_PART):
            TusTestSource(browser).upload([marked_chunk(60_000) for _ in range(3)],
                                          metadata("tracks.mp4"))
        with services.sessions() as session:
            rows = {(s.kind, s.part_count): s.id for s in session.scalars(select(Item))}
    finally:
        services.engine.dispose()
    assert set(rows) == {("message", 1), ("file", 1), ("file", 3)}
    bundle = root / "bundle.tar"
    exported = run_desk("export", "--out", str(bundle), "--all", data_dir=data)
    assert exported.returncode == 0, exported.stderr
    workspace = root / "ws"
    ok(review(workspace, journalist.home, "import", str(bundle)))
    verified = run_desk("custody", "verify", data_dir=data)
    assert verified.returncode == 0, verified.stderr
    assert "Custody intact: 6 entries, 3 stored objects" in verified.stdout
    return Evidence(data, bundle, workspace, journalist.home, rows["message", 1],
                    rows["file", 1], rows["file", 3], entries=6)


def copy_desk(evidence: Evidence, tmp_path: Path) -> Path:
    """A data directory of the test's own, as it was after the export."""
    copy = tmp_path / "data"
    # Sockets and lock files belong to a running gpg, not to the desk's data.
    shutil.copytree(evidence.data_dir, copy,
                    ignore=shutil.ignore_patterns("S.*", "*.lock", ".#lk*"))
    return copy


def copy_workspace(evidence: Evidence, tmp_path: Path) -> Path:
    """A workspace of the test's own, holding the imported bundle."""
    copy = tmp_path / "ws"
    shutil.copytree(evidence.workspace, copy)
    return copy


def database(data_dir: Path) -> closing[sqlite3.Connection]:
    """The desk's database as an attacker with the file opens it: triggers dropped."""
    db = sqlite3.connect(data_dir / "desk.db", isolation_level=None)
    db.execute("DROP TRIGGER IF EXISTS custody_entries_no_update")
    db.execute("DROP TRIGGER IF EXISTS custody_entries_no_delete")
    return closing(db)


def index_rows(workspace: Path, query: str, *args: str) -> list[tuple[object, ...]]:
    """Rows of the console's index, read without the console."""
    index = workspace / "index.db"
    if not index.exists():
        return []
    with closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as db:
        return db.execute(query, args).fetchall()


def assert_workspace_empty(workspace: Path) -> None:
    """A workspace that took nothing from a refused bundle: no item, custody entry, desk or
    reply in its index, no ciphertext and nothing left in staging."""
    for table in ("items", "custody", "desks", "replies"):
        assert index_rows(workspace, f"SELECT * FROM {table}") == [], table  # noqa: S608
    assert files_under(workspace / "objects", workspace / "staging") == []
    assert list((workspace / "staging").iterdir()) == []


def resign_from(data_dir: Path, start: int, change: Callable[[dict[str, object]], None]
                ) -> None:
    """Rewrite custody entry `start` with `change` and sign it and every later entry again
    with the desk's own key, as someone holding the whole data directory could."""
    key = SigningKey.load(data_dir / "signing_key")
    with database(data_dir) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM custody_entries ORDER BY seq")]
        prev = rows[start - 2]["entry_hash"] if start > 1 else "0" * 64
        for row in rows[start - 1:]:
            if row["seq"] == start:
                change(row)
            body = entry_body(int(str(row["seq"])), date.fromisoformat(str(row["on"])),
                              str(row["event"]), row["subject"], row["digest"],
                              row["actor"], str(prev), int(str(row["version"])))
            digest = hashlib.sha256(body).hexdigest()
            db.execute("UPDATE custody_entries SET \"on\" = ?, event = ?, subject = ?, "
                       "digest = ?, actor = ?, prev_hash = ?, entry_hash = ?, "
                       "signature = ? WHERE seq = ?",
                       (row["on"], row["event"], row["subject"], row["digest"],
                        row["actor"], prev, digest, key.sign(bytes.fromhex(digest)),
                        row["seq"]))
            prev = digest


