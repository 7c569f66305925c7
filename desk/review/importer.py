"""`desk-review import`: verify a bundle completely, then take it into the workspace.

Nothing is accepted before everything checks out: every member is copied into a private
staging folder while it is hashed, the manifest and custody log are decrypted and verified,
every object's ciphertext is checked against what the desk recorded at receipt, and every
metadata record is decrypted and parsed. Only then do objects move into the workspace.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.bundle import (
    Bundle,
    Manifest,
    ManifestObject,
    ManifestReply,
    read_bundle,
    verify_bundle,
)
from crypto.custody import CustodyEntry, ciphertext_digest, object_files
from crypto.durable import sync_path
from crypto.errors import CustodyBroken, DecryptionFailed, FormatError
from crypto.gpg import GnuPG
from crypto.items import ItemRecord
from crypto.names import METADATA_NAME, OBJECTS_DIR, REPLIES_DIR, REPLY_COPY_NAME
from crypto.replyfile import ReplyCopy
from desk.review.errors import ReviewError
from desk.review.index import (
    CustodyLine,
    Item,
    KnownDesk,
    Part,
    ReplyCopyRecord,
)
from desk.review.keys import KeyNote, compare_offered_keys
from desk.review.workspace import Workspace, log_action

CHUNK = 1 << 20


@dataclass(frozen=True)
class ImportResult:
    """What an import added."""

    new_items: int
    known_items: int
    desk_name: str
    custody_entries: int
    pinned: list[KeyNote] = field(default_factory=list)  # keys pinned by this import
    pending: list[KeyNote] = field(default_factory=list)  # key changes awaiting confirmation


def import_bundle(workspace: Workspace, gpg: GnuPG, bundle_path: Path,
                  progress: Callable[[int], None] = lambda _n: None,
                  accept_new_desk_key: bool = False) -> ImportResult:
    """Verify and import one bundle; raise ReviewError with the exact reason otherwise."""
    staging = workspace.staging / os.urandom(8).hex()
    staging.mkdir(mode=0o700)
    try:
        bundle = _read(bundle_path, staging, progress)
        manifest, custody = (_decrypt(gpg, bundle.manifest, "manifest"),
                             _decrypt(gpg, bundle.custody, "custody log"))
        try:
            parsed, chain = verify_bundle(bundle, manifest, custody)
        except CustodyBroken as exc:
            raise ReviewError(f"bundle refused: {exc}", "nothing was imported; ask the desk "
                              "for a fresh export and keep this bundle as evidence") from exc
        except FormatError as exc:
            raise ReviewError(f"bundle refused: {exc}", "nothing was imported") from exc
        listed = parsed.objects
        records = {o.object_id: _record(gpg, staging / o.object_id) for o in listed}
        for reply in parsed.replies:
            _check_copy(gpg, staging / REPLIES_DIR / reply.reply_id / REPLY_COPY_NAME, reply)
        with workspace.session() as session:
            desk = _pin_desk(session, bundle, parsed, accept_new_desk_key)
            _check_and_store_custody(session, desk.signing_key, chain)
            _store_reply_copies(session, workspace, staging, desk.signing_key, parsed,
                                bundle_path.name)
            pinned, pending = compare_offered_keys(session, desk, parsed, len(chain),
                                                   bundle_path.name)
            new = known = 0
            for obj in listed:
                target = workspace.objects(obj.object_id)
                if (item := session.get(Item, obj.object_id)) is not None:
                    known += 1
                    if obj.ciphertext_sha256 != item.ciphertext_sha256:
                        # Write-once: a verified copy never gives way to another, from this
                        # desk or any other.
                        raise ReviewError(
                            f"bundle refused: object {obj.object_id} is not the one imported "
                            "before: its ciphertext differs from the one pinned at its first "
                            "import", "nothing was imported; tell the desk's admins and keep "
                            "both bundles")
                    if not target.is_dir() or \
                            ciphertext_digest(object_files(target)) != item.ciphertext_sha256:
                        # The verified copy replaces ciphertext lost or damaged since.
                        shutil.rmtree(target, ignore_errors=True)
                        os.rename(staging / obj.object_id, target)
                        sync_path(target.parent)
                        log_action(session, obj.object_id, "restore", bundle=bundle_path.name)
                    continue
                record = records[obj.object_id]
                if target.exists():
                    shutil.rmtree(target)
                os.rename(staging / obj.object_id, target)
                sync_path(target.parent)
                session.add(_item(record, obj, desk.signing_key))
                log_action(session, obj.object_id, "import", bundle=bundle_path.name,
                           ciphertext_sha256=obj.ciphertext_sha256, desk=desk.signing_key)
                new += 1
        return ImportResult(new, known, desk.name, len(chain), pinned, pending)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read(bundle_path: Path, staging: Path, progress: Callable[[int], None]) -> Bundle:
    def take(kind: str, object_id: str, name: str, handle: IO[bytes]) -> tuple[int, str]:
        folder = staging / object_id if kind == OBJECTS_DIR else staging / kind / object_id
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with (folder / name).open("xb") as out:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
                progress(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        sync_path(folder)
        return size, digest.hexdigest()

    try:
        with bundle_path.open("rb") as source:
            return read_bundle(source, take)
    except FileNotFoundError as exc:
        raise ReviewError(f"no such file: {bundle_path}") from exc
    except (FormatError, tarfile.TarError, EOFError, OSError) as exc:
        raise ReviewError(f"bundle refused: {exc}", "nothing was imported") from exc


def _decrypt(gpg: GnuPG, data: bytes, what: str) -> bytes:
    try:
        return gpg.decrypt_bytes(data)
    except DecryptionFailed as exc:
        if str(exc).startswith("no secret key"):
            raise ReviewError(f"cannot decrypt the bundle's {what}: {exc}",
                              "use --gnupghome (or GNUPGHOME) for the GnuPG home that holds "
                              "your journalist secret key") from exc
        raise ReviewError(f"bundle refused: its {what} does not decrypt: {exc}",
                          "nothing was imported; ask the desk for a fresh export and keep "
                          "this bundle as evidence") from exc


def _record(gpg: GnuPG, folder: Path) -> ItemRecord:
    data = _decrypt(gpg, (folder / METADATA_NAME).read_bytes(), "metadata record")
    try:
        record = ItemRecord.from_json(data)
    except FormatError as exc:
        raise ReviewError(f"bundle refused: object {folder.name}: {exc}",
                          "nothing was imported") from exc
    if record.object_id != folder.name:
        raise ReviewError(f"bundle refused: object {folder.name} carries the metadata of "
                          f"{record.object_id}", "nothing was imported")
    names = sorted(p.name for p in folder.iterdir() if p.name != METADATA_NAME)
    if names != [p.name for p in record.parts]:
        raise ReviewError(f"bundle refused: object {folder.name} has parts {names}, its "
                          "record lists others", "nothing was imported")
    return record


def _pin_desk(session: Session, bundle: Bundle, manifest: Manifest,
              accept_new_desk_key: bool) -> KnownDesk:
    name = str(manifest.header.get("instance") or "desk")
    desk = session.get(KnownDesk, bundle.signing_key)
    if desk is not None:
        return desk
    others = session.scalars(select(KnownDesk)).all()
    if others and not accept_new_desk_key:
        raise ReviewError(
            f"bundle refused: it is signed by a desk key this workspace has not seen "
            f"({bundle.signing_key[:16]}...)",
            "if your desk's signing key really changed, check with its admins, then import "
            "again with --accept-new-desk-key")
    desk = KnownDesk(signing_key=bundle.signing_key, name=name,
                     first_imported=datetime.now(UTC).replace(tzinfo=None))
    session.add(desk)
    return desk


def _check_and_store_custody(session: Session, desk_key: str,
                             chain: list[CustodyEntry]) -> None:
    stored = {line.seq: line.entry for line in session.scalars(
        select(CustodyLine).where(CustodyLine.desk_key == desk_key))}
    if stored and len(chain) < max(stored):
        raise ReviewError(
            f"bundle refused: its custody log ends at entry {len(chain)}, but a bundle "
            f"imported before had entries up to {max(stored)}: the desk's log lost entries",
            "nothing was imported; tell the desk's admins and keep both bundles")
    for entry in chain:
        text = entry.to_json()
        if entry.seq in stored and stored[entry.seq] != text:
            raise ReviewError(
                f"bundle refused: custody entry {entry.seq} differs from the one imported "
                "before: the desk's log was rewritten", "nothing was imported; tell the desk's "
                "admins and keep both bundles")
        if entry.seq not in stored:
            session.add(CustodyLine(desk_key=desk_key, seq=entry.seq, entry=text))


def _check_copy(gpg: GnuPG, path: Path, reply: ManifestReply) -> None:
    """A reply copy must decrypt and say it is the reply the manifest lists."""
    try:
        copy = ReplyCopy.from_json(_decrypt(gpg, path.read_bytes(), "reply copy"))
    except FormatError as exc:
        raise ReviewError(f"bundle refused: reply {reply.reply_id}: {exc}",
                          "nothing was imported") from exc
    if copy.reply_id != reply.reply_id or copy.source != reply.source:
        raise ReviewError(f"bundle refused: reply {reply.reply_id} carries the copy of another "
                          "reply", "nothing was imported")


def _store_reply_copies(session: Session, workspace: Workspace, staging: Path,
                        desk_key: str, manifest: Manifest, bundle_name: str) -> None:
    """Keep the journalists' copies of replies, for `replies`."""
    for reply in manifest.replies:
        target = workspace.reply_copy(reply.reply_id)
        if session.get(ReplyCopyRecord, reply.reply_id) is None:
            os.replace(staging / REPLIES_DIR / reply.reply_id / REPLY_COPY_NAME, target)
            sync_path(target.parent)
            session.add(ReplyCopyRecord(
                id=reply.reply_id, desk_key=desk_key, source=reply.source,
                number=reply.number, sent_on=datetime.fromisoformat(reply.sent_on).date(),
                author=reply.author, via=reply.via,
                ciphertext_sha256=reply.ciphertext_sha256))
            log_action(session, None, "import-reply", reply=reply.reply_id,
                       bundle=bundle_name)


def _item(record: ItemRecord, listed: ManifestObject, desk_key: str) -> Item:
    item = Item(
        id=record.object_id, desk_key=desk_key, source=listed.source, kind=record.kind,
        filename=record.display_name, content_type=record.content_type, size=record.size,
        sha256=record.sha256, received_on=datetime.fromisoformat(listed.received_on).date(),
        received_at=record.received_at.astimezone(UTC).replace(tzinfo=None),
        ciphertext_sha256=listed.ciphertext_sha256, custody_key=listed.custody_key,
        verified=True,
        imported_at=datetime.now(UTC).replace(tzinfo=None))
    item.parts = [Part(name=p.name, size=p.size, sha256=p.sha256) for p in record.parts]
    return item

