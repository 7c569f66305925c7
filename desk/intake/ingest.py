"""Ingest: request bytes go straight into gpg, hashed on the way; plaintext never touches disk.

Werkzeug's own form parser would spool any file part over 500 KiB to a plaintext temp file, so
the body is decoded here, part by part, with Werkzeug's push decoder driven as a pull stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from werkzeug.datastructures import Headers
from werkzeug.sansio.multipart import (
    HEADER_CONTINUATION_RE,
    NEED_DATA,
    Data,
    Epilogue,
    Event,
    Field,
    File,
    Preamble,
    State,
)
from werkzeug.sansio.multipart import MultipartDecoder as _WerkzeugDecoder

from crypto.custody import ciphertext_digest, object_files
from crypto.errors import EncryptionFailed
from crypto.gpg import GnuPG, Readable
from crypto.items import (
    MAX_MESSAGE_BYTES,
    ItemRecord,
    Kind,
    PartRecord,
    RecordTooLarge,
    check_record_fits,
    new_object_id,
)
from crypto.names import METADATA_NAME, part_name
from desk.errors import BadSending, NoSpace, TooManyFiles
from desk.intake.shape import Limited, PaddedStream, part_size
from desk.storage.store import StagedItem, Staging, Store

CHUNK_SIZE = 1 << 20
MAX_FIELD_BYTES = 4096
MAX_FORM_PARTS = 1000
# Files one form post may carry. Each costs at least two gpg runs, three inodes, a row and a
# custody entry: 999 one-byte files in a 91 KB post took 13.7 s of server time and made 999
# items for every later export to carry. Sources with JavaScript send files one by one
# (tus) and are not limited by this; without it, a hundred files is a large folder.
MAX_FORM_FILES = 100
# What the decoder may hold at once: a preamble, one part's headers, or a text field such as
# the message. File data streams through in CHUNK_SIZE pieces and never accumulates; without
# this bound a body of junk before the first boundary would be held whole, up to the upload
# limit. Werkzeug answers anything larger with 413.
MAX_FORM_MEMORY = 4 * CHUNK_SIZE
MESSAGE_CONTENT_TYPE = "text/plain; charset=utf-8"


class ItemWriter:
    """Encrypts messages and files to the current recipients, one staging directory each."""

    def __init__(self, store: Store, gpg: GnuPG, recipients: Sequence[str]) -> None:
        self.store = store
        self.gpg = gpg
        self.recipients = list(recipients)

    def write(self, kind: Kind, source: Readable, filename: bytes | None,
              content_type: str | None) -> StagedItem:
        """Encrypt everything `source` yields, padded, in parts of the canonical size, with its
        metadata record; BadSending if the name and type would not fit in the record."""
        try:
            check_record_fits(filename, content_type)
        except RecordTooLarge as exc:
            raise BadSending(str(exc)) from exc
        staging = self.store.stage()
        try:
            stream = PaddedStream(source)
            parts: list[PartRecord] = []
            while not parts or stream.more():
                part, _ = self.write_part(staging, len(parts), Limited(stream, part_size()))
                parts.append(part)
            return self.finish(staging, kind, tuple(parts), filename, content_type,
                               stream.content_sha256(), stream.size)
        except BaseException:
            self.store.discard(staging)
            raise

    def write_part(self, staging: Staging, index: int, source: Readable,
                   checksum: str | None = None) -> tuple[PartRecord, bytes | None]:
        """Encrypt `source` into part `index`, durable under its final name.

        Also returns the plaintext's digest of the kind `checksum` names ("sha1", "sha256"),
        for a client's Upload-Checksum; None without one.
        """
        reader = HashingReader(source, checksum)
        self._encrypt(staging, part_name(index), reader)
        return (PartRecord(part_name(index), reader.size, reader.hexdigest()),
                reader.checksum_digest())

    def finish(self, staging: Staging, kind: Kind, parts: tuple[PartRecord, ...],
               filename: bytes | None, content_type: str | None,
               sha256: str | None, size: int) -> StagedItem:
        """Write the metadata record beside the parts (which hold `size` bytes of the item,
        then padding); the object is then ready to publish."""
        record = ItemRecord(
            object_id=new_object_id(), kind=kind, received_at=datetime.now(UTC), parts=parts,
            filename=filename, content_type=content_type, sha256=sha256, content_size=size)
        self._encrypt(staging, METADATA_NAME, HashingReader(_BytesReader(record.to_json())))
        # Read the ciphertext back (from the page cache) for the custody digest.
        ciphertext = object_files(staging.path)
        return StagedItem(
            object_id=record.object_id, kind=kind, staging=staging, size=record.size,
            sha256=sha256, filename=record.display_name, part_count=len(parts),
            ciphertext_size=sum(size for size, _ in ciphertext.values()),
            ciphertext_sha256=ciphertext_digest(ciphertext),
        )

    def _encrypt(self, staging: Staging, name: str, reader: HashingReader) -> None:
        """Encrypt what `reader` yields into the file `name`, durably; NoSpace if the disk
        filled up on the way."""
        watched = _SpaceWatch(reader, self.store)
        try:
            with staging.new_file(name) as temp:
                self.gpg.encrypt_stream(watched, self.recipients, temp)
        except (EncryptionFailed, BrokenPipeError) as exc:
            # gpg reports a full disk only as a failed run, or by closing its input early (a
            # broken pipe), and its partial output is gone by now. If what it was given did
            # not fit in what was free (now, or at any point while it wrote), with the usual
            # reserve, that was the cause: another upload may have filled the disk and
            # cleaned up after itself meanwhile.
            if min(watched.least_free, self.store.free_bytes()) < \
                    reader.size + self.store.reserve_bytes:
                raise NoSpace() from exc
            raise


class _SpaceWatch:
    """Passes reads through, noting the least free space on the store's disk seen meanwhile
    (once per mebibyte: a statvfs call, cheap next to encrypting it)."""

    EVERY = 1 << 20

    def __init__(self, source: Readable, store: Store) -> None:
        self._source = source
        self._store = store
        self._unchecked = 0
        self.least_free = store.free_bytes()

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes from the wrapped stream."""
        data = self._source.read(n)
        self._unchecked += len(data)
        if self._unchecked >= self.EVERY:
            self._unchecked = 0
            self.least_free = min(self.least_free, self._store.free_bytes())
        return data


class HashingReader:
    """Wraps a readable stream, counting and hashing (SHA-256, and optionally a second
    digest a client asked to be checked) what passes through."""

    def __init__(self, source: Readable, checksum: str | None = None) -> None:
        self._source = source
        self._sha256 = hashlib.sha256()
        self._checksum = None if checksum is None else hashlib.new(checksum)
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        """Read up to `n` bytes from the wrapped stream."""
        data = self._source.read(n)
        self._sha256.update(data)
        if self._checksum is not None:
            self._checksum.update(data)
        self.size += len(data)
        return data

    def checksum_digest(self) -> bytes | None:
        """The requested second digest, raw."""
        return None if self._checksum is None else self._checksum.digest()

    def hexdigest(self) -> str:
        """SHA-256 of everything read so far."""
        return self._sha256.hexdigest()


class _BytesReader:
    """A one-shot reader over bytes already in memory (a message, a metadata record)."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def read(self, _n: int = -1) -> bytes:
        data, self._data = self._data or b"", None
        return data


class _Decoder(_WerkzeugDecoder):
    """Werkzeug's decoder, but part headers that are not UTF-8 survive as surrogate escapes.

    Werkzeug decodes part headers strictly; a filename made on a system with another encoding
    would end the upload. The original bytes are recovered with encode('utf-8',
    'surrogateescape') and kept, inside ciphertext only.
    """

    def _parse_headers(self, data: bytes | bytearray) -> Headers:
        headers = []
        for line in HEADER_CONTINUATION_RE.sub(b" ", data).splitlines():
            line = line.strip(b" \t")
            if line:
                name, _, value = line.decode("utf-8", "surrogateescape").partition(":")
                headers.append((name.strip(" \t"), value.strip(" \t")))
        return Headers(headers)


class MultipartForm:
    """Pulls multipart/form-data parts from a request body without buffering file data."""

    def __init__(self, body: Readable, boundary: str) -> None:
        self._body = body
        try:
            self._decoder = _Decoder(boundary.encode("latin-1"), MAX_FORM_MEMORY,
                                     max_parts=MAX_FORM_PARTS)
        except UnicodeEncodeError as exc:
            raise BadSending("multipart boundary is not ASCII") from exc
        self._in_part = False

    def _event(self) -> Event:
        while True:
            try:
                event = self._decoder.next_event()
            except ValueError as exc:  # the body ended before the closing boundary
                raise BadSending(f"incomplete multipart body: {exc}") from exc
            if event is not NEED_DATA:
                return event
            chunk = self._body.read(CHUNK_SIZE)
            self._decoder.receive_data(chunk or None)

    def next_part(self) -> Field | File | None:
        """The next part's header event, or None after the closing boundary."""
        while self._in_part:  # skip what the caller left unread
            self.read_chunk()
        if self._decoder.state is State.EPILOGUE:
            # The closing boundary has arrived. Reading on to learn that the body ended would
            # read past a body of exactly the size limit, which Werkzeug refuses with a 413.
            return None
        event = self._event()
        if isinstance(event, Preamble):
            event = self._event()
        if isinstance(event, Epilogue):
            return None
        if not isinstance(event, Field | File):
            raise BadSending(f"unexpected multipart event {type(event).__name__}")
        self._in_part = True
        return event

    def read_chunk(self) -> bytes | None:
        """The next bytes of the current part; None once the part has ended."""
        while self._in_part:
            event = self._event()
            if not isinstance(event, Data):
                raise BadSending("multipart part without data")
            self._in_part = event.more_data
            if event.data:
                return event.data
        return None

    def read_value(self, limit: int) -> bytes:
        """The whole current part, which must be at most `limit` bytes."""
        value = bytearray()
        while (chunk := self.read_chunk()) is not None:
            value += chunk
            if len(value) > limit:
                raise BadSending("form field too long")
        return bytes(value)


class PartStream:
    """A file-like view of the current part of a MultipartForm, for gpg to read from."""

    def __init__(self, form: MultipartForm) -> None:
        self._form = form
        self._pending = b""
        self._ended = False

    def peek(self) -> bytes:
        """The next bytes without consuming them (empty at the end of the part)."""
        if not self._pending and not self._ended:
            chunk = self._form.read_chunk()
            if chunk is None:
                self._ended = True
            else:
                self._pending = chunk
        return self._pending

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes of the part; b'' at its end."""
        pending = self.peek()
        if n < 0 or n >= len(pending):
            self._pending = b""
            return pending
        self._pending = pending[n:]
        return pending[:n]


def ingest_form(body: Readable, boundary: str, writer: ItemWriter,
                check_csrf: Callable[[str], None]) -> list[StagedItem]:
    """Encrypt the message and every file of a submit form into staging; return what was staged.

    The CSRF token must arrive before the message and files (it is the form's first field), so
    a forged post is refused before any file byte is encrypted. On any failure everything staged
    so far is discarded and the error re-raised.
    """
    form = MultipartForm(body, boundary)
    staged: list[StagedItem] = []
    token_checked = False
    try:
        while (part := form.next_part()) is not None:
            if part.name == "csrf_token":
                check_csrf(form.read_value(MAX_FIELD_BYTES).decode("utf-8", "replace"))
                token_checked = True
            elif part.name == "message" and isinstance(part, Field):
                message = form.read_value(MAX_MESSAGE_BYTES)
                if message.strip():
                    _require(token_checked)
                    staged.append(writer.write(
                        "message", _BytesReader(message), None, MESSAGE_CONTENT_TYPE))
            elif part.name == "files" and isinstance(part, File):
                stream = PartStream(form)
                if not part.filename and not stream.peek():
                    continue  # a file input left empty: browsers send a nameless empty part
                _require(token_checked)
                if sum(obj.kind == "file" for obj in staged) >= MAX_FORM_FILES:
                    raise TooManyFiles()
                staged.append(writer.write(
                    "file", stream, part.filename.encode("utf-8", "surrogateescape"),
                    part.headers.get("content-type")))
            # Any other field is read past and dropped.
    except BaseException:
        for obj in staged:
            writer.store.discard(obj.staging)
        raise
    return staged


def _require(token_checked: bool) -> None:
    if not token_checked:
        raise BadSending("form data arrived before the CSRF token")
