"""Reply rows: what a source may read or delete, what journalists see, and their removal.

Storing a new reply is `desk.outbound.replies`; this module only reads and removes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crypto.custody import SigningKey
from crypto.names import REPLY_BOX_NAME
from desk.records.custody import append_entries, batches
from desk.records.models import Reply
from desk.storage.store import Store


@dataclass(frozen=True)
class SourceReply:
    """A reply as the source's page needs it: its row and its box."""

    reply: Reply
    box: bytes


def replies_for_source(db: Session, store: Store, source_id: str) -> list[SourceReply]:
    """The replies a source has not deleted, oldest first."""
    found = []
    for reply in db.scalars(select(Reply).where(Reply.source_id == source_id,
                                                Reply.source_deleted.is_(False))
                            .order_by(Reply.number)):
        try:
            box = (store.reply_path(reply.id) / REPLY_BOX_NAME).read_bytes()
        except FileNotFoundError:
            continue
        found.append(SourceReply(reply, box))
    return found


def delete_for_source(db: Session, store: Store, source_id: str,
                      reply_ids: Sequence[str]) -> int:
    """The source deletes replies: their boxes go for good, the journalists' copies stay.
    Returns how many were deleted; committed."""
    replies = list(db.scalars(select(Reply).where(Reply.source_id == source_id,
                                                  Reply.id.in_(reply_ids),
                                                  Reply.source_deleted.is_(False))))
    for reply in replies:
        reply.source_deleted = True
    db.commit()
    for reply in replies:
        path = store.reply_path(reply.id) / REPLY_BOX_NAME
        path.unlink(missing_ok=True)
    return len(replies)


def delete_replies(writers: sessionmaker[Session], store: Store, key: SigningKey,
                   ids: Sequence[str], actor: str) -> int:
    """Delete the replies with these ids for good, BATCH at a time as delete_items does;
    return how many were still there."""
    deleted = 0
    for batch in batches(ids):
        with writers() as db:
            found = {reply.id: reply
                     for reply in db.scalars(select(Reply).where(Reply.id.in_(batch)))}
            replies = [found[reply_id] for reply_id in batch if reply_id in found]
            forget_replies(db, key, replies, actor)
            db.commit()
        for reply in replies:
            store.remove_reply(reply.id)
        deleted += len(replies)
    return deleted


def forget_replies(db: Session, key: SigningKey, replies: Sequence[Reply], actor: str) -> None:
    """Record replies' deletion in custody and drop their rows; not committed. The caller
    removes their files after the commit."""
    append_entries(db, key, "delete", [reply.custody for reply in replies], actor)
    for reply in replies:
        db.delete(reply)


def history(db: Session, source_id: str) -> list[Reply]:
    """Every reply to a source, for the journalist interface, oldest first."""
    return list(db.scalars(select(Reply).where(Reply.source_id == source_id)
                           .order_by(Reply.number)))
