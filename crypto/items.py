"""The stored item (crypto/FORMAT.md): its kinds, ids and the encrypted metadata record."""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from crypto.errors import FormatError, b64decode_canonical, is_version, load_json
from crypto.names import MAX_PARTS, OBJECT_ID_RE, PART_NAME_RE, part_name

FORMAT_VERSION = 2
# Versions a reader accepts: 1 (unpadded, `size` is the sum of the parts) from stores and
# bundles written before padding, and 2 (padded to Padmé(size)).
READ_VERSIONS = (1, 2)
RECORD_FORMAT = "desk-object"
# \Z, not $: "$" also matches before a final newline.
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
# FORMAT.md, "Conventions": an RFC 3339 date-time with a Z or numeric offset.
INSTANT_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
                        r"(Z|[+-][0-9]{2}:[0-9]{2})\Z")

Kind = Literal["message", "file"]
KINDS: tuple[Kind, ...] = ("message", "file")
# The longest message a source can send, in bytes of UTF-8: the desk refuses a longer one,
# and the console decrypts no longer one into memory.
MAX_MESSAGE_BYTES = 1 << 20


# A version 2 record is padded with spaces to record_padded_size(parts), so that its length
# says nothing of the file name or type: what is not a part must fit in HEAD_BUDGET bytes,
# each part in PART_BUDGET (an entry takes at most 124: a 16-digit size and a 64-digit hash).
RECORD_BLOCK = 4096
HEAD_BUDGET = 6144
PART_BUDGET = 160


class RecordTooLarge(FormatError):
    """A file name or type too long for the fixed size of a metadata record."""


def record_padded_size(parts: int) -> int:
    """The length of every version 2 metadata record of `parts` parts: a multiple of 4 KiB."""
    need = HEAD_BUDGET + PART_BUDGET * parts
    return -(-need // RECORD_BLOCK) * RECORD_BLOCK


def check_record_fits(filename: bytes | None, content_type: str | None) -> None:
    """RecordTooLarge if a record with this name and type would not fit its fixed size, for
    any number of parts (checked once, before any byte of the item is encrypted)."""
    worst = ItemRecord(
        object_id="0" * 32, kind="file", received_at=datetime(2000, 1, 1, tzinfo=UTC),
        parts=(), filename=filename, content_type=content_type, sha256="0" * 64,
        content_size=2**53 - 1)
    if len(worst.head_json()) > HEAD_BUDGET:
        raise RecordTooLarge("the file name and type are too long for the metadata record")


def padme(length: int) -> int:
    """Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and
    Communication with PURBs", PETS 2019): the padded length of a plaintext of `length` bytes.

    For L >= 2, with E = floor(log2 L), S = floor(log2 E) + 1 and z = E - S, L is rounded up to
    a multiple of 2^z: at most 12 % more, leaking O(log log L) bits. 0 and 1 stay as they are
    (E = 0 has no logarithm; there is nothing to hide in them).
    """
    if length < 0:
        raise ValueError("a length is not negative")
    if length < 2:
        return length
    exponent = length.bit_length() - 1          # E
    zeros = exponent - exponent.bit_length()    # z = E - (floor(log2 E) + 1)
    mask = (1 << zeros) - 1
    return (length + mask) & ~mask


def new_object_id() -> str:
    """A fresh random object id: 128 bits as 32 lower-case hex digits."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class PartRecord:
    """One encrypted part: its file name, plaintext size and plaintext SHA-256."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ItemRecord:
    """The metadata record of a stored object, kept only inside its own OpenPGP message."""

    object_id: str
    kind: Kind
    received_at: datetime
    parts: tuple[PartRecord, ...]
    filename: bytes | None = None
    content_type: str | None = None
    sha256: str | None = None
    # The true size (version 2); None for a version 1 record, whose size is the parts' sum.
    content_size: int | None = None
    version: int = FORMAT_VERSION

    @property
    def stored_size(self) -> int:
        """The plaintext bytes of all parts, padding included."""
        return sum(part.size for part in self.parts)

    @property
    def size(self) -> int:
        """The true size of the item: its first `size` plaintext bytes are the item, the rest
        (version 2 only) is zero padding."""
        return self.stored_size if self.content_size is None else self.content_size

    @property
    def display_name(self) -> str | None:
        """The original filename as text, undecodable bytes replaced."""
        return None if self.filename is None else self.filename.decode("utf-8", "replace")

    def head_json(self) -> bytes:
        """The record without its parts, compact: what HEAD_BUDGET bounds."""
        return json.dumps({**self._members(), "parts": []}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")

    def to_json(self) -> bytes:
        """Serialise as the UTF-8 JSON document FORMAT.md specifies (version 2: padded with
        spaces to record_padded_size; RecordTooLarge if it does not fit)."""
        record = self._members()
        if self.version == 1:
            return json.dumps(record, ensure_ascii=False, indent=1).encode("utf-8")
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        padded = record_padded_size(len(self.parts))
        if len(data) > padded:
            raise RecordTooLarge(f"the metadata record needs {len(data)} bytes, more than the "
                                 f"{padded} every record of {len(self.parts)} parts takes")
        # Trailing spaces are JSON whitespace: every record of n parts has the same length.
        return data + b" " * (padded - len(data))

    def _members(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "version": self.version,
            "id": self.object_id,
            "kind": self.kind,
            "received_at": self.received_at.astimezone(UTC).isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "filename": self.display_name,
            "parts": [{"name": p.name, "size": p.size, "sha256": p.sha256} for p in self.parts],
        }
        name = self.display_name
        if self.filename is not None and name is not None and name.encode() != self.filename:
            # Keep names that are not UTF-8 exactly, as the source's system wrote them.
            record["filename_bytes"] = base64.b64encode(self.filename).decode("ascii")
        return record

    @classmethod
    def from_json(cls, data: bytes) -> ItemRecord:
        """Parse and check a metadata record; raise FormatError on anything FORMAT.md rejects."""
        raw = load_json(data, "metadata record")
        if not isinstance(raw, dict) or raw.get("format") != RECORD_FORMAT:
            raise FormatError("not a desk object metadata record")
        version = next((v for v in READ_VERSIONS if is_version(raw.get("version"), v)), None)
        if version is None:
            raise FormatError(f"unsupported metadata record version: {raw.get('version')!r}")
        try:
            record = cls(
                object_id=_match(OBJECT_ID_RE, raw["id"], "id"),
                kind=_kind(raw["kind"]),
                received_at=parse_instant(raw["received_at"]),
                parts=_parts(raw["parts"]),
                filename=_filename(raw),
                content_type=_optional_str(raw.get("content_type"), "content_type"),
                sha256=None if raw.get("sha256") is None
                else _match(SHA256_RE, raw["sha256"], "sha256"),
                content_size=raw.get("size") if version == 2 and _is_size(raw.get("size"))
                else None,
                version=version,
            )
        except (KeyError, TypeError) as exc:
            raise FormatError(f"metadata record is missing or mistypes {exc}") from exc
        expected = [part_name(i) for i in range(len(record.parts))]
        if [p.name for p in record.parts] != expected:
            raise FormatError(f"part names must run {part_name(0)}, {part_name(1)}, ... in order")
        if version == 1:
            if not _is_size(raw.get("size")) or raw["size"] != record.stored_size:
                raise FormatError("size does not equal the sum of the part sizes")
        elif record.content_size is None:
            raise FormatError(f"bad size: {raw.get('size')!r}")
        elif record.stored_size != padme(record.content_size):
            raise FormatError("the part sizes do not add up to the padded size, Padmé(size)")
        return record


def _match(pattern: re.Pattern[str], value: object, field: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise FormatError(f"bad {field}: {value!r}")
    return value


def _kind(value: object) -> Kind:
    if value == "message" or value == "file":
        return value
    raise FormatError(f"bad kind: {value!r}")


def parse_instant(value: object, field: str = "received_at") -> datetime:
    """An instant as FORMAT.md's conventions write it (with a time zone); FormatError else."""
    if not isinstance(value, str):
        raise FormatError(f"{field} must be a string")
    if not INSTANT_RE.match(value):
        raise FormatError(f"bad {field}: {value!r} (an RFC 3339 instant with a time zone)")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FormatError(f"bad {field}: {value!r}") from exc


def _is_size(value: object) -> bool:
    return type(value) is int and value >= 0


def _parts(raw: object) -> tuple[PartRecord, ...]:
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_PARTS:
        raise FormatError(f"parts must be a list of 1 to {MAX_PARTS} parts")
    return tuple(_part(p) for p in raw)


def _optional_str(value: object, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise FormatError(f"{field} must be a string or null")
    return value


def _part(raw: object) -> PartRecord:
    if not isinstance(raw, dict):
        raise FormatError("each part must be an object")
    size = raw["size"]
    if not _is_size(size):
        raise FormatError(f"bad part size: {size!r}")
    return PartRecord(
        name=_match(PART_NAME_RE, raw["name"], "part name"),
        size=size,
        sha256=_match(SHA256_RE, raw["sha256"], "part sha256"),
    )


def _filename(raw: dict[str, Any]) -> bytes | None:
    if "filename_bytes" in raw:
        try:
            return b64decode_canonical(raw["filename_bytes"])
        except ValueError as exc:
            raise FormatError("bad filename_bytes") from exc
    name = _optional_str(raw.get("filename"), "filename")
    return None if name is None else name.encode("utf-8")
