"""How much sources may keep on the desk: each source, and all of them together.

What a source keeps is the ciphertext of its stored items, and what its resumable uploads in
progress have reserved: each upload's declared Upload-Length counts from its creation, so that
bodies still to come cannot take a source past its quota. A form post is checked twice: by
its Content-Length before any of it is encrypted, and by the ciphertext it made, in the
transaction that records it (a body of unknown length, or two posts at once, cannot slip by).
Without these, one source could fill the disk and the desk would refuse every other source
(deploy/README.md, "Quotas").

Resumable uploads in progress are capped as well, in number and in bytes declared but not yet
sent: each source's (and so each of its sessions'), and the whole desk's. An empty upload
costs a row, a folder and a lock file, and one codename could otherwise make hundreds a
second until the disk's inodes ran out.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session

from desk.config import Config
from desk.errors import QuotaReached
from desk.records.models import Item, Upload
from desk.storage.store import Store


def require_room(db: Session, config: Config, store: Store, source_id: str, size: int) -> None:
    """QuotaReached unless `size` bytes more keep the source within DESK_QUOTA_PER_SOURCE and
    all sources within DESK_QUOTA_ALL_SOURCES."""
    if kept(db, Item.source_id == source_id, Upload.source_id == source_id) + size > \
            config.quota_per_source:
        raise QuotaReached("a source's quota (DESK_QUOTA_PER_SOURCE) is reached")
    if kept(db, true(), true()) + size > config.quota_all_sources.of(store.disk_bytes()):
        raise QuotaReached("the sources' share of the disk (DESK_QUOTA_ALL_SOURCES) is reached")


def kept(db: Session, items: ColumnElement[bool], uploads: ColumnElement[bool]) -> int:
    """Bytes of the stored items and of the uploads in progress that the conditions select."""
    stored = db.scalar(select(func.coalesce(func.sum(Item.ciphertext_size), 0)).where(items))
    reserved = db.scalar(select(func.coalesce(func.sum(Upload.length), 0)).where(uploads))
    return int(stored or 0) + int(reserved or 0)


def require_upload_room(db: Session, config: Config, store: Store, source_id: str,
                        length: int) -> None:
    """QuotaReached unless the source may open one more upload of `length` bytes: at most
    DESK_UPLOADS_PER_SOURCE of its own open (a session holds one codename, so this is each
    session's cap too), DESK_UPLOADS_ALL_SOURCES open on the whole desk, and what all open
    uploads still expect within DESK_UNFINISHED_ALL_SOURCES."""
    if _open_uploads(db, Upload.source_id == source_id) >= config.uploads_per_source:
        raise QuotaReached("a source's uploads in progress (DESK_UPLOADS_PER_SOURCE) are at "
                           "their cap")
    if _open_uploads(db, true()) >= config.uploads_all_sources:
        raise QuotaReached("the desk's uploads in progress (DESK_UPLOADS_ALL_SOURCES) are at "
                           "their cap")
    unfinished = db.scalar(select(func.coalesce(func.sum(Upload.length - Upload.offset), 0)))
    if int(unfinished or 0) + length > config.unfinished_all_sources.of(store.disk_bytes()):
        raise QuotaReached("the bytes uploads in progress still expect "
                           "(DESK_UNFINISHED_ALL_SOURCES) are at their cap")


def _open_uploads(db: Session, which: ColumnElement[bool]) -> int:
    return int(db.scalar(select(func.count()).select_from(Upload).where(which)) or 0)
