"""Submit-form bodies built by hand, part by part, and the tokens pages carry."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
CODENAME_RE = re.compile(r'id="codename"[^>]*>([^<]+)<')


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = CSRF_RE.search(html)
    assert match, "page has no csrf_token field"
    return match.group(1)


@dataclass
class FormBody:
    """A multipart/form-data body whose parts are exactly what the test says, in order."""

    boundary: str = field(default_factory=lambda: "deskboundary" + secrets.token_hex(8))
    parts: list[bytes] = field(default_factory=list)

    def field(self, name: str, value: str | bytes) -> FormBody:
        """Add a plain field."""
        data = value.encode() if isinstance(value, str) else value
        self.parts.append(
            f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + data)
        return self

    def file(self, filename: bytes | str, data: bytes, content_type: str = "video/mp4",
             name: str = "files") -> FormBody:
        """Add a file part; `filename` bytes are sent as they are."""
        raw = filename.encode() if isinstance(filename, str) else filename
        self.parts.append(
            f'Content-Disposition: form-data; name="{name}"; filename="'.encode() + raw
            + f'"\r\nContent-Type: {content_type}\r\n\r\n'.encode() + data)
        return self

    @property
    def content_type(self) -> str:
        """The request's Content-Type header."""
        return f"multipart/form-data; boundary={self.boundary}"

    def chunks(self) -> Iterator[bytes]:
        """The encoded body, part by part."""
        for part in self.parts:
            yield f"--{self.boundary}\r\n".encode() + part + b"\r\n"
        yield f"--{self.boundary}--\r\n".encode()

    def encode(self) -> bytes:
        """The whole encoded body."""
        return b"".join(self.chunks())


@dataclass(frozen=True)
class StreamedForm:
    """A submit form whose single file part is streamed: head + file data + tail."""

    content_type: str
    head: bytes
    tail: bytes

    @classmethod
    def build(cls, token: str, filename: bytes | str, message: str | None = "",
              file_type: str = "video/mp4") -> StreamedForm:
        """The form around a file whose data the caller sends between head and tail; with
        `message` None the form has no message field."""
        body = FormBody().field("csrf_token", token)
        if message is not None:
            body.field("message", message)
        body.file(filename, b"", content_type=file_type)
        chunks = list(body.chunks())
        # FormBody ends every part with CRLF: cut it after the (empty) file data.
        before = b"".join(chunks[:-2]) + chunks[-2][:-2]
        return cls(body.content_type, before, b"\r\n" + chunks[-1])

    def length(self, data_size: int) -> int:
        """The body's length with `data_size` bytes of file data."""
        return len(self.head) + data_size + len(self.tail)
