"""The desk's side of the chain of custody: appending entries and checking the whole log."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from crypto.custody import (
    CustodyEntry,
    SigningKey,
    Subject,
    ciphertext_digest,
    file_sha256,
    object_files,
    subject_entry,
    verify_chain,
)
from crypto.errors import CustodyBroken
from crypto.names import REPLY_COPY_NAME
from desk.records.models import CustodyRecord, Item, Reply
from desk.storage.store import Store


def reply_digest(store: Store, reply_id: str) -> str:
    """The ciphertext digest of a stored reply's journalists' copy: custody's digest covers
    the copy alone, which outlives the source's box (the source may delete that)."""
    path = store.reply_path(reply_id) / REPLY_COPY_NAME
    return ciphertext_digest({REPLY_COPY_NAME: file_sha256(path)})


# How many entries, and the rows they are about, one short writer transaction takes at most
# when many are written at once (an export, a deletion): a single transaction for an export
# of 20,000 items held SQLite's write lock for 17 s, and a source's commit waiting behind it
# failed after the 10 s busy timeout. A batch of this size holds the lock for a fraction of a
# second (bench/export_lock.py).
BATCH = 500
# The pause between two batches, with no transaction open. SQLite does not queue writers: a
# waiting one sleeps and retries, at most 100 ms apart, so a batch that begins the moment the
# one before commits finds the lock free every time and keeps every waiter out until the last
# batch (seen in tests/e2e/test_export_lock.py). A pause longer than that interval lets each
# waiter in.
BATCH_PAUSE = 0.15


def batches(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    """`ids` BATCH at a time, with BATCH_PAUSE between two batches: write each in a writer
    transaction of its own, ended before the next is asked for."""
    for start in range(0, len(ids), BATCH):
        if start:
            time.sleep(BATCH_PAUSE)
        yield ids[start:start + BATCH]


def append_entry(db: Session, key: SigningKey, event: str, about: Subject,
                 actor: str | None = None) -> CustodyRecord:
    """Add the next signed entry about an item or reply in `db`'s transaction (a writer
    session)."""
    return append_entries(db, key, event, [about], actor)[-1]


def append_entries(db: Session, key: SigningKey, event: str, subjects: Iterable[Subject],
                   actor: str | None = None) -> list[CustodyRecord]:
    """Add the next signed entries, one per subject in order, in `db`'s transaction (a writer
    session); the log's last entry is read once, not once per entry."""
    last = db.scalar(select(CustodyRecord).order_by(CustodyRecord.seq.desc()).limit(1))
    previous = None if last is None else last.entry()
    today = datetime.now(UTC).date()
    records = []
    for about in subjects:
        previous = subject_entry(key, previous, today, event, about, actor)
        records.append(CustodyRecord.from_entry(previous))
    db.add_all(records)
    db.flush()
    return records


def custody_records(db: Session, through: int | None = None) -> Iterator[CustodyRecord]:
    """Every entry in order (up to entry `through`, if given), streamed."""
    query = select(CustodyRecord).order_by(CustodyRecord.seq)
    if through is not None:
        query = query.where(CustodyRecord.seq <= through)
    yield from db.scalars(query.execution_options(yield_per=1000))


def _stored_entries(db: Session) -> Iterator[CustodyEntry]:
    """Every stored entry in order, read as text: a row someone edited into something that is
    not even a date must be named as a bad entry, not crash the check."""
    rows = db.execute(text(
        'SELECT seq, CAST("on" AS TEXT), event, subject, digest, actor, '
        "prev_hash, entry_hash, signature, version FROM custody_entries ORDER BY seq"))
    for seq, on, event, subject, digest, actor, prev, entry_hash, signature, version in rows:
        try:
            yield CustodyEntry(int(seq), date.fromisoformat(str(on)), event, subject, digest,
                               actor, prev, entry_hash, signature, int(version))
        except (TypeError, ValueError) as exc:
            raise CustodyBroken("the entry is not well-formed", seq=seq) from exc


@dataclass(frozen=True)
class CustodyReport:
    """What `desk custody verify` found."""

    entries: int
    objects_checked: int
    replies_checked: int = 0


def verify_desk(db: Session, store: Store, public_hex: str) -> CustodyReport:
    """Check every signature and link, then every stored object against its ingest entry and
    every stored reply against its reply entry.

    Raises CustodyBroken naming the first bad entry, object or reply.
    """
    chain = verify_chain(_stored_entries(db), public_hex)
    received = {e.subject: e for e in chain if e.event == "ingest"}
    deleted = {e.subject for e in chain if e.event == "delete"}
    replies_checked = _verify_replies(db, store, chain, deleted)
    rows = {s.id: s for s in db.scalars(select(Item))}
    subjects = {item.custody.subject: oid for oid, item in rows.items()}
    # A version 2 subject names no item once the item's key is gone: the entry's own seq is
    # all a report can point at.
    vanished = [entry for subject, entry in received.items()
                if subject not in deleted and subject not in subjects]
    if vanished:
        raise _vanished("was received but is gone without a delete entry", vanished[0])
    checked = 0
    for oid, submission in sorted(rows.items()):
        about = submission.custody
        if about.subject not in received:
            raise CustodyBroken("has no ingest entry in the custody log", object_id=oid)
        if about.subject in deleted:
            raise CustodyBroken("is recorded as deleted but still present", object_id=oid)
        directory = store.path(oid)
        if not directory.is_dir():
            raise CustodyBroken("is missing from the store", object_id=oid)
        stored = Subject(oid, ciphertext_digest(object_files(directory)), about.custody_key)
        if not stored.matches(received[about.subject]) or \
                stored.ciphertext_sha256 != submission.ciphertext_sha256:
            raise CustodyBroken("stored ciphertext differs from what was received",
                                object_id=oid)
        checked += 1
    return CustodyReport(entries=len(chain), objects_checked=checked,
                         replies_checked=replies_checked)


def _vanished(reason: str, entry: CustodyEntry, kind: str = "object") -> CustodyBroken:
    """The error for what an entry brought in and no row holds: named by its id where the
    entry names it in clear (version 1), else by the entry."""
    if entry.version == 1:
        return CustodyBroken(reason, object_id=entry.subject, kind=kind)
    return CustodyBroken(f"the {kind} it brought in is gone without a delete entry",
                         seq=entry.seq)


def _verify_replies(db: Session, store: Store, chain: list[CustodyEntry],
                    deleted: set[str | None]) -> int:
    sent = {e.subject: e for e in chain if e.event == "reply"}
    rows = {r.id: r for r in db.scalars(select(Reply))}
    subjects = {reply.custody.subject for reply in rows.values()}
    vanished = [entry for subject, entry in sent.items()
                if subject not in deleted and subject not in subjects]
    if vanished:
        raise _vanished("was sent but is gone without a delete entry", vanished[0], "reply")
    for reply_id, reply in sorted(rows.items()):
        about = reply.custody
        if about.subject not in sent:
            raise CustodyBroken("has no reply entry in the custody log",
                                object_id=reply_id, kind="reply")
        try:
            digest = reply_digest(store, reply_id)
        except FileNotFoundError as exc:
            raise CustodyBroken("is missing from the store",
                                object_id=reply_id, kind="reply") from exc
        stored = Subject(reply_id, digest, about.custody_key)
        if not stored.matches(sent[about.subject]) or digest != reply.ciphertext_sha256:
            raise CustodyBroken("stored copy differs from what was sent",
                                object_id=reply_id, kind="reply")
    return len(rows)
