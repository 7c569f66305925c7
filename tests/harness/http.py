"""Clients of a real server over HTTP: a source's session (codename, cookie, CSRF token) as an
independent client carries it, a source's browser, a journalist's browser, and raw sockets for
requests no library would send (bodies cut short, dripped, reset, or sent in pieces)."""

from __future__ import annotations

import contextlib
import fcntl
import random
import re
import socket
import struct
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPResponse
from urllib.parse import urlsplit

import requests

from tests.harness.forms import CODENAME_RE, FormBody, csrf_token
from tests.harness.tus import OCTETS, TUS

TIMEOUT = 30  # seconds for any one HTTP exchange
COOKIE = "desk_source"
# How long a browser keeps retrying a new codename or a login the desk was too busy for.
RETRY_BUSY_FOR = 300


def address(url: str) -> tuple[str, int]:
    """Host and port of a server on 127.0.0.1."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    assert parts.port is not None
    return parts.hostname, parts.port


# A source


@dataclass(frozen=True)
class SourceSession:
    """A source's session on a real server as an independent client carries it: the Cookie
    header, the submit page's CSRF token and the codename shown."""

    url: str
    cookie: str  # the whole Cookie header, "desk_source=..."
    token: str
    codename: str

    @property
    def address(self) -> tuple[str, int]:
        """The server's host and port."""
        return address(self.url)

    @property
    def port(self) -> int:
        """The server's port."""
        return self.address[1]

    def headers(self, **extra: str) -> dict[str, str]:
        """What a tus client sends with every request: cookie, CSRF token, protocol version."""
        return {"Cookie": self.cookie, "X-CSRFToken": self.token, **TUS, **extra}

    def request(self, method: str, path: str, body: bytes | Iterator[bytes] = b"", /,
                **extra: str) -> requests.Response:
        """One tus request with these headers (an iterator body is sent chunked)."""
        return requests.request(method, self.url + path, data=body,
                                headers=self.headers(**extra), timeout=TIMEOUT)

    def new_upload(self, length: int, meta: str = "") -> str:
        """A new upload's Location (a path)."""
        response = self.request("POST", "/uploads/", **{"Upload-Length": str(length),
                                                        "Upload-Metadata": meta})
        assert response.status_code == 201, response.text
        return response.headers["Location"]

    def patch(self, location: str, offset: int, body: bytes) -> requests.Response:
        """PATCH `body` at `offset`."""
        return self.request("PATCH", location, body, **{"Content-Type": OCTETS,
                                                         "Upload-Offset": str(offset)})

    def offset(self, location: str) -> int:
        """The upload's offset as HEAD reports it."""
        response = self.request("HEAD", location)
        assert response.status_code == 200, response.status_code
        return int(response.headers["Upload-Offset"])

    def begin_patch(self, location: str, offset: int, length: int, **extra: str
                    ) -> socket.socket:
        """A raw connection that has sent a PATCH's headers; the caller sends the body."""
        host, port = self.address
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        headers = self.headers(**{"Host": f"{host}:{port}", "Content-Type": OCTETS,
                                  "Content-Length": str(length), "Upload-Offset": str(offset),
                                  **extra})
        head = f"PATCH {location} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        sock.sendall(head.encode("latin-1"))
        return sock

    def begin_post(self, content_type: str, length: int | None) -> HTTPConnection:
        """Send a submit post's request line and headers; the caller sends the body."""
        return begin_post(self.url, self.cookie, content_type, length)

    def raw(self, method: str, path: str, body: bytes = b"", /, length: str | None = None,
            **headers: str) -> bytes:
        """The bytes of a hand-made request: `length` overrides Content-Length ('' leaves it
        out), header names are written with '-' for '_', and a Cookie header given replaces
        this session's."""
        fields = {"Host": "desk.onion", "Connection": "close", **headers}
        fields.setdefault("Cookie", self.cookie)
        length = str(len(body)) if length is None else length
        if length:
            fields["Content-Length"] = length
        head = "".join(f"{name.replace('_', '-')}: {value}\r\n"
                       for name, value in fields.items())
        return f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body


def open_source_session(url: str, timeout: float = TIMEOUT) -> SourceSession:
    """Landing page, a new codename, the submit page; the browser is closed afterwards, so no
    idle connection keeps a worker's thread."""
    with requests.Session() as browser:
        source = HttpBrowser(url, browser)
        codename = source.get_codename(timeout)
        return SourceSession(url, source.cookie_header(), source.form_token(timeout), codename)


@dataclass
class HttpBrowser:
    """A source's browser on a real source interface: one requests session, its cookies."""

    url: str
    http: requests.Session = field(default_factory=requests.Session)
    codename: str | None = None

    @classmethod
    def with_codename(cls, url: str) -> HttpBrowser:
        """A new browser that has opened the landing page and pressed the codename button."""
        browser = cls(url)
        browser.get_codename()
        return browser

    def get_codename(self, timeout: float = TIMEOUT) -> str:
        """Open the landing page and press the codename button."""
        landing = self.http.get(self.url + "/", timeout=timeout)
        assert landing.status_code == 200, landing.status_code
        # The desk refuses derivations past a second's queue (429, "wait a minute"); a source
        # whose browser got that presses the button again, as these do a moment later (for
        # minutes if need be: twenty at once on a loaded machine take a while).
        deadline = time.monotonic() + max(timeout, RETRY_BUSY_FOR)
        while True:
            page = self.http.post(self.url + "/generate",
                                  data={"csrf_token": csrf_token(landing.text)}, timeout=timeout)
            if page.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.5 + random.random())  # noqa: S311 - a back-off, not a secret
        assert page.status_code == 200, (page.status_code, page.text[:300])
        match = CODENAME_RE.search(page.text)
        assert match, "no codename shown"
        assert self.http.cookies.get(COOKIE), "no session cookie"
        self.codename = match.group(1).strip()
        return self.codename

    def log_in(self, codename: str) -> None:
        """Type the codename on the login page."""
        form = self.http.get(f"{self.url}/login", timeout=TIMEOUT)
        deadline = time.monotonic() + RETRY_BUSY_FOR
        while True:
            answer = self.http.post(f"{self.url}/login", data={
                "csrf_token": csrf_token(form.text), "codename": codename}, timeout=TIMEOUT,
                allow_redirects=False)
            if answer.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.5 + random.random())  # noqa: S311 - a back-off, not a secret
        assert answer.status_code == 302, answer.status_code
        self.codename = codename

    def submit_page(self, timeout: float = TIMEOUT) -> str:
        """The submit page (replies and the form)."""
        page = self.http.get(f"{self.url}/submit", timeout=timeout, allow_redirects=False)
        assert page.status_code == 200, page.status_code
        return page.text

    def form_token(self, timeout: float = TIMEOUT) -> str:
        """The CSRF token of a freshly opened submit form."""
        return csrf_token(self.submit_page(timeout))

    def cookie_header(self) -> str:
        """The Cookie header this browser sends."""
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    def post(self, body: FormBody | Iterator[bytes], content_type: str | None = None
             ) -> requests.Response:
        """Post a hand-built form body (a generator is sent in chunks, without a length)."""
        if isinstance(body, FormBody):
            data: bytes | Iterator[bytes] = body.encode()
            content_type = content_type or body.content_type
        else:
            data = body
        assert content_type is not None
        return self.http.post(self.url + "/submit", data=data, timeout=TIMEOUT,
                              headers={"Content-Type": content_type})

    def connection(self) -> HTTPConnection:
        """A fresh HTTP connection to the server, for sending a body by hand."""
        return connection(self.url)

    def post_headers(self, content_type: str, length: int | None) -> dict[str, str]:
        """The headers of a hand-sent submit post (no Content-Length when `length` is None)."""
        return post_headers(self.cookie_header(), content_type, length)

    def begin_post(self, content_type: str, length: int | None) -> HTTPConnection:
        """Send a submit post's request line and headers; the caller sends the body."""
        return begin_post(self.url, self.cookie_header(), content_type, length)

    def session(self) -> SourceSession:
        """This browser's session as an independent client carries it."""
        return SourceSession(self.url, f"{COOKIE}={self.http.cookies[COOKIE]}",
                             self.form_token(), self.codename or "")


def connection(url: str) -> HTTPConnection:
    """A fresh HTTP connection to a server on 127.0.0.1, for sending a body by hand."""
    host, port = address(url)
    return HTTPConnection(host, port, timeout=TIMEOUT)


def post_headers(cookie: str, content_type: str, length: int | None) -> dict[str, str]:
    """The headers of a hand-sent submit post (no Content-Length when `length` is None)."""
    headers = {"Content-Type": content_type, "Cookie": cookie}
    if length is not None:
        headers["Content-Length"] = str(length)
    return headers


def begin_post(url: str, cookie: str, content_type: str, length: int | None
               ) -> HTTPConnection:
    """Send a submit post's request line and headers; the caller sends the body."""
    conn = connection(url)
    conn.putrequest("POST", "/submit")
    for name, value in post_headers(cookie, content_type, length).items():
        conn.putheader(name, value)
    conn.endheaders()
    return conn


# A journalist


def journalist_session(url: str, username: str, password: str, code: str,
                       timeout: float = 120) -> requests.Session:
    """A journalist's browser logged in to a real journalist interface."""
    browser = requests.Session()
    page = browser.get(url + "/login", timeout=TIMEOUT)
    assert page.status_code == 200, page.status_code
    answer = browser.post(url + "/login", allow_redirects=False, timeout=timeout, data={
        "csrf_token": csrf_token(page.text), "username": username, "password": password,
        "code": code})
    assert answer.status_code == 302, (answer.status_code, answer.text[:500])
    return browser


def post_journalist_form(browser: requests.Session, url: str, page: str, action: str,
                         data: dict[str, str]) -> requests.Response:
    """Post a journalist form to `action` with the CSRF token of the page it is on."""
    token = csrf_token(browser.get(f"{url}{page}", timeout=TIMEOUT).text)
    return browser.post(f"{url}{action}", data={"csrf_token": token, **data},
                        timeout=TIMEOUT, allow_redirects=False)


# Raw sockets


@dataclass(frozen=True)
class Answer:
    """A response: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


def send_in_pieces(port: int, method: str, path: str, headers: dict[str, str], body: bytes,
                   piece: int, timeout: float = TIMEOUT) -> Answer:
    """Send a request, its body in pieces of `piece` bytes (so that a kill can cut it
    anywhere), on a connection of its own; the answer."""
    connection = HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders()
        for start in range(0, len(body), piece):
            connection.send(body[start:start + piece])
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                      response.read())
    finally:
        connection.close()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """The status and headers of the answer on a raw connection (its timeout bounds this)."""
    response = HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status, {name.lower(): value for name, value in response.getheaders()}


def unsent(sock: socket.socket) -> int:
    """Bytes in the socket's send queue that the peer has not acknowledged yet."""
    queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", queued)[0])


def hang_up(sock: socket.socket, reset: bool) -> None:
    """End a connection mid-body: a TCP reset (a client that vanished) or an orderly close."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass(frozen=True)
class RawAnswer:
    """What came back on one connection (empty if the server sent nothing)."""

    raw: bytes

    @property
    def status(self) -> int | None:
        """The status code of the last response (after any 100 Continue)."""
        codes = re.findall(rb"HTTP/1\.[01] (\d{3})", self.raw)
        return int(codes[-1]) if codes else None

    @property
    def body(self) -> bytes:
        """Everything after the last response's headers."""
        return self.raw.rpartition(b"\r\n\r\n")[2]


def exchange(url: str, data: bytes, *, half_close: bool = True,
             seconds: float = TIMEOUT) -> RawAnswer:
    """Send `data` on a new connection, say nothing more will come (unless told not to), and
    read until the server closes it."""
    with socket.create_connection(address(url), timeout=seconds) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                out += chunk
    return RawAnswer(out)


def send_and_leave(url: str, data: bytes, *, reset: bool = False, drip: bool = False) -> None:
    """Send `data` (a byte at a time if `drip`) and close without waiting for an answer."""
    sock = socket.create_connection(address(url), timeout=TIMEOUT)
    try:
        if drip:
            for byte in data:
                sock.sendall(bytes([byte]))
                time.sleep(0.01)
        else:
            sock.sendall(data)
        if reset:  # RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    finally:
        sock.close()
