"""Resumable uploads (tus 1.0.0), stored in the same canonical parts as a form upload.

An upload lives in `store/uploads/<id>/` as a sealed tail (PATCH bodies under AES-256-GCM,
with a key only a session of the source's codename gives) and the whole parts cut from it,
encrypted to the journalists, until its last byte arrives; then the rest of the tail and the
padding become the last part, its metadata record is written and the folder is published as a
normal object, with its row and custody entry, exactly like a form upload. What the desk must
not keep readable (the file's name and type, each part's plaintext SHA-256, and the state of
the whole file's SHA-256 so far) is sealed in the upload's row with a key derived from the
owner secret: from the codename's reply key seed, which a session holds only sealed under its
cookie, so the upload outlives the session that made it. The answer that completes an upload
carries the whole file's SHA-256 (SHA256_HEADER), the receipt a form post's page shows.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NotRequired, TypedDict, cast

from sqlalchemy import false, select, update
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import ClientDisconnected

from crypto import sealing
from crypto.custody import SigningKey
from crypto.durable import sync_path
from crypto.errors import UnsealFailed
from crypto.gpg import Readable
from crypto.items import PartRecord, RecordTooLarge, check_record_fits, padme
from crypto.names import (
    LOCK_NAME,
    MAX_PARTS,
    METADATA_NAME,
    POOL_FILE_PREFIX,
    TAIL_NAME_RE,
    part_name,
    tail_name,
)
from desk.intake.ingest import HashingReader, ItemWriter
from desk.intake.resumable_sha256 import ResumableSha256
from desk.intake.shape import Limited, PaddedTo, part_size
from desk.records.items import record_items
from desk.records.models import Upload
from desk.storage.store import StagedItem, Staging, Store

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,expiration,termination,checksum"
CHECKSUM_ALGORITHMS = ("sha1", "sha256")
# The answer that completes an upload names the whole file's SHA-256 (lower-case hex) here.
SHA256_HEADER = "Desk-Sha256"
UPLOAD_DAYS = 7
MAX_METADATA_CHARS = 4096
# HKDF info for a source's upload owner secret (from its reply key seed).
OWNER_KEY_INFO = b"desk tus owner"
# HKDF info for the key of an upload's sealed record is this followed by the upload id.
RECORD_KEY_INFO = b"desk tus upload "
# HKDF info for the key of an upload's sealed tail is this followed by the upload id.
TAIL_KEY_INFO = b"desk tus tail "
BODY_CHUNK = 256 * 1024
# Each PATCH body becomes a sealed tail piece, a file of its own, until a whole part is cut.
# Bodies smaller than this that do not end the upload are refused once the upload holds
# SMALL_PIECES_ALLOWED pieces, so that an upload's tail holds at most some 16 + 64 pieces
# however small its PATCHes (review 2, finding 3: 1-byte parts, one inode each). upload.js
# sends 1 to 16 MiB; a body cut short by a dropped connection below this is dropped and resent.
MIN_PATCH_BYTES = 1024 * 1024
SMALL_PIECES_ALLOWED = 16
# Inodes an upload's creation needs (its folder and lock file, and its first tail piece), and
# a PATCH beyond the parts it cuts (a tail piece, the metadata record, the staging folder).
CREATE_INODES = 3
PATCH_INODES = 3


class UploadRecord(TypedDict):
    """What an upload's row keeps sealed (crypto/FORMAT.md, "Resumable uploads")."""

    filename: str | None  # base64 of the name's bytes
    filetype: str | None
    parts: list[list[str | int]]  # [name, size, plaintext sha256] of each part so far
    # ResumableSha256.dump() of the bytes so far; absent from uploads made before it was kept.
    sha256_state: NotRequired[list[str | int]]


class TusError(Exception):
    """A tus request refused with `status`; the message is for the client program."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def expires_at(upload: Upload) -> datetime:
    """The instant an upload expires: the end of its expiry day (rows hold dates only)."""
    return datetime.combine(upload.expires_on + timedelta(days=1), datetime.min.time(), UTC)


def owner_secret(seed: bytes) -> str:
    """The owner secret of a source's uploads, from its codename's reply key seed."""
    return sealing.derive(seed, OWNER_KEY_INFO).hex()


def owner_hash(secret: str) -> str:
    """What the upload row keeps of the secret."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _key(secret: str, upload_id: str) -> bytes:
    return sealing.derive(secret.encode("ascii"), RECORD_KEY_INFO + upload_id.encode("ascii"))


def seal(secret: str, upload_id: str, data: UploadRecord) -> bytes:
    """Encrypt the upload's private record under the owner secret (AES-256-GCM)."""
    plaintext = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return sealing.seal(_key(secret, upload_id), plaintext, upload_id.encode("ascii"))


def unseal(secret: str, upload_id: str, blob: bytes) -> UploadRecord:
    """Decrypt what `seal` made; TusError 404 if this secret does not open it."""
    try:
        plaintext = sealing.unseal(_key(secret, upload_id), blob, upload_id.encode("ascii"))
    except UnsealFailed as exc:
        raise TusError(404, "no such upload") from exc
    # Only `seal` makes what opens here, so the JSON is an UploadRecord.
    return cast("UploadRecord", json.loads(plaintext))


def parse_metadata(header: str) -> dict[str, bytes]:
    """The Upload-Metadata header: comma-separated 'key base64value' pairs."""
    if len(header) > MAX_METADATA_CHARS:
        raise TusError(400, "Upload-Metadata is too long")
    pairs: dict[str, bytes] = {}
    for item in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = item.partition(" ")
        if not key or not key.isascii() or " " in key or key in pairs:
            raise TusError(400, "bad Upload-Metadata key")
        try:
            pairs[key] = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TusError(400, "Upload-Metadata values must be base64") from exc
    return pairs


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """The Upload-Checksum header: 'algorithm base64digest'."""
    if not header:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise TusError(400, "unsupported checksum algorithm")
    try:
        return algorithm, base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TusError(400, "Upload-Checksum must be base64") from exc


def upload_dir(store: Store, upload_id: str) -> Path:
    """Where an upload's parts wait."""
    return store.uploads / upload_id


def create_upload(db: Session, store: Store, source_id: str, secret: str, length: int,
                  metadata: dict[str, bytes]) -> Upload:
    """Make the upload's folder and row (not committed); NoSpace if it would not fit on disk."""
    root = store.uploads
    root.mkdir(mode=0o700, exist_ok=True)
    store.require_space(length, CREATE_INODES)
    upload_id = secrets.token_hex(16)
    folder = upload_dir(store, upload_id)
    store.make_dir(folder)
    # The lock file from the start, counted in CREATE_INODES: a settle would otherwise add
    # one to every empty upload's folder, past the reserve (it locks each upload it settles).
    if not store.take_pooled(POOL_FILE_PREFIX, folder / LOCK_NAME):
        os.close(os.open(folder / LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    sync_path(folder)  # the lock's entry, durable before the 201
    today = datetime.now(UTC).date()
    name = metadata.get("filename")
    filetype = (metadata.get("filetype") or b"").decode("utf-8", "replace") or None
    try:
        check_record_fits(name, filetype)
    except RecordTooLarge as exc:
        raise TusError(400, str(exc)) from exc
    record: UploadRecord = {
        "filename": None if name is None else base64.b64encode(name).decode("ascii"),
        "filetype": filetype,
        "parts": [],
        "sha256_state": ResumableSha256().dump(),
    }
    upload = Upload(id=upload_id, source_id=source_id, owner=owner_hash(secret),
                    length=length, offset=0, part_count=0,
                    sealed=seal(secret, upload_id, record), created_on=today,
                    expires_on=today + timedelta(days=UPLOAD_DAYS))
    db.add(upload)
    return upload


def find_upload(db: Session, upload_id: str, secret: str | None) -> Upload:
    """The upload if this session created it and it has not expired; else TusError 404/410."""
    upload = db.get(Upload, upload_id)
    if upload is None or secret is None or upload.owner != owner_hash(secret):
        raise TusError(404, "no such upload")
    if expires_at(upload) <= datetime.now(UTC):
        raise TusError(410, "this upload has expired")
    return upload


@dataclass(frozen=True)
class Unfinished:
    """An upload of the source's codename still waiting for bytes, as the submit page lists
    it: the name its browser gave (None without one), its length, and what has arrived."""

    id: str
    name: str | None
    length: int
    offset: int


def unfinished_uploads(db: Session, source_id: str, secret: str) -> list[Unfinished]:
    """The source's uploads that this owner secret opens and that have not expired, by name.

    The name exists on the server only sealed in the row; it is opened here, in memory, for
    the page of a session of the codename that owns it, so that the source's browser can match
    a file chosen again to the upload it continues."""
    now = datetime.now(UTC)
    found = []
    for upload in db.scalars(select(Upload).where(Upload.source_id == source_id,
                                                  Upload.owner == owner_hash(secret))):
        if expires_at(upload) <= now:
            continue
        try:
            record = unseal(secret, upload.id, upload.sealed)
        except TusError:  # pragma: no cover - the owner hash matched, so the secret opens it
            continue
        encoded = record.get("filename")
        name = None if encoded is None else \
            base64.b64decode(str(encoded)).decode("utf-8", "replace")
        found.append(Unfinished(upload.id, name, upload.length, upload.offset))
    return sorted(found, key=lambda item: (item.name or "", item.id))


def require_patch_room(store: Store, upload: Upload, declared: int | None) -> None:
    """Before a PATCH body is read: NoSpace if it would take the store into the reserve, and
    TusError 400 for a small body that does not end an upload whose tail is crowded."""
    body = upload.length - upload.offset if declared is None else declared
    store.require_space(body, PATCH_INODES + body // part_size())
    if declared is not None and _too_small(store, upload, declared):
        raise TusError(400, SMALL_BODY)


SMALL_BODY = (f"a PATCH body must be at least {MIN_PATCH_BYTES} bytes, unless it ends the "
              "upload")


def _too_small(store: Store, upload: Upload, size: int) -> bool:
    """True for a body of `size` that would add one more small piece to a crowded tail."""
    return size < MIN_PATCH_BYTES and upload.offset + size < upload.length and \
        len(tail_pieces(upload_dir(store, upload.id))) >= SMALL_PIECES_ALLOWED


@contextlib.contextmanager
def locked(store: Store, upload_id: str) -> Iterator[None]:
    """Hold the upload's lock, across processes; TusError 423 if another request has it."""
    folder = upload_dir(store, upload_id)
    fd = _lock_file(folder)
    try:
        yield
    finally:
        # Unlock before closing: a gpg child forked meanwhile shares this open file until it
        # execs, and closing our descriptor alone would leave the lock held for that long.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lock_file(folder: Path) -> int:
    """An open, locked descriptor of the upload's lock file; TusError 404 or 423."""
    # A settle replaces the lock file (while holding it) with a fresh one: a lock taken on the
    # replaced file guards nothing, so take it again on the file the name now holds.
    for _ in range(3):
        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError as exc:
            raise TusError(404, "no such upload") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(folder / LOCK_NAME).st_ino:
                return fd
        except BlockingIOError as exc:
            os.close(fd)
            raise TusError(423, "another request is writing to this upload") from exc
        except FileNotFoundError as exc:
            os.close(fd)
            raise TusError(404, "no such upload") from exc
        os.close(fd)
    raise TusError(423, "another request is writing to this upload")


class BodyReader:
    """The PATCH body, at most `limit` bytes; a dropped connection reads as the end.

    A client that disconnects mid-PATCH keeps what arrived: the bytes so far become a finished
    part, and the client resumes from the new offset. `cut_short` says the body ended before
    its Content-Length; `overflow` that a body without one ran past the upload's length.
    """

    # Small reads: a reset connection loses what gunicorn had buffered for the current read.
    MAX_READ = 256 * 1024

    def __init__(self, stream: Readable, limit: int, declared: int | None) -> None:
        self._stream = stream
        self._left = limit
        self._declared = declared
        self.received = 0
        self.cut_short = False
        self.overflow = False

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes of the body."""
        if self._left <= 0:
            if self._declared is None and not self.overflow:
                self.overflow = bool(self._read(1))
            return b""
        want = min(self._left if n < 0 else n, self._left, self.MAX_READ)
        data = self._read(want)
        if not data and self._declared is not None and self.received < self._declared:
            self.cut_short = True
        self._left -= len(data)
        self.received += len(data)
        return data

    def _read(self, n: int) -> bytes:
        try:
            return self._stream.read(n)
        except (OSError, ValueError, ClientDisconnected):
            self.cut_short = True
            return b""


@dataclass(frozen=True)
class PatchResult:
    """Where an upload stands after a PATCH, and the whole file's SHA-256 once it is
    finished (None for an upload made before the desk kept its state, if it had parts)."""

    offset: int
    finished: bool
    sha256: str | None = None


def _tail_key(secret: str, upload_id: str) -> bytes:
    return sealing.derive(secret.encode("ascii"), TAIL_KEY_INFO + upload_id.encode("ascii"))


def _piece_aad(upload_id: str, start: int) -> bytes:
    """What binds a tail piece to its upload and place: the upload id and the piece's start."""
    return upload_id.encode("ascii") + start.to_bytes(8, "big")


def tail_pieces(folder: Path) -> dict[int, Path]:
    """The sealed tail pieces in an upload's folder, by the upload offset they start at."""
    pieces: dict[int, Path] = {}
    for path in folder.iterdir():
        match = TAIL_NAME_RE.match(path.name)
        if match:
            pieces[int(match.group(1))] = path
    return pieces


class TailReader:
    """The plaintext of an upload's bytes [start, end) from its sealed tail pieces, unsealed
    in memory as it is read, and hashed; TusError 500 if a piece is missing or damaged."""

    def __init__(self, folder: Path, key: bytes, upload_id: str, start: int, end: int) -> None:
        self._folder = folder
        self._key = key
        self._upload_id = upload_id
        self._start = start
        self._end = end
        self._chunks = self._generate()
        self._pending = b""
        self.sha256 = hashlib.sha256()
        self.first: int | None = None  # where the first piece read starts
        self.used: list[tuple[int, int]] = []  # (start, length) of each piece read through

    def _generate(self) -> Iterator[bytes]:
        pieces = tail_pieces(self._folder)
        first = max((at for at in pieces if at <= self._start), default=None)
        if first is None:
            raise TusError(500, "this upload's stored tail is incomplete; start it again")
        at = self.first = first
        while at < self._end:
            path, piece_start = pieces.get(at), at
            if path is None:
                raise TusError(500, "this upload's stored tail is incomplete; start it again")
            try:
                with path.open("rb") as handle:
                    chunks = sealing.open_sealed(self._key, _piece_aad(self._upload_id, at),
                                                 handle)
                    chunk = next(chunks, None)
                    while chunk is not None:
                        # One chunk ahead: the piece is known to be read through when its last
                        # chunk is handed out, even if the reader then stops (a part that ends
                        # where the piece ends), so that it is deleted once recorded.
                        following = next(chunks, None)
                        wanted = chunk[max(self._start - at, 0):max(self._end - at, 0)]
                        at += len(chunk)
                        if following is None and at > piece_start:
                            self.used.append((piece_start, at - piece_start))
                        if wanted:
                            yield wanted
                        chunk = following
            except UnsealFailed as exc:
                raise TusError(500, "this upload's stored tail is damaged; start it again") \
                    from exc
            if at == piece_start:
                raise TusError(500, "this upload's stored tail is damaged; start it again")

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes of the tail; b'' at `end`."""
        if not self._pending:
            self._pending = next(self._chunks, b"")
        data = self._pending if n < 0 else self._pending[:n]
        self._pending = self._pending[len(data):]
        self.sha256.update(data)
        return data


def append_part(sessions: sessionmaker[Session], writer: ItemWriter, key: SigningKey,
                upload: Upload, secret: str, body: Readable, declared: int | None,
                checksum: tuple[str, bytes] | None) -> PatchResult:
    """Seal one PATCH body onto the upload's tail, cut whole parts off it, then advance the
    offset (committed).

    The caller holds `locked()`. The body goes into a new sealed tail piece (AES-256-GCM under
    a key from the owner secret, never plaintext on disk), durably. Whenever the tail then
    holds a whole part (`part_size()` bytes), that part is unsealed into gpg as the upload's
    next canonical part, durably; when the last byte has arrived, the rest of the tail and the
    Padmé padding become the last part(s), the metadata record is written and the upload is
    published as an object. All this happens with no database transaction open (a slow client
    would otherwise hold SQLite's write lock for the whole body); a writer transaction then
    records it. With a checksum, a body that does not match, or that was cut short, is
    discarded (460, or a resumable offset). If anything fails (a full disk: NoSpace, or
    SQLite's "database or disk is full"), what this request wrote goes, the offset stays where
    it was and the client resumes from there once there is room.
    """
    store = writer.store
    folder = Staging(upload_dir(store, upload.id), store)
    record = unseal(secret, upload.id, upload.sealed)
    whole = _sha256_state(record)
    tail_key = _tail_key(secret, upload.id)
    reader = BodyReader(body, upload.length - upload.offset, declared)
    hashing = HashingReader(reader, checksum[0] if checksum else None)
    piece = folder.path / tail_name(upload.offset)
    old_parts = upload.part_count
    crowded = len(tail_pieces(folder.path)) >= SMALL_PIECES_ALLOWED
    try:
        # "wb": after a settle, new_file hands over a pooled (empty) file under the temp name.
        with folder.new_file(piece.name) as temp, temp.open("wb") as out:
            sealer = sealing.SealedWriter(tail_key, _piece_aad(upload.id, upload.offset), out)
            while data := hashing.read(BODY_CHUNK):
                if whole is not None:
                    whole.update(data)
                sealer.write(data)
            sealer.close()
            out.flush()
        if reader.overflow:
            piece.unlink(missing_ok=True)
            raise TusError(400, "this body goes past Upload-Length; the part was discarded")
        if crowded and hashing.size < MIN_PATCH_BYTES and \
                upload.offset + hashing.size < upload.length:
            # One more small piece: dropped (a body cut short is resent from the offset).
            piece.unlink(missing_ok=True)
            if reader.cut_short or hashing.size == 0:
                return PatchResult(upload.offset, False)
            raise TusError(400, SMALL_BODY)
        digest = hashing.checksum_digest()
        # Nothing kept of an empty body (an empty file is finished at creation); a
        # checksummed body must arrive whole and match.
        empty = hashing.size == 0 and upload.length > 0
        if empty or (checksum is not None and (reader.cut_short or digest != checksum[1])):
            piece.unlink(missing_ok=True)
            if checksum is not None and hashing.size and not reader.cut_short:
                raise TusError(460, "checksum mismatch: the part was discarded")
            return PatchResult(upload.offset, False)
        offset = upload.offset + hashing.size
        parts, tail, sha256 = _cut_parts(writer, folder, upload, record, tail_key, offset)
        if whole is not None:
            record = {**record, "sha256_state": whole.dump()}
            sha256 = whole.hexdigest() if offset == upload.length else None
        # The last byte: encrypt the metadata record and hash the ciphertext (seconds for a
        # large file) before taking the write lock, which then covers only the bookkeeping.
        staged = None if offset < upload.length else \
            _finish(writer, folder, record, parts, upload.length, sha256)
        with sessions() as db:
            current = db.get(Upload, upload.id)
            if current is None or current.offset != upload.offset:  # pragma: no cover - locked
                raise TusError(409, "the upload changed while this part arrived")
            current.sealed = seal(secret, current.id, {**record, "parts": parts})
            current.offset = offset
            current.part_count = len(parts)
            if staged is not None:
                _publish(db, writer, key, current, folder, staged)
                return PatchResult(offset, True, staged.sha256)
            db.commit()
    except BaseException:
        # Not recorded: the row still describes the upload before this request, so drop what
        # it wrote (its tail piece, the parts cut, the metadata record); the pieces the row
        # counts on are untouched, and the client sends the body again.
        piece.unlink(missing_ok=True)
        for index in range(old_parts, MAX_PARTS):
            path = folder.path / part_name(index)
            if not path.exists():
                break
            path.unlink()
        (folder.path / METADATA_NAME).unlink(missing_ok=True)
        raise
    if tail is not None:
        _drop_consumed(folder.path, tail, len(parts) * part_size())
    return PatchResult(offset, False)


def _cut_parts(writer: ItemWriter, folder: Staging, upload: Upload, record: UploadRecord,
               tail_key: bytes, offset: int
               ) -> tuple[list[list[str | int]], TailReader | None, str | None]:
    """Encrypt the whole parts the tail now holds (and, once all `upload.length` bytes are in,
    the rest with its padding) as the upload's next parts. Returns the parts list, the tail
    reader used (None if no part was cut) and, when the tail held the whole file, its SHA-256."""
    size = part_size()
    parts = list(record["parts"])
    start = len(parts) * size
    finished = offset == upload.length
    if not finished and offset - start < size:
        return parts, None, None
    tail = TailReader(folder.path, tail_key, upload.id, start, offset)
    if finished:
        stream: Readable = PaddedTo(tail, padme(upload.length) - start)
        left = padme(upload.length) - start
    else:
        stream, left = tail, (offset - start) // size * size
    while left > 0 or not parts:
        part, _ = writer.write_part(folder, len(parts), Limited(stream, min(size, left)))
        parts.append([part.name, part.size, part.sha256])
        left -= part.size
    return parts, tail, (tail.sha256.hexdigest() if finished and start == 0 else None)


def _sha256_state(record: UploadRecord) -> ResumableSha256 | None:
    """The whole file's SHA-256 so far, as the record keeps it; TusError 500 if damaged."""
    state = record.get("sha256_state")
    if state is None:
        return None
    try:
        return ResumableSha256.load(state)
    except ValueError as exc:  # pragma: no cover - the record is sealed: only seal() wrote it
        raise TusError(500, "this upload's record is damaged; start it again") from exc


def _drop_consumed(folder: Path, tail: TailReader, consumed: int) -> None:
    """Delete the tail pieces whose bytes are all in recorded parts now (and any older ones
    an interrupted request left)."""
    first = consumed if tail.first is None else tail.first
    for at, path in tail_pieces(folder).items():
        if at < first or any(at == start and start + length <= consumed
                             for start, length in tail.used):
            path.unlink(missing_ok=True)


def _finish(writer: ItemWriter, folder: Staging, record: UploadRecord,
            parts: list[list[str | int]], size: int, sha256: str | None) -> StagedItem:
    """Write the finished upload's metadata record and take its ciphertext digest."""
    records = tuple(PartRecord(str(n), int(str(s)), str(h)) for n, s, h in parts)
    name = record.get("filename")
    return writer.finish(
        folder, "file", records,
        None if name is None else base64.b64decode(str(name)),
        None if record.get("filetype") is None else str(record["filetype"]),
        # Known when the whole file was in the tail at the end; the console computes it else.
        sha256, size)


def _publish(db: Session, writer: ItemWriter, key: SigningKey, upload: Upload,
             folder: Staging, staged: StagedItem) -> None:
    source_id = upload.source_id
    db.delete(upload)
    # Publish hard links to the upload's files, not its folder: if recording the object fails
    # (a full database), record_items deletes what it published, and the upload's own
    # folder must survive that, whole and resumable.
    staged.staging = writer.store.stage_links(folder)
    record_items(db, writer.store, key, source_id, [staged])
    # The folder, with its lock file, goes only now: removing it before would let another
    # request lock a fresh one while this upload is being published.
    shutil.rmtree(folder.path, ignore_errors=True)
    sync_path(folder.path.parent)


def terminate(db: Session, store: Store, upload: Upload) -> None:
    """Delete an upload and its parts (committed)."""
    db.delete(upload)
    db.commit()
    shutil.rmtree(upload_dir(store, upload.id), ignore_errors=True)
    sync_path(store.uploads)


def mark_settled(db: Session) -> int:
    """Note on every upload that a settle has run since it was made (not committed); how many
    were new. This says no more than "since the last settle" already does."""
    result = db.execute(update(Upload).where(Upload.settled == false()).values(settled=True)
                        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def purge_expired_uploads(db: Session, store: Store) -> int:
    """Remove uploads past their expiry, uploads still empty after a settle (abandoned: no
    byte arrived since the settle before), and stray upload folders without a row; return
    how many uploads went.

    Rows hold dates, not instants, so an empty upload's age is told by the settles it has
    seen: `desk purge` runs hourly (desk-purge.timer) and a running desk settles every
    DESK_SETTLE_INTERVAL (10 minutes), so an abandoned empty upload goes within about 70
    minutes, not 7 days. Dropping it loses nothing, as no byte of it was kept: a client that
    comes back gets 404 and makes a new one. An upload with bytes keeps its 7 days to resume.
    """
    today = datetime.now(UTC).date()
    expired = list(db.scalars(select(Upload).where(Upload.expires_on < today)))
    abandoned = list(db.scalars(select(Upload).where(
        Upload.offset == 0, Upload.length > 0, Upload.settled, Upload.expires_on >= today)))
    for upload in expired:
        db.delete(upload)
    db.commit()
    for upload in expired:
        shutil.rmtree(upload_dir(store, upload.id), ignore_errors=True)
    for upload in abandoned:
        # Under its lock: a PATCH that has just begun keeps its upload.
        with contextlib.suppress(TusError), locked(store, upload.id):
            db.delete(upload)
            db.commit()
            shutil.rmtree(upload_dir(store, upload.id), ignore_errors=True)
            expired.append(upload)
    known = set(db.scalars(select(Upload.id)))
    removed = 0
    root = store.uploads
    # A folder younger than an hour may belong to an upload whose row is being committed.
    settled = datetime.now(UTC).timestamp() - 3600
    if root.is_dir():
        for folder in root.iterdir():
            if folder.name not in known and folder.stat().st_mtime < settled:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        sync_path(root)
    return len(expired) + removed
