"""Export bundles for the air gap, streamed with no temp copy (crypto/FORMAT.md, "Bundles")."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.bundle import (
    ManifestObject,
    ManifestRecipient,
    ManifestReply,
    Member,
    manifest_json,
    sign_manifest,
    stream_tar,
    tar_size,
    version_line,
)
from crypto.names import (
    BUNDLE_FILENAME,
    CUSTODY_NAME,
    MANIFEST_NAME,
    MANIFEST_SIGNATURE_NAME,
    METADATA_NAME,
    PART_GLOB,
    REPLY_COPY_NAME,
    SIGNING_KEY_NAME,
    VERSION_NAME,
    object_member,
    reply_member,
)
from desk.errors import JournalistError, NotAcceptingSubmissions
from desk.records.custody import append_entry, custody_records
from desk.records.instance import load_instance
from desk.records.items import set_seen
from desk.records.models import Item, Journalist, Reply, Source
from desk.services import Services


@dataclass(frozen=True)
class Export:
    """A bundle ready to stream: its size and its bytes, produced on demand."""

    filename: str
    size: int
    chunks: Iterator[bytes]
    count: int


def select_items(db: Session, *, ids: Sequence[str] | None = None,
                       unseen: bool = False, source: Source | None = None) -> list[Item]:
    """The objects an export covers, oldest first."""
    query = select(Item).order_by(Item.received_on, Item.id)
    if ids is not None:
        query = query.where(Item.id.in_(ids))
    if unseen:
        query = query.where(Item.seen.is_(False))
    if source is not None:
        query = query.where(Item.source_id == source.id)
    return list(db.scalars(query))


def export_bundle(services: Services, db: Session, submissions: Sequence[Item],
                  actor: str, event: str = "export") -> Export:
    """Record the export in custody, mark the objects seen, and prepare the bundle's stream.

    `session` must be a writer session. The manifest and the custody log are encrypted to the
    journalists' keys; the objects' ciphertext goes in as it is stored. Every reply to the
    objects' sources travels along (its journalists' copy), with the sources' reply public
    keys and the journalists' public keys, so the offline machine can show the conversation
    and write the next reply.
    """
    if not submissions:
        raise JournalistError("nothing to export")
    recipients = services.recipients.current()
    if not recipients:
        raise NotAcceptingSubmissions()
    source_ids = {s.source_id for s in submissions}
    replies = list(db.scalars(select(Reply).where(Reply.source_id.in_(source_ids))
                                   .order_by(Reply.source_id, Reply.number)))
    for submission in submissions:
        append_entry(db, services.signing_key, event, submission.custody, actor)
    for reply in replies:
        append_entry(db, services.signing_key, event, reply.custody, actor)
    set_seen(db, [s.id for s in submissions])
    db.commit()

    today = datetime.now(UTC).date()
    sources = {source.id: source for source in db.scalars(
        select(Source).where(Source.id.in_(source_ids)))}
    usernames = {fingerprint: name for fingerprint, name in db.execute(
        select(Journalist.fingerprint, Journalist.username))}
    manifest = manifest_json(
        {"exported_on": today.isoformat(), "exported_by": actor,
         "instance": load_instance(db).name},
        [ManifestObject(s.id, sources[s.source_id].designation, s.kind,
                        s.received_on.isoformat(), s.ciphertext_sha256, s.custody_key)
         for s in submissions],
        [ManifestReply(r.id, sources[r.source_id].designation, r.number,
                       r.created_on.isoformat(), r.author, r.via, r.ciphertext_sha256,
                       r.custody_key) for r in replies],
        {source.designation: source.reply_public_key for source in sources.values()
         if source.reply_public_key is not None},
        [ManifestRecipient(usernames.get(fpr, fpr), fpr,
                           services.gpg.export_public_key(fpr).decode("ascii"))
         for fpr in recipients])
    custody = "".join(record.entry().to_json() + "\n" for record in custody_records(db))
    gpg = services.gpg
    members = [
        Member(VERSION_NAME, len(version_line()), data=version_line()),
        _data_member(SIGNING_KEY_NAME, (services.signing_key.public_hex + "\n").encode()),
        _data_member(MANIFEST_NAME, gpg.encrypt_bytes(manifest, recipients)),
        _data_member(MANIFEST_SIGNATURE_NAME,
                     (sign_manifest(services.signing_key, manifest) + "\n").encode("ascii")),
        _data_member(CUSTODY_NAME, gpg.encrypt_bytes(custody.encode("utf-8"), recipients)),
    ]
    for submission in submissions:
        directory = services.store.path(submission.id)
        names = [METADATA_NAME, *sorted(p.name for p in directory.glob(PART_GLOB))]
        for name in names:
            path = directory / name
            members.append(Member(object_member(submission.id, name), path.stat().st_size,
                                  path=path))
    for reply in replies:
        path = services.store.reply_path(reply.id) / REPLY_COPY_NAME
        members.append(Member(reply_member(reply.id), path.stat().st_size, path=path))
    # No date in the name: the name is visible on the transfer stick.
    return Export(filename=BUNDLE_FILENAME, size=tar_size(members),
                  chunks=stream_tar(members), count=len(submissions))


def _data_member(name: str, data: bytes) -> Member:
    return Member(name, len(data), data=data)
