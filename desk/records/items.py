"""Recording, marking and deleting stored items, each change written to the custody log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crypto.custody import RETENTION_ACTOR, SigningKey, new_custody_key
from desk.records.custody import append_entry
from desk.records.instance import load_instance
from desk.records.models import Item, Reply, Source
from desk.records.replies import delete_replies
from desk.storage.store import StagedItem, Store


def record_items(db: Session, store: Store, key: SigningKey, source_id: str,
                      staged: Sequence[StagedItem]) -> None:
    """Publish staged objects, add their rows and ingest entries, and commit; all or nothing.

    `session` must be a writer session: the custody entries are appended in its transaction.
    """
    today = datetime.now(UTC).date()
    published: list[str] = []
    try:
        for obj in staged:
            store.publish(obj.staging, obj.object_id)
            published.append(obj.object_id)
            item = Item(
                id=obj.object_id, source_id=source_id, kind=obj.kind,
                ciphertext_size=obj.ciphertext_size, ciphertext_sha256=obj.ciphertext_sha256,
                custody_key=new_custody_key(), part_count=obj.part_count, received_on=today)
            db.add(item)
            append_entry(db, key, "ingest", item.custody)
        db.execute(update(Source).where(Source.id == source_id)
                        .values(last_activity_on=today))
        db.commit()
    except BaseException:
        db.rollback()
        for object_id in published:
            store.remove(object_id)
        for obj in staged[len(published):]:
            store.discard(obj.staging)
        raise


def set_seen(db: Session, ids: Sequence[str], seen: bool = True) -> None:
    """Mark objects seen or unseen; not committed."""
    db.execute(update(Item).where(Item.id.in_(ids)).values(seen=seen))


def delete_items(db: Session, store: Store, key: SigningKey,
                       submissions: Sequence[Item], actor: str) -> None:
    """Delete objects for good: custody entries and rows committed first, then the files.

    A crash between the two leaves ciphertext without a row, never a row without ciphertext.
    """
    for submission in submissions:
        append_entry(db, key, "delete", submission.custody, actor)
        db.delete(submission)
    db.commit()
    for submission in submissions:
        store.remove(submission.id)


def retention_cutoff(days: int) -> date:
    """The first day a retention period of `days` keeps: anything received or sent before it
    is purged."""
    return datetime.now(UTC).date() - timedelta(days=days)


def purge_expired(db: Session, store: Store, key: SigningKey) -> tuple[int, int]:
    """Delete objects received, and replies sent, before the retention period, each with a
    custody entry; return how many of each."""
    days = load_instance(db).retention_days
    if days is None:
        return 0, 0
    cutoff = retention_cutoff(days)
    expired = list(db.scalars(select(Item).where(Item.received_on < cutoff)))
    delete_items(db, store, key, expired, RETENTION_ACTOR)
    replies = list(db.scalars(select(Reply).where(Reply.created_on < cutoff)))
    delete_replies(db, key, replies, RETENTION_ACTOR)
    db.commit()
    for reply in replies:
        store.remove_reply(reply.id)
    return len(expired), len(replies)
