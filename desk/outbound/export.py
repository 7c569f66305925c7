"""Export bundles for the air gap, streamed with no temp copy (crypto/FORMAT.md, "Bundles").

An export never holds SQLite's write lock for long, nor the bundle's contents in memory: its
custody entries are appended, and its items marked seen, BATCH at a time, each batch in a
short writer transaction of its own, so that a source's upload commits between two batches;
the custody log streams from the database into gpg; and the bundle's members are listed from
the exported ids as the tar streams. What it holds for the whole export is the ids and, while
it is signed, the manifest's plaintext (about 350 bytes an item).

Its two encrypted documents are written by gpg into a staging folder (ciphertext only, in
inodes the settle pooled), opened, and their names removed at once: the bundle reads them
from the open files, and nothing of them is left on disk once it is sent or abandoned.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from crypto.bundle import (
    ManifestObject,
    ManifestRecipient,
    ManifestReply,
    Member,
    manifest_chunks,
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
from desk.records.custody import BATCH, append_entries, batches, custody_records
from desk.records.instance import load_instance
from desk.records.items import set_seen
from desk.records.models import Item, Journalist, Reply, Source
from desk.services import Services


@dataclass(frozen=True)
class Export:
    """A bundle ready to stream: its size and its bytes, produced on demand. `close` lets go of
    its encrypted documents (streaming to the end or stopping does it too)."""

    filename: str
    size: int
    chunks: Iterator[bytes]
    count: int
    documents: list[IO[bytes]] = field(default_factory=list)

    def close(self) -> None:
        """Close the encrypted manifest and custody log; the bundle can no longer stream."""
        for handle in self.documents:
            handle.close()


@dataclass
class _Recorded:
    """What an export recorded in custody: the items and replies, and its last entry."""

    items: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)
    through: int = 0


def select_items(db: Session, *, ids: Sequence[str] | None = None,
                 unseen: bool = False, source: Source | None = None) -> list[Item]:
    """The objects an export covers, oldest first."""
    return list(db.scalars(_chosen(select(Item), ids, unseen, source)))


def select_item_ids(db: Session, *, ids: Sequence[str] | None = None,
                    unseen: bool = False, source: Source | None = None) -> list[str]:
    """The ids of the objects an export covers, oldest first: all an export keeps of them."""
    return list(db.scalars(_chosen(select(Item.id), ids, unseen, source)))


def _chosen(query: Select[Any], ids: Sequence[str] | None, unseen: bool,
            source: Source | None) -> Select[Any]:
    query = query.order_by(Item.received_on, Item.id)
    if ids is not None:
        query = query.where(Item.id.in_(ids))
    if unseen:
        query = query.where(Item.seen.is_(False))
    if source is not None:
        query = query.where(Item.source_id == source.id)
    return query


def export_bundle(services: Services, chosen: Sequence[str], actor: str,
                  event: str = "export") -> Export:
    """Record the export of the items `chosen` (ids) in custody, mark them seen, and prepare
    the bundle's stream.

    The manifest and the custody log are encrypted to the journalists' keys; the objects'
    ciphertext goes in as it is stored. Every reply to the objects' sources travels along (its
    journalists' copy), with the sources' reply public keys and the journalists' public keys,
    so the offline machine can show the conversation and write the next reply. An item or
    reply deleted while the export runs is left out.
    """
    if not chosen:
        raise JournalistError("nothing to export")
    recipients = services.recipients.current()
    if not recipients:
        raise NotAcceptingSubmissions()
    recorded = _record(services, chosen, actor, event)
    if not recorded.items:
        raise JournalistError("nothing to export")
    documents: list[IO[bytes]] = []
    try:
        with services.sessions() as reader:
            manifest = b"".join(_manifest(services, reader, recorded, actor, recipients))
        staging = services.store.stage()
        try:
            with staging.new_file(MANIFEST_NAME) as temp:
                services.gpg.encrypt_stream(io.BytesIO(manifest), recipients, temp)
            with services.sessions() as reader, staging.new_file(CUSTODY_NAME) as temp:
                # The log streams from the database into gpg, never whole in memory.
                services.gpg.encrypt_stream(
                    _LogReader(record.entry().to_json().encode("utf-8") + b"\n"
                               for record in custody_records(reader, recorded.through)),
                    recipients, temp)
            documents = [(staging.path / name).open("rb")
                         for name in (MANIFEST_NAME, CUSTODY_NAME)]
        finally:
            services.store.discard(staging)  # the open files keep what the bundle needs
        signature = (sign_manifest(services.signing_key, manifest) + "\n").encode("ascii")
        del manifest
        head = [
            Member(VERSION_NAME, len(version_line()), data=version_line()),
            _data_member(SIGNING_KEY_NAME, (services.signing_key.public_hex + "\n").encode()),
            _handle_member(MANIFEST_NAME, documents[0]),
            _data_member(MANIFEST_SIGNATURE_NAME, signature),
            _handle_member(CUSTODY_NAME, documents[1]),
        ]

        def members() -> Iterator[Member]:
            yield from head
            yield from _stored_members(services, recorded)

        size = tar_size(members())
    except BaseException:
        for handle in documents:
            handle.close()
        raise
    # No date in the name: the name is visible on the transfer stick.
    return Export(filename=BUNDLE_FILENAME, size=size, chunks=_streamed(members(), documents),
                  count=len(recorded.items), documents=documents)


def _record(services: Services, chosen: Sequence[str], actor: str, event: str) -> _Recorded:
    """Append the export's custody entries and mark its items seen, BATCH at a time, each
    batch in a short writer transaction: sources' commits go in between."""
    recorded = _Recorded()
    for batch in batches(chosen):
        with services.transaction() as db:
            found = {item.id: item for item in db.scalars(select(Item).where(Item.id.in_(batch)))}
            items = [found[item_id] for item_id in batch if item_id in found]
            entries = append_entries(db, services.signing_key, event,
                                     [item.custody for item in items], actor)
            set_seen(db, [item.id for item in items])
        recorded.items += [item.id for item in items]
        recorded.sources.update(item.source_id for item in items)
        recorded.through = entries[-1].seq if entries else recorded.through
    with services.sessions() as reader:
        reply_ids = list(reader.scalars(
            select(Reply.id).where(Reply.source_id.in_(recorded.sources))
            .order_by(Reply.source_id, Reply.number)))
    for batch in batches(reply_ids):
        with services.transaction() as db:
            found_replies = {reply.id: reply for reply in
                             db.scalars(select(Reply).where(Reply.id.in_(batch)))}
            replies = [found_replies[reply_id] for reply_id in batch if reply_id in found_replies]
            entries = append_entries(db, services.signing_key, event,
                                     [reply.custody for reply in replies], actor)
        recorded.replies += [reply.id for reply in replies]
        recorded.through = entries[-1].seq if entries else recorded.through
    return recorded


def _manifest(services: Services, db: Session, recorded: _Recorded, actor: str,
              recipients: Sequence[str]) -> Iterator[bytes]:
    """The manifest's bytes, reading the exported rows BATCH at a time. An item deleted since
    it was recorded leaves the export (so that its files are not looked for)."""
    sources = {source.id: source for source in db.scalars(
        select(Source).where(Source.id.in_(recorded.sources)))}
    usernames = {fingerprint: name for fingerprint, name in db.execute(
        select(Journalist.fingerprint, Journalist.username))}
    present: list[str] = []
    present_replies: list[str] = []

    def objects() -> Iterator[ManifestObject]:
        for item in _rows(db, Item, recorded.items):
            present.append(item.id)
            yield ManifestObject(item.id, sources[item.source_id].designation, item.kind,
                                 item.received_on.isoformat(), item.ciphertext_sha256,
                                 item.custody_key)

    def replies() -> Iterator[ManifestReply]:
        for reply in _rows(db, Reply, recorded.replies):
            present_replies.append(reply.id)
            yield ManifestReply(reply.id, sources[reply.source_id].designation, reply.number,
                                reply.created_on.isoformat(), reply.author, reply.via,
                                reply.ciphertext_sha256, reply.custody_key)

    yield from manifest_chunks(
        {"exported_on": datetime.now(UTC).date().isoformat(), "exported_by": actor,
         "instance": load_instance(db).name},
        objects(), replies(),
        {source.designation: source.reply_public_key for source in sources.values()
         if source.reply_public_key is not None},
        [ManifestRecipient(usernames.get(fpr, fpr), fpr,
                           services.gpg.export_public_key(fpr).decode("ascii"))
         for fpr in recipients])
    recorded.items, recorded.replies = present, present_replies


_Row = TypeVar("_Row", Item, Reply)


def _rows(db: Session, model: type[_Row], ids: Sequence[str]) -> Iterator[_Row]:
    """The rows with these ids, in this order, read BATCH at a time; deleted ones skipped."""
    for start in range(0, len(ids), BATCH):
        batch = ids[start:start + BATCH]
        found = {row.id: row for row in db.scalars(select(model).where(model.id.in_(batch)))}
        yield from (found[row_id] for row_id in batch if row_id in found)
        db.expunge_all()


def _stored_members(services: Services, recorded: _Recorded) -> Iterator[Member]:
    """The bundle members of the exported items' and replies' stored files, found as the tar
    streams (a listing of them all would grow with the export)."""
    for object_id in recorded.items:
        directory = services.store.path(object_id)
        for name in (METADATA_NAME, *sorted(p.name for p in directory.glob(PART_GLOB))):
            path = directory / name
            yield Member(object_member(object_id, name), path.stat().st_size, path=path)
    for reply_id in recorded.replies:
        path = services.store.reply_path(reply_id) / REPLY_COPY_NAME
        yield Member(reply_member(reply_id), path.stat().st_size, path=path)


def _streamed(members: Iterable[Member], documents: list[IO[bytes]]) -> Iterator[bytes]:
    try:
        yield from stream_tar(members)
    finally:
        for handle in documents:
            handle.close()


class _LogReader:
    """A readable stream of byte strings from an iterator, for gpg to encrypt as they come."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def read(self, n: int = -1, /) -> bytes:
        parts, size = [self._pending], len(self._pending)
        while n < 0 or size < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            parts.append(chunk)
            size += len(chunk)
        data = b"".join(parts)
        if n < 0:
            n = len(data)
        self._pending = data[n:]
        return data[:n]


def _data_member(name: str, data: bytes) -> Member:
    return Member(name, len(data), data=data)


def _handle_member(name: str, handle: IO[bytes]) -> Member:
    handle.seek(0, io.SEEK_END)
    return Member(name, handle.tell(), handle=handle)
