"""Submit-form bodies built by hand, part by part, and the tokens and forms pages carry."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

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


@dataclass
class PageForm:
    """One form on a page as a browser would send it: where, how, its hidden fields, and the
    labels of the buttons that submit it (those inside it and those naming it by `form=`)."""

    action: str
    method: str
    id: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[str] = field(default_factory=list)


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[PageForm] = []
        self._open: PageForm | None = None
        self._button: tuple[PageForm | None, str | None] | None = None
        self._label = ""
        self._outside: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._open = PageForm(values.get("action", ""), values.get("method", "get").lower(),
                                  values.get("id"))
            self.forms.append(self._open)
        elif tag == "input" and values.get("type") == "hidden" and self._open is not None:
            self._open.fields[values.get("name", "")] = values.get("value", "")
        elif tag == "button" and values.get("type", "submit") == "submit":
            self._button = (self._open, values.get("form"))
            self._label = ""

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._label += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None
        elif tag == "button" and self._button is not None:
            inside, named = self._button
            if named is not None:
                self._outside.append((named, self._label.strip()))
            elif inside is not None:
                inside.buttons.append(self._label.strip())
            self._button = None

    def close(self) -> None:
        super().close()
        by_id = {form.id: form for form in self.forms if form.id}
        for named, label in self._outside:
            if named in by_id:
                by_id[named].buttons.append(label)


def page_forms(html: str) -> list[PageForm]:
    """Every form on a page."""
    reader = _FormReader()
    reader.feed(html)
    reader.close()
    return reader.forms


def page_form(html: str, action: str) -> PageForm:
    """The one form on a page that posts to `action`."""
    found = [form for form in page_forms(html) if form.action == action]
    assert len(found) == 1, (action, [form.action for form in page_forms(html)])
    return found[0]
