"""Malformed requests and what a refusal must look like: requests for the Flask test client,
multipart bodies built byte by byte, a snapshot of everything a request could leave behind,
the desk the bad-input tests share, and raw-socket exchanges with a real server.

Every malformed request sent through here is counted once (SENT), so the tests can show how
many distinct ones they sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from flask import Flask
from flask.testing import FlaskClient
from itsdangerous.timed import TimestampSigner
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from desk.app import create_app
from desk.records.models import CustodyRecord, Item, Journalist, Reply, Source, Upload
from desk.services import Services
from tests.harness import http
from tests.harness.data import MiB
from tests.harness.desks import add_account, desk_config, find_markers, let_log_in, new_desk
from tests.harness.forms import csrf_token
from tests.harness.gpg import Keypair
from tests.harness.http import RawAnswer, SourceSession, open_source_session
from tests.harness.tus import OCTETS, TUS
from tests.harness.web import SourceBrowser, journalist_log_in

BOUNDARY = b"deskbad0boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY.decode()}"
STYLESHEET = "/static/desk.css"


# Counting what was sent


SENT: dict[str, str] = {}  # digest of a malformed request -> its category


def record(category: str, who: str, *parts: object) -> None:
    """Count one malformed request, once however often it is sent."""
    digest = hashlib.sha256(repr((who, *parts)).encode("utf-8", "surrogateescape")).hexdigest()
    SENT.setdefault(digest, category)


@dataclass(frozen=True)
class Bad:
    """One malformed request for the Flask test client."""

    method: str = "POST"
    path: str = "/submit"
    body: bytes = b""
    content_type: str | None = MULTIPART
    headers: tuple[tuple[str, str], ...] = ()
    environ: tuple[tuple[str, str], ...] = ()


def send(client: FlaskClient, who: str, category: str, bad: Bad) -> TestResponse:
    """Send `bad` as `who` and count it."""
    record(category, who, bad)
    return client.open(bad.path, method=bad.method, data=bad.body,
                       content_type=bad.content_type, headers=list(bad.headers),
                       environ_overrides=dict(bad.environ))


# What a request may leave behind


@dataclass(frozen=True)
class Stored:
    """Everything a refused request must leave as it was."""

    sources: frozenset[str]
    submissions: frozenset[str]
    uploads: frozenset[tuple[str, int, int]]
    replies: frozenset[str]
    journalists: frozenset[tuple[str, str]]
    custody: tuple[int, str | None]
    files: frozenset[tuple[str, int]]  # (path under store/, size)
    keyring: str


def stored(desk: Services) -> Stored:
    """A snapshot of rows, ciphertext files, the custody log and the journalists' keyring."""
    with desk.sessions() as db:
        last = db.scalar(select(CustodyRecord).order_by(CustodyRecord.seq.desc()).limit(1))
        return Stored(
            sources=frozenset(db.scalars(select(Source.id))),
            submissions=frozenset(db.scalars(select(Item.id))),
            uploads=frozenset((u.id, u.offset, u.part_count)
                              for u in db.scalars(select(Upload))),
            replies=frozenset(db.scalars(select(Reply.id))),
            journalists=frozenset((j.username, j.fingerprint)
                                  for j in db.scalars(select(Journalist))),
            custody=(db.scalar(select(func.count()).select_from(CustodyRecord)) or 0,
                     None if last is None else last.entry_hash),
            files=frozenset(_files(desk.config.store_dir)),
            keyring=hashlib.sha256(
                (desk.config.gnupg_home / "pubring.kbx").read_bytes()).hexdigest(),
        )


def _files(root: Path) -> Iterator[tuple[str, int]]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path.relative_to(root).as_posix(), path.stat().st_size


@contextlib.contextmanager
def nothing_stored(desk: Services) -> Iterator[None]:
    """Check that the block changes nothing `stored` sees."""
    before = stored(desk)
    yield
    assert stored(desk) == before


# What a refusal must look like


def assert_desk_page(response: TestResponse, status: int | None = None) -> None:
    """A 4xx answered with the desk's own error page."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if status is not None:
        assert response.status_code == status
    assert response.mimetype == "text/html"
    assert 'id="error-message"' in response.text
    assert STYLESHEET in response.text
    assert "Traceback" not in response.text


def assert_tus_refusal(response: TestResponse, status: int | None = None) -> None:
    """A 4xx for a tus client: short plain text naming the protocol."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if status is not None:
        assert response.status_code == status
    assert response.headers.get("Tus-Resumable") == "1.0.0"
    assert response.mimetype == "text/plain"
    assert len(response.data) < 200
    assert b"Traceback" not in response.data


def assert_refused(response: TestResponse, method: str = "POST") -> None:
    """The desk's error page, or a tus refusal where the tus endpoint answered."""
    if response.mimetype == "text/plain":
        assert_tus_refusal(response)
    elif method == "HEAD":  # a page without its body
        assert 400 <= response.status_code < 500, response.status_code
        assert response.mimetype == "text/html"
    else:
        assert_desk_page(response)


def assert_login_refused(response: TestResponse) -> None:
    """A login form's answer to anything that is not a login: the same 401 page and notice
    as for a wrong codename or password (sources and journalists learn nothing more)."""
    assert response.status_code == 401
    assert response.mimetype == "text/html"
    assert 'role="alert"' in response.text
    assert STYLESHEET in response.text



# The desk the bad-input tests share


@dataclass
class Target:
    """The desk under attack, its two apps and the clients that use them."""

    desk: Services
    root: Path
    source_app: Flask
    journalist_app: Flask
    source: SourceBrowser
    alice: FlaskClient
    source_id: str
    item_id: str
    upload: str  # a tus upload of 10 bytes at offset 1

    def anonymous(self) -> FlaskClient:
        """A source-interface client with no cookie."""
        return self.source_app.test_client()

    def new_source(self) -> SourceBrowser:
        """Another browser with its own codename."""
        browser = SourceBrowser(self.source_app.test_client())
        browser.get_codename()
        return browser


def make_target(root: Path, journalist: Keypair) -> Target:
    """A desk in `root` with alice (an admin, logged in), a source who sent one item and has a
    tus upload under way; dispose of `target.desk.engine` when done."""
    desk = new_desk(desk_config(root / "data"))
    add_account(desk, "alice", journalist)
    let_log_in(desk, "alice", admin=True)
    source_app = create_app(desk.config, "source", services=desk)
    journalist_app = create_app(desk.config, "journalist", services=desk)
    source = SourceBrowser(source_app.test_client())
    source.get_codename()
    assert source.send("the one item the journalist tests select").status_code == 200
    client = journalist_app.test_client()
    # Twice at most: a code made just before its 30-second step ends can arrive too late.
    assert 302 in (journalist_log_in(client, desk, "alice").status_code for _ in range(2))
    with desk.sessions() as db:
        source_id = db.scalars(select(Source.id)).one()
        item_id = db.scalars(select(Item.id)).one()
    token = source.form_token()
    created = source.client.post("/uploads/", headers={
        **TUS, "X-CSRFToken": token, "Upload-Length": "10"})
    assert created.status_code == 201
    upload = created.headers["Location"]
    # A first byte, so the upload's lock and first part exist before any snapshot.
    first = source.client.patch(upload, data=b"0", content_type=OCTETS, headers={
        **TUS, "X-CSRFToken": token, "Upload-Offset": "0"})
    assert first.status_code == 204
    return Target(desk, root, source_app, journalist_app, source, client, source_id, item_id,
                  upload)


def make_tokens(target: Target) -> dict[str, str]:
    """CSRF tokens: the target source's own, and every kind it must not be able to use."""
    own = target.source.form_token()
    # Tokens signed 25 hours ago, as if the page had been left open that long.
    with mock.patch.object(TimestampSigner, "get_timestamp",
                           return_value=int(time.time()) - 25 * 3600):
        stale = target.source.form_token()
        journalist_stale = csrf_token(target.alice.get("/admin/").text)
    other = target.new_source().form_token()
    # A token from the session this browser had before it logged out and back in.
    returning = target.new_source()
    before_logout = returning.form_token()
    assert returning.client.post("/logout", data={"csrf_token": before_logout}).status_code == 302
    login_token = csrf_token(returning.client.get("/login").text)
    assert returning.client.post("/login", data={
        "csrf_token": login_token, "codename": returning.codename}).status_code == 302
    return {"own": own, "stale": stale, "other source": other,
            "journalist": csrf_token(target.alice.get("/admin/").text),
            "journalist stale": journalist_stale,
            "before logout": before_logout, "truncated": own[:-6], "upper": own.upper(),
            "empty": "", "forged": "forged-token"}


# Building multipart bodies byte by byte


def part(name: bytes | None, value: bytes, filename: bytes | None = None) -> bytes:
    """One part: its Content-Disposition (and a type for a file), a blank line, the value."""
    disposition = b"form-data" if name is None else b'form-data; name="' + name + b'"'
    if filename is None:
        return b"Content-Disposition: " + disposition + b"\r\n\r\n" + value
    return (b"Content-Disposition: " + disposition + b'; filename="' + filename
            + b'"\r\nContent-Type: video/mp4\r\n\r\n' + value)


def form(*parts: bytes, boundary: bytes = BOUNDARY, close: bool = True) -> bytes:
    """A multipart body of `parts`, with its closing delimiter unless `close` is false."""
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return body + (b"--" + boundary + b"--\r\n" if close else b"")


def token_part(token: str) -> bytes:
    """The form's first field."""
    return part(b"csrf_token", token.encode())


def message_part(text: bytes = b"they moved the trucks at night") -> bytes:
    """The message field."""
    return part(b"message", text)


def file_part(filename: bytes = b"clip.mp4", data: bytes = b"frames" * 200) -> bytes:
    """A file input's part."""
    return part(b"files", data, filename)


def valid_form(token: str) -> bytes:
    """A form the desk would accept: token, message, one file."""
    return form(token_part(token), message_part(), file_part())



def submit(body: bytes, content_type: str | None = MULTIPART, **environ: str) -> Bad:
    """A POST /submit."""
    return Bad(body=body, content_type=content_type, environ=tuple(environ.items()))


# Requests of the tus endpoint and the journalist interface


def tus_headers(tokens: dict[str, str], **extra: str) -> tuple[tuple[str, str], ...]:
    """The headers of a well-behaved tus client, then `extra`."""
    return tuple({**TUS, "X-CSRFToken": tokens["own"], **extra}.items())


def create(tokens: dict[str, str], **headers: str) -> Bad:
    """A POST /uploads/."""
    return Bad(path="/uploads/", content_type=None, headers=tus_headers(tokens, **headers))


def create_without(name: str, tokens: dict[str, str], **headers: str) -> Bad:
    """A POST /uploads/ with one of the usual headers left out."""
    kept = {k: v for k, v in {**TUS, "X-CSRFToken": tokens["own"], **headers}.items()
            if k != name}
    return Bad(path="/uploads/", content_type=None, headers=tuple(kept.items()))



def patch(location: str, tokens: dict[str, str], headers: dict[str, str] | None = None, *,
          body: bytes = b"1", content_type: str | None = OCTETS) -> Bad:
    """A PATCH of the target's upload at its offset (1) unless `headers` say otherwise."""
    return Bad(method="PATCH", path=location, body=body, content_type=content_type,
               headers=tus_headers(tokens, **{"Upload-Offset": "1", **(headers or {})}))



def journalist_form(path: str, fields: dict[str, str], files: dict[str, bytes] | None = None,
                    token: str | None = None) -> Bad:
    """A journalist form post; the token is added when given."""
    parts = [] if token is None else [token_part(token)]
    parts += [part(name.encode(), value.encode()) for name, value in fields.items()]
    parts += [part(name.encode(), data, b"upload.asc") for name, data in (files or {}).items()]
    return Bad(path=path, body=form(*parts))


def error_notices(page: str) -> list[str]:
    """The error notices (flashed messages) on a journalist page."""
    return re.findall(r'class="flash error"[^>]*>([^<]*)<', page)


# Accepted by design


def assert_stored_safely(target: Target, before: Stored, marker: bytes) -> None:
    """New submissions only, each as files under store/objects/<its id>/, with a custody
    entry each; the name carrying `marker` is no path anywhere and no plaintext anywhere."""
    after = stored(target.desk)
    new = after.submissions - before.submissions
    assert new
    assert after.submissions >= before.submissions
    assert (after.sources, after.uploads, after.replies) == (
        before.sources, before.uploads, before.replies)
    assert after.custody[0] == before.custody[0] + len(new)
    added = after.files - before.files
    assert {path.split("/")[1] for path, _ in added} == new
    assert all(path.startswith("objects/") for path, _ in added)
    assert before.files <= after.files
    assert list(target.root.rglob(f"*{marker.decode()}*")) == []
    assert list(Path(tempfile.gettempdir()).glob(f"*{marker.decode()}*")) == []
    assert find_markers([marker], target.desk.config.data_dir) == []


# Bodies too large to build


class LazyBody:
    """A request body made as it is read, so the test's own copy costs no memory."""

    def __init__(self, head: bytes, filler: bytes, size: int, tail: bytes) -> None:
        self._head, self._filler, self._left, self._tail = head, filler, size, tail
        self.length = len(head) + size + len(tail)

    def read(self, n: int | None = -1) -> bytes:
        """Up to `n` bytes, a MiB at most."""
        want = MiB if n is None or n < 0 else min(n, MiB)
        out = bytearray()
        while len(out) < want and (self._head or self._left or self._tail):
            room = want - len(out)
            if self._head:
                out += self._head[:room]
                self._head = self._head[room:]
            elif self._left:
                take = min(room, self._left)
                self._left -= take
                out += self._filler * take
            else:
                out += self._tail[:room]
                self._tail = self._tail[room:]
        return bytes(out)

    def tell(self) -> int:
        """The test client asks; the body is not seekable."""
        return 0

    def seek(self, *_args: int) -> int:
        """See tell."""
        return 0



# A real server, over raw sockets


@dataclass(frozen=True)
class RawSource:
    """A source with a codename on the real server, for hand-made requests, and its tus upload
    of 10 bytes at offset 1."""

    session: SourceSession
    upload: str

    @property
    def url(self) -> str:
        """The server."""
        return self.session.url

    @property
    def token(self) -> str:
        """The submit page's CSRF token."""
        return self.session.token

    def request(self, method: str, path: str, body: bytes = b"", /, length: str | None = None,
                **headers: str) -> bytes:
        """The bytes of a hand-made request (SourceSession.raw); a Cookie header given
        replaces the source's."""
        return self.session.raw(method, path, body, length, **headers)


def open_raw_source(url: str) -> RawSource:
    """A source on the real server with a codename, its form token and a tus upload."""
    session = open_source_session(url)
    created = session.request("POST", "/uploads/", **{"Upload-Length": "10"})
    assert created.status_code == 201
    upload = created.headers["Location"]
    assert session.request("PATCH", upload, b"0", **{
        "Upload-Offset": "0", "Content-Type": OCTETS}).status_code == 204
    return RawSource(session, upload)


def exchange(url: str, data: bytes, *, half_close: bool = True,
             seconds: float = http.TIMEOUT) -> RawAnswer:
    """Send `data` on a new connection and read the answer (http.exchange), counted."""
    record("raw http", "real server", data)
    return http.exchange(url, data, half_close=half_close, seconds=seconds)


def hang_up(url: str, data: bytes, *, reset: bool = False, drip: bool = False) -> None:
    """Send `data` and close without waiting for an answer (http.send_and_leave), counted."""
    record("raw http", "real server", data, reset, drip)
    http.send_and_leave(url, data, reset=reset, drip=drip)


def settled(desk: Services, before: Stored, seconds: float = 10) -> Stored:
    """The store once requests still being read have given up (bounded wait)."""
    deadline = time.monotonic() + seconds
    while (now := stored(desk)) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    return now


def assert_desk_answer(answer: RawAnswer) -> None:
    """The desk's error page, or its tus refusal, with a 4xx status."""
    assert answer.status is not None, answer.raw[:200]
    assert 400 <= answer.status < 500, answer.raw[:300]
    if b"Content-Type: text/plain" in answer.raw:
        assert b"Tus-Resumable: 1.0.0" in answer.raw
    else:
        assert b'id="error-message"' in answer.body
        assert STYLESHEET.encode() in answer.body



def is_desk_answer(answer: RawAnswer) -> bool:
    """Whether `answer` passes assert_desk_answer."""
    try:
        assert_desk_answer(answer)
    except AssertionError:
        return False
    return True
