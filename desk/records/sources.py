"""Sources: made when a codename is generated, starred by journalists, deleted for good."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crypto.custody import SigningKey
from desk.records.designations import new_designation
from desk.records.items import delete_items
from desk.records.models import Item, Source
from desk.records.replies import delete_replies, history
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


def delete_source(db: Session, store: Store, key: SigningKey, source: Source,
                  actor: str) -> None:
    """Delete a source, everything it sent and every reply to it."""
    submissions = db.scalars(select(Item).where(Item.source_id == source.id))
    delete_items(db, store, key, list(submissions), actor)
    replies = history(db, source.id)
    delete_replies(db, key, replies, actor)
    db.delete(source)
    db.commit()
    for reply in replies:
        store.remove_reply(reply.id)
