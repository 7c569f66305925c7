"""Recording, marking and deleting stored items, each change written to the custody log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from crypto.custody import RETENTION_ACTOR, SigningKey, new_custody_key
from desk.records.custody import append_entries, append_entry, batches
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


def delete_items(writers: sessionmaker[Session], store: Store, key: SigningKey,
                 ids: Sequence[str], actor: str) -> int:
    """Delete the objects with these ids for good; return how many were still there.

    BATCH at a time, each batch in a short writer transaction of its own (custody entries and
    rows committed together, then its files removed), so that sources' commits go in between.
    A crash between a commit and the removal leaves ciphertext without a row, never a row
    without ciphertext; one between two batches leaves the later ones to delete again.
    """
    deleted = 0
    for batch in batches(ids):
        with writers() as db:
            found = {item.id: item for item in db.scalars(select(Item).where(Item.id.in_(batch)))}
            items = [found[item_id] for item_id in batch if item_id in found]
            forget_items(db, key, items, actor)
            db.commit()
        for item in items:
            store.remove(item.id)
        deleted += len(items)
    return deleted


def forget_items(db: Session, key: SigningKey, items: Sequence[Item], actor: str) -> None:
    """Record items' deletion in custody and drop their rows; not committed. The caller
    removes their files after the commit."""
    append_entries(db, key, "delete", [item.custody for item in items], actor)
    for item in items:
        db.delete(item)


def retention_cutoff(days: int) -> date:
    """The first day a retention period of `days` keeps: anything received or sent before it
    is purged."""
    return datetime.now(UTC).date() - timedelta(days=days)


def purge_expired(writers: sessionmaker[Session], store: Store,
                  key: SigningKey) -> tuple[int, int]:
    """Delete objects received, and replies sent, before the retention period, each with a
    custody entry, in short batches (delete_items); return how many of each."""
    with writers() as db:
        days = load_instance(db).retention_days
        if days is None:
            return 0, 0
        cutoff = retention_cutoff(days)
        expired = list(db.scalars(select(Item.id).where(Item.received_on < cutoff)
                                  .order_by(Item.received_on, Item.id)))
        replies = list(db.scalars(select(Reply.id).where(Reply.created_on < cutoff)
                                  .order_by(Reply.created_on, Reply.id)))
    return (delete_items(writers, store, key, expired, RETENTION_ACTOR),
            delete_replies(writers, store, key, replies, RETENTION_ACTOR))
