"""`desk doctor`: what an interrupted write left behind, and removing exactly that.

Every write is ordered so that a crash at any instant leaves nothing half-listed
(deploy/STORAGE.md, "Durability"): only debris that no source or journalist was ever told about.
A staging directory, a `.tmp-` file, a published object or reply whose row never committed, an
upload folder whose row never committed, a part or metadata record written into an upload
folder but never recorded. `examine` lists that debris together with what must never happen (a
row whose files are gone); `database_problems` runs SQLite's own checks. `repair` removes the
debris and nothing else: never a row, and never anything the custody log recorded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from crypto.durable import sync_path
from crypto.names import (
    LOCK_NAME,
    METADATA_NAME,
    OBJECT_ID_RE,
    PART_NAME_RE,
    REPLY_BOX_NAME,
    REPLY_COPY_NAME,
    TAIL_NAME_RE,
    TEMP_PREFIX,
    part_name,
)
from crypto.sealing import sealed_plaintext_size
from desk.config import Config
from desk.errors import JournalistError
from desk.intake.shape import part_size
from desk.records.instance import key_material_problems
from desk.records.keys import gpg_running, stale_locks
from desk.records.models import CustodyRecord, Item, Reply, Upload
from desk.storage.store import Store

# Kinds of finding, as the report names them.
STAGING = "staging"
TEMP_FILE = "temp-file"
OBJECT_WITHOUT_ROW = "object-without-row"
ROW_WITHOUT_OBJECT = "row-without-object"
UPLOAD_WITHOUT_ROW = "upload-without-row"
ROW_WITHOUT_UPLOAD = "row-without-upload"
UNRECORDED_PART = "unrecorded-part"
UNRECORDED_RECORD = "unrecorded-metadata"
MISSING_PART = "missing-part"
UNRECORDED_TAIL = "unrecorded-tail-piece"
REPLY_WITHOUT_ROW = "reply-without-row"
ROW_WITHOUT_REPLY = "row-without-reply"
DELETED_BOX = "deleted-box"
SETTLE_FOLDER = "settle-folder"
DATABASE = "database"
KEYS = "keys"
STALE_LOCK = "stale-gpg-lock"

# How long --repair waits for a server that is about to let go of the database.
BUSY_MILLISECONDS = 2000
IN_USE = ("the desk's database is open in another process, so a server is running and writes "
          "may be under way: stop both interfaces (systemctl stop desk@source desk@journalist) "
          "and run `desk doctor --repair` again")


@dataclass(frozen=True)
class Finding:
    """One thing doctor found: its kind, where it is, what it means, and whether `repair`
    may remove it."""

    kind: str
    where: str
    detail: str
    removable: bool

    def line(self) -> str:
        """The finding as one line of the report."""
        verdict = "--repair removes it" if self.removable else "--repair leaves it"
        return f"{self.kind}\t{self.where}\t{self.detail} ({verdict})"


def examine(db: Session, store: Store) -> list[Finding]:
    """Everything in the store that a finished write does not leave, and every row whose files
    are gone. Reads only."""
    findings = [_debris(STAGING, path, "an object or reply was being written here when the "
                        "desk stopped; it was never acknowledged")
                for path in _entries(store.staging_root)]
    findings += _objects(db, store)
    findings += _uploads(db, store)
    findings += _replies(db, store)
    # A settle that stopped midway leaves a `.tmp-` folder beside the intact one it was
    # re-creating (deploy/STORAGE.md, "Settling").
    findings += [_debris(SETTLE_FOLDER, path, "a copy a settle was making (or the original "
                         "it had just replaced) when it stopped; the folder of that name is "
                         "whole")
                 for path in _temp_folders(store.root.parent)]
    # A removable directory takes its temp files with it; list only those elsewhere.
    covered = {Path(f.where) for f in findings if f.removable}
    findings += [_debris(TEMP_FILE, path, "a file that was being written (or re-created by a "
                         "settle) when the desk stopped; it was never acknowledged, or its "
                         "original is whole")
                 for path in _temp_files(store.root.parent)
                 if not covered.intersection(path.parents)]
    return findings


def key_findings(config: Config, db: Session) -> list[Finding]:
    """Damaged key material (never removable: the message says how to recover), and gpg
    locks no process holds, which --repair removes while no gpg runs in the desk's home."""
    stale = set(stale_locks(config.gnupg_home))
    findings = [Finding(KEYS, str(config.data_dir), problem, False)
                for problem in key_material_problems(config, db)
                if not any(str(path) in problem for path in stale)]
    busy = gpg_running(config.gnupg_home)
    findings += [Finding(STALE_LOCK, str(path), "a gpg lock file no living process holds "
                         "(empty after a power cut, or left by a killed gpg): while it is "
                         "there every change to the keyring fails"
                         + ("; a gpg is running in the desk's home now" if busy else ""),
                         not busy)
                 for path in sorted(stale)]
    return findings


def database_problems(db: Session) -> list[Finding]:
    """What SQLite's integrity_check and foreign_key_check report; nothing for another
    database."""
    bind = db.get_bind()
    if bind.dialect.name != "sqlite":
        return []
    where = str(bind.engine.url.database)
    problems = [str(row) for row in db.scalars(text("PRAGMA integrity_check"))]
    findings = [Finding(DATABASE, where, f"integrity_check: {problem}", False)
                for problem in problems if problem != "ok"]
    findings += [Finding(DATABASE, where, f"foreign_key_check: row {rowid} of {table} refers "
                         f"to a missing row of {parent}", False)
                 for table, rowid, parent, _ in db.execute(text("PRAGMA foreign_key_check"))]
    return findings


def repair(findings: Iterable[Finding]) -> list[Finding]:
    """Remove what each removable finding names (a directory with all it holds, or a file),
    durably; return exactly the findings that were removed."""
    removed = []
    for finding in findings:
        if not finding.removable:
            continue
        path = Path(finding.where)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # gone with something removed before it
        sync_path(path.parent)
        removed.append(finding)
    return removed


@contextlib.contextmanager
def sole_session(database_url: str) -> Iterator[Session]:
    """A session on a database no other process has open, held so for the whole block.

    `repair` must not race a running desk: a part written but not yet recorded, or an object
    published a moment before its row commits, looks exactly like the debris of a crash. SQLite
    says whether anyone else has the database open: a connection in exclusive locking mode
    cannot take its lock while another connection (a server worker's pooled one included) is
    open, and once it has the lock no server can start writing. With another database the
    admin must stop the interfaces first. Raises JournalistError when the database is in use.
    """
    engine = create_engine(database_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _exclusive_connect)
        event.listen(engine, "begin", _exclusive_begin)
    try:
        with Session(engine) as db:
            try:
                db.execute(text("SELECT 1"))
            except OperationalError as exc:
                raise JournalistError(IN_USE) from exc
            yield db
    finally:
        engine.dispose()


def database_in_use(database_url: str) -> bool:
    """True if another process (a running server) has the SQLite database open."""
    try:
        with sole_session(database_url):
            return False
    except JournalistError:
        return True


def _exclusive_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (f"busy_timeout={BUSY_MILLISECONDS}", "locking_mode=EXCLUSIVE"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _exclusive_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN EXCLUSIVE")


def _debris(kind: str, path: Path, detail: str) -> Finding:
    return Finding(kind, str(path), detail, True)


def _error(kind: str, path: Path, detail: str) -> Finding:
    return Finding(kind, str(path), detail, False)


def _entries(root: Path) -> list[Path]:
    """The entries of a store directory, sorted; none if it does not exist."""
    return sorted(root.iterdir()) if root.is_dir() else []


def _ids(root: Path) -> list[str]:
    """Names of the directories under `root` that are ids (objects, uploads, replies)."""
    return [path.name for path in _entries(root)
            if path.is_dir() and OBJECT_ID_RE.match(path.name)]


def _custody_events(db: Session, ids: Sequence[str], first_event: str,
                    live: Iterable[str]) -> dict[str, list[CustodyRecord]]:
    """The custody entries about each of `ids` (folders without rows), in order.

    Version 1 entries name ids in clear. Version 2 entries name nothing once the row and its
    custody key are gone, so a folder is tied to them only when the log holds a `first_event`
    entry that no row explains and no delete entry closes: then every folder without a row
    is put down to those entries, and left to a person.
    """
    events: dict[str, list[CustodyRecord]] = {oid: [] for oid in ids}
    if not ids:
        return events
    for record in db.scalars(select(CustodyRecord).where(
            CustodyRecord.version == 1, CustodyRecord.subject.in_(list(ids)))
            .order_by(CustodyRecord.seq)):
        if record.subject is not None:
            events[record.subject].append(record)
    live_subjects = set(live)
    deleted = set(db.scalars(select(CustodyRecord.subject).where(
        CustodyRecord.version == 2, CustodyRecord.event == "delete")))
    unexplained = [record for record in db.scalars(select(CustodyRecord).where(
        CustodyRecord.version == 2, CustodyRecord.event == first_event))
        if record.subject not in live_subjects and record.subject not in deleted]
    for oid in ids:
        events[oid] += unexplained
    return events


def _recorded(records: list[CustodyRecord], what: str) -> str:
    """Why a directory custody knows of is left alone."""
    entries = ", ".join(f"{r.event} #{r.seq}" for r in records)
    if any(r.event == "delete" for r in records):
        return (f"{what} was deleted (custody: {entries}) but its files remain; the custody "
                "log recorded it, so doctor leaves it to a person")
    return (f"{what} has no row, yet custody recorded it ({entries}); this should never "
            "happen: run `desk custody verify`")


def _objects(db: Session, store: Store) -> list[Finding]:
    items = list(db.scalars(select(Item)))
    rows = {item.id for item in items}
    present = _ids(store.objects)
    orphans = [oid for oid in present if oid not in rows]
    custody = _custody_events(db, orphans, "ingest", (item.custody.subject for item in items))
    # An upload published by renaming its own folder into objects/ (as desk/intake/tus.py did before
    # it published hard links) keeps its lock file there; if that publication never committed,
    # the folder holds parts the source was told had arrived, and their row has lost its folder.
    homeless = {upload.part_count for upload in db.scalars(select(Upload))
                if not (store.uploads / upload.id).is_dir()}
    findings = []
    for oid in orphans:
        path = store.objects / oid
        if custody[oid]:
            findings.append(_error(OBJECT_WITHOUT_ROW, path, _recorded(custody[oid], "object")))
        elif (path / LOCK_NAME).exists() and _part_count(path) - 1 in homeless:
            findings.append(_error(OBJECT_WITHOUT_ROW, path,
                                   "a resumable upload's folder, published but never recorded, "
                                   "while an upload's row has lost its folder: it may hold "
                                   "that upload's acknowledged parts"))
        else:
            findings.append(_debris(OBJECT_WITHOUT_ROW, path,
                                    "no row holds it and custody names it nowhere: published "
                                    "but never committed (so never acknowledged), or deleted "
                                    "before its files were removed"))
    findings += [_error(ROW_WITHOUT_OBJECT, store.objects / oid,
                        "the object's row has no files in the store; this should never happen: "
                        "run `desk custody verify`")
                 for oid in sorted(rows - set(present))]
    return findings


def _uploads(db: Session, store: Store) -> list[Finding]:
    rows = {upload.id: upload for upload in db.scalars(select(Upload))}
    present = _ids(store.uploads)
    findings = [_debris(UPLOAD_WITHOUT_ROW, store.uploads / uid,
                        "an upload folder whose row never committed, or whose row was already "
                        "removed; nothing in it is recorded")
                for uid in present if uid not in rows]
    findings += [_error(ROW_WITHOUT_UPLOAD, store.uploads / uid,
                        "the upload's row has no folder, so the source cannot resume it; "
                        "`desk purge` drops the row when it expires")
                 for uid in sorted(set(rows) - set(present))]
    for uid in present:
        upload = rows.get(uid)
        if upload is None:
            continue
        folder = store.uploads / uid
        names = {path.name for path in folder.iterdir() if path.is_file()}
        for name in sorted(names):
            index = _part_index(name)
            if index is not None and index >= upload.part_count:
                findings.append(_debris(UNRECORDED_PART, folder / name,
                                        f"a part written but never recorded (the row counts "
                                        f"{upload.part_count}); the source resends it"))
            elif name == METADATA_NAME:
                findings.append(_debris(UNRECORDED_RECORD, folder / name,
                                        "the metadata record of a publication that never "
                                        "committed"))
        findings += _tail_findings(folder, upload)
        findings += [_error(MISSING_PART, folder / part_name(index),
                            "a recorded part is missing: bytes the source was told had arrived "
                            "are gone")
                     for index in range(upload.part_count) if part_name(index) not in names]
    return findings


def _tail_findings(folder: Path, upload: Upload) -> list[Finding]:
    """Sealed tail pieces the row does not count on: not whole, at or past the recorded
    offset (a PATCH that never committed), or wholly inside the recorded parts. Their
    framing alone tells their length; nothing here needs (or has) the key."""
    findings = []
    consumed = upload.part_count * part_size()
    for path in sorted(folder.iterdir()):
        match = TAIL_NAME_RE.match(path.name)
        if not match:
            continue
        start = int(match.group(1))
        with path.open("rb") as handle:
            length = sealed_plaintext_size(handle)
        if length is None:
            reason = "a sealed tail piece that is not whole"
        elif start >= upload.offset and upload.offset < upload.length:
            reason = "a sealed tail piece past the recorded offset: the source resends it"
        elif start + length <= consumed:
            reason = "a sealed tail piece already cut into recorded parts"
        else:
            continue
        findings.append(_debris(UNRECORDED_TAIL, path, reason))
    return findings


def _replies(db: Session, store: Store) -> list[Finding]:
    rows = {reply.id: reply for reply in db.scalars(select(Reply))}
    present = _ids(store.replies)
    orphans = [rid for rid in present if rid not in rows]
    custody = _custody_events(db, orphans, "reply",
                              (reply.custody.subject for reply in rows.values()))
    findings = []
    for rid in orphans:
        path = store.replies / rid
        if custody[rid]:
            findings.append(_error(REPLY_WITHOUT_ROW, path, _recorded(custody[rid], "reply")))
        else:
            findings.append(_debris(REPLY_WITHOUT_ROW, path,
                                    "no row holds it and custody names it nowhere: stored but "
                                    "never committed (so never sent), or deleted before its "
                                    "files were removed"))
    for rid, reply in sorted(rows.items()):
        folder = store.replies / rid
        if not (folder / REPLY_COPY_NAME).is_file():
            findings.append(_error(ROW_WITHOUT_REPLY, folder / REPLY_COPY_NAME,
                                   "the journalists' copy of a sent reply is missing; this "
                                   "should never happen: run `desk custody verify`"))
        box = folder / REPLY_BOX_NAME
        if reply.source_deleted and box.exists():
            # Not custody's business: its digest covers the journalists' copy alone.
            findings.append(_debris(DELETED_BOX, box,
                                    "the source deleted this reply, but the desk stopped "
                                    "before its box was removed"))
        elif not reply.source_deleted and not box.is_file():
            findings.append(_error(ROW_WITHOUT_REPLY, box,
                                   "the box of a reply the source has not deleted is missing"))
    return findings


def _temp_files(root: Path) -> Iterator[Path]:
    """Every `.tmp-` file below `root` (the data directory), outside `.tmp-` folders."""
    for directory, folders, files in os.walk(root):
        folders[:] = [name for name in folders if not name.startswith(TEMP_PREFIX)]
        yield from (Path(directory) / name for name in sorted(files)
                    if name.startswith(TEMP_PREFIX))


def _temp_folders(root: Path) -> list[Path]:
    """Every `.tmp-` folder below `root` (the data directory)."""
    found = []
    for directory, folders, _ in os.walk(root):
        found += [Path(directory) / name for name in sorted(folders)
                  if name.startswith(TEMP_PREFIX)]
        folders[:] = [name for name in folders if not name.startswith(TEMP_PREFIX)]
    return found


def _part_index(name: str) -> int | None:
    """The index of a part file's name, or None for any other name."""
    match = PART_NAME_RE.match(name)
    return None if match is None else int(match.group(1))


def _part_count(folder: Path) -> int:
    return sum(_part_index(path.name) is not None for path in folder.iterdir())
