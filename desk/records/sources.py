"""Sources: made when a codename is generated, starred by journalists, deleted for good."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from crypto.custody import SigningKey
from desk.records.designations import new_designation
from desk.records.items import delete_items, forget_items
from desk.records.models import Item, Reply, Source, Upload
from desk.records.replies import delete_replies, forget_replies, history
from desk.storage.store import Store


def create_source(db: Session, lookup_id: str, reply_public_key: bytes) -> Source:
    """A new source known by its codename's lookup id, a fresh designation and the public half
    of its reply key; not committed."""
    today = datetime.now(UTC).date()
    source = Source(id=secrets.token_hex(16), lookup_id=lookup_id,
                    designation=new_designation(db), created_on=today,
                    last_activity_on=today, reply_public_key=reply_public_key)
    db.add(source)
    return source


def set_starred(db: Session, source_id: str, starred: bool) -> None:
    """Star or unstar a source; not committed."""
    db.execute(update(Source).where(Source.id == source_id).values(starred=starred))


def delete_source(writers: sessionmaker[Session], store: Store, key: SigningKey,
                  source_id: str, actor: str) -> bool:
    """Delete a source, everything it sent, every reply to it and its uploads in progress;
    False if it was already gone.

    Its items and replies go in short batches (delete_items), so a source with thousands of
    them never holds SQLite's write lock for long; the last transaction takes whatever arrived
    meanwhile with the source's row (its uploads' rows go with it, their folders after).
    """
    with writers() as db:
        item_ids = list(db.scalars(select(Item.id).where(Item.source_id == source_id)
                                   .order_by(Item.received_on, Item.id)))
        reply_ids = [reply.id for reply in history(db, source_id)]
    delete_items(writers, store, key, item_ids, actor)
    delete_replies(writers, store, key, reply_ids, actor)
    with writers() as db:
        source = db.get(Source, source_id)
        if source is None:
            return False
        items = list(db.scalars(select(Item).where(Item.source_id == source_id)))
        replies = history(db, source_id)
        uploads = list(db.scalars(select(Upload.id).where(Upload.source_id == source_id)))
        forget_items(db, key, items, actor)
        forget_replies(db, key, replies, actor)
        db.delete(source)
        db.commit()
    for item in items:
        store.remove(item.id)
    for reply in replies:
        store.remove_reply(reply.id)
    for upload_id in uploads:
        store.remove_upload(upload_id)
    return True


def _unused() -> list[ColumnElement[bool]]:
    """Conditions of a source row with no item, no reply and no upload in progress."""
    return [~exists().where(Item.source_id == Source.id),
            ~exists().where(Reply.source_id == Source.id),
            ~exists().where(Upload.source_id == Source.id)]


def purge_unused_sources(db: Session, today: date | None = None) -> int:
    """Delete every source with nothing left (no item, reply or upload in progress) whose
    last activity is more than a day old; not committed. Returns how many went.

    Rows hold dates, not instants, so "more than a day" is measured in whole UTC days: a row
    whose last activity (its creation, for a codename never used for a sending) is dated
    before yesterday was last touched at least 24 hours ago, and at most 48. This covers
    codenames never used and sources whose items and replies retention or journalists removed.
    """
    today = today or datetime.now(UTC).date()
    cutoff = today - timedelta(days=1)
    result = db.execute(delete(Source).where(Source.last_activity_on < cutoff, *_unused())
                        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def unused_made_on(db: Session, day: date) -> int:
    """How many sources made on `day` have nothing yet: codenames not used for a sending."""
    return int(db.scalar(select(func.count()).select_from(Source)
                         .where(Source.created_on == day, *_unused())) or 0)
