"""Recording, marking and deleting stored objects, each change written to the custody log."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crypto.custody import RETENTION_ACTOR, SigningKey
from desk.records.custody import append_entry
from desk.records.designations import new_designation
from desk.records.instance import load_instance
from desk.records.models import Reply, Source, Submission
from desk.records.replies import delete_replies, history
from desk.storage.store import StagedObject, Store


def create_source(session: Session, lookup_id: str, reply_public_key: bytes) -> Source:
    """A new source known by its codename's lookup id, a fresh designation and the public half
    of its reply key; not committed."""
    today = datetime.now(UTC).date()
    source = Source(id=secrets.token_hex(16), lookup_id=lookup_id,
                    designation=new_designation(session), created_on=today,
                    last_activity_on=today, reply_public_key=reply_public_key)
    session.add(source)
    return source


def record_submission(session: Session, store: Store, key: SigningKey, source_id: str,
                      staged: Sequence[StagedObject]) -> None:
    """Publish staged objects, add their rows and ingest entries, and commit; all or nothing.

    `session` must be a writer session: the custody entries are appended in its transaction.
    """
    today = datetime.now(UTC).date()
    published: list[str] = []
    try:
        for obj in staged:
            store.publish(obj.staging, obj.object_id)
            published.append(obj.object_id)
            session.add(Submission(
                id=obj.object_id, source_id=source_id, kind=obj.kind,
                ciphertext_size=obj.ciphertext_size, ciphertext_sha256=obj.ciphertext_sha256,
                part_count=obj.part_count, received_on=today))
            append_entry(session, key, "ingest", obj.object_id, obj.ciphertext_sha256)
        session.execute(update(Source).where(Source.id == source_id)
                        .values(last_activity_on=today))
        session.commit()
    except BaseException:
        session.rollback()
        for object_id in published:
            store.remove(object_id)
        for obj in staged[len(published):]:
            store.discard(obj.staging)
        raise


def set_starred(session: Session, source_id: str, starred: bool) -> None:
    """Star or unstar a source; not committed."""
    session.execute(update(Source).where(Source.id == source_id).values(starred=starred))


def set_seen(session: Session, ids: Sequence[str], seen: bool = True) -> None:
    """Mark objects seen or unseen; not committed."""
    session.execute(update(Submission).where(Submission.id.in_(ids)).values(seen=seen))


def delete_submissions(session: Session, store: Store, key: SigningKey,
                       submissions: Sequence[Submission], actor: str) -> None:
    """Delete objects for good: custody entries and rows committed first, then the files.

    A crash between the two leaves ciphertext without a row, never a row without ciphertext.
    """
    for submission in submissions:
        append_entry(session, key, "delete", submission.id, submission.ciphertext_sha256, actor)
        session.delete(submission)
    session.commit()
    for submission in submissions:
        store.remove(submission.id)


def delete_source(session: Session, store: Store, key: SigningKey, source: Source,
                  actor: str) -> None:
    """Delete a source, everything it sent and every reply to it."""
    submissions = session.scalars(select(Submission).where(Submission.source_id == source.id))
    delete_submissions(session, store, key, list(submissions), actor)
    replies = history(session, source.id)
    delete_replies(session, key, replies, actor)
    session.delete(source)
    session.commit()
    for reply in replies:
        store.remove_reply(reply.id)


def purge_expired(session: Session, store: Store, key: SigningKey) -> tuple[int, int]:
    """Delete objects received, and replies sent, before the retention period, each with a
    custody entry; return how many of each."""
    days = load_instance(session).retention_days
    if days is None:
        return 0, 0
    cutoff = datetime.now(UTC).date() - timedelta(days=days)
    expired = list(session.scalars(select(Submission).where(Submission.received_on < cutoff)))
    delete_submissions(session, store, key, expired, RETENTION_ACTOR)
    replies = list(session.scalars(select(Reply).where(Reply.created_on < cutoff)))
    delete_replies(session, key, replies, RETENTION_ACTOR)
    session.commit()
    for reply in replies:
        store.remove_reply(reply.id)
    return len(expired), len(replies)
