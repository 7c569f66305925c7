"""Reply files and journalists' copies of replies (FORMAT.md, "Reply files").

`desk-review reply` writes a reply file on the offline machine: the reply box for the source,
a copy of the reply for the journalists (OpenPGP, to their keys) and the writing journalist's
detached OpenPGP signature over both. The desk checks the signature, the box's layout and
recipient, and who the copy is encrypted to; it can read neither.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from crypto.errors import FormatError, b64decode_canonical, is_version, load_json
from crypto.items import parse_instant
from crypto.names import OBJECT_ID_RE
from crypto.reply import MAX_REPLY_BYTES

FILE_FORMAT = "desk-reply-file"
COPY_FORMAT = "desk-reply-copy"
VERSION = 1
# A box and a copy of at most 64 KiB of text each, base64-encoded, with room to spare.
MAX_FILE_BYTES = 512 * 1024
HEX64_RE = re.compile(r"[0-9a-f]{64}")
VIAS = ("console", "web")

Via = Literal["console", "web"]


def signed_payload(box: bytes, copy: bytes) -> bytes:
    """What the journalist's signature covers: the SHA-256 of the box and of the copy."""
    return (f"{FILE_FORMAT} {VERSION}\nbox {hashlib.sha256(box).hexdigest()}\n"
            f"copy {hashlib.sha256(copy).hexdigest()}\n").encode("ascii")


@dataclass(frozen=True)
class ReplyFile:
    """A reply as it travels from the offline machine to the desk."""

    box: bytes
    copy: bytes
    signature: bytes

    def payload(self) -> bytes:
        """The bytes the signature must verify over."""
        return signed_payload(self.box, self.copy)

    def to_bytes(self) -> bytes:
        """The file's UTF-8 JSON form."""
        return json.dumps({
            "format": FILE_FORMAT, "version": VERSION,
            "box": _b64(self.box), "copy": _b64(self.copy), "signature": _b64(self.signature),
        }, indent=1).encode("ascii") + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> ReplyFile:
        """Parse a reply file; FormatError saying what is wrong with it."""
        if len(data) > MAX_FILE_BYTES:
            raise FormatError("too large to be a reply file")
        try:
            raw = load_json(data, "reply file")
        except FormatError as exc:
            raise FormatError("not a reply file (it is not the JSON desk-review writes)") \
                from exc
        if not isinstance(raw, dict) or raw.get("format") != FILE_FORMAT:
            raise FormatError("not a reply file")
        if not is_version(raw.get("version"), VERSION):
            raise FormatError(f"unsupported reply file version {raw.get('version')!r}")
        return cls(_unb64(raw, "box"), _unb64(raw, "copy"), _unb64(raw, "signature"))


@dataclass(frozen=True)
class ReplyCopy:
    """The journalists' copy of a reply, as it reads once decrypted."""

    reply_id: str
    source: str
    source_key_id: str
    written_at: datetime
    author: str
    via: Via
    text: str

    def to_json(self) -> bytes:
        """The copy's UTF-8 JSON form, before encryption."""
        return json.dumps({
            "format": COPY_FORMAT, "version": VERSION, "reply_id": self.reply_id,
            "source": self.source, "source_key_id": self.source_key_id,
            "written_at": self.written_at.isoformat(), "author": self.author,
            "via": self.via, "text": self.text,
        }, ensure_ascii=False, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> ReplyCopy:
        """Parse a decrypted copy; FormatError if it is not one."""
        raw = load_json(data, "reply copy")
        if not isinstance(raw, dict) or raw.get("format") != COPY_FORMAT or \
                not is_version(raw.get("version"), VERSION):
            raise FormatError("not a reply copy of this version")
        try:
            written_at = parse_instant(raw["written_at"], "written_at")
            via = raw["via"]
            fields = (raw["reply_id"], raw["source"], raw["source_key_id"], raw["author"],
                      raw["text"])
        except KeyError as exc:
            raise FormatError(f"bad reply copy: missing {exc}") from exc
        reply_id, source, key_id, author, text = fields
        if not all(isinstance(value, str) for value in fields) or via not in VIAS:
            raise FormatError("bad reply copy: wrong field types")
        if not OBJECT_ID_RE.fullmatch(reply_id) or not HEX64_RE.fullmatch(key_id):
            raise FormatError("bad reply copy: bad reply id or key id")
        if len(text.encode("utf-8")) > MAX_REPLY_BYTES:
            raise FormatError("bad reply copy: text too long")
        return cls(reply_id, source, key_id, written_at, author, via, text)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(raw: dict[str, Any], field: str) -> bytes:
    value = raw.get(field)
    if not isinstance(value, str):
        raise FormatError(f"the reply file has no {field}")
    try:
        return b64decode_canonical(value)
    except ValueError as exc:
        raise FormatError(f"the reply file's {field} is damaged (bad base64)") from exc
