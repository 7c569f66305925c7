"""Serving an interface under gunicorn: threaded workers for slow Tor clients, no access log,
no trust in forwarded addresses, no Server header, and an error log without request data.

`GUNICORN_SETTINGS` is the one place these settings live: `desk serve` applies them, and
`deploy/gunicorn.conf.py` hands the same ones to a plain `gunicorn` command.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from flask import Flask
from gunicorn import glogging
from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.config import Config as GunicornConfig
from gunicorn.http import wsgi
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest

from desk.config import Config
from desk.ops.worker import DeadlineSocket
from desk.web.headers import SECURITY_HEADERS

# gunicorn log lines that quote a request (its request line, a header, its URI or method),
# and what is logged instead. A request can carry a codename, a tus upload id or a source's
# words; the log outlives the request.
_REQUEST_MESSAGES = {
    "Invalid request from ip=": "Refused a malformed request",
    "Error handling request": "Error handling a request",
    "Socket error processing request": "Socket error processing a request",
    # Flask's own line for an exception a view did not handle names the path.
    "Exception on ": "Unhandled exception in a request",
}


class RequestFreeFilter(logging.Filter):
    """Rewrite a log record that quotes a request so it keeps only what kind of event it was."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace request data in `record`; never drops a record."""
        message = str(record.msg)
        replacement = next((text for prefix, text in _REQUEST_MESSAGES.items()
                            if message.startswith(prefix)), None)
        if replacement is None:
            return True
        record.msg, record.args = replacement, ()
        if record.exc_info and record.exc_info[1] is not None:
            # An exception's message can quote what the client sent; its frames cannot.
            record.exc_text = _traceback_without_messages(record.exc_info[1])
            record.exc_info = None
        return True


# gunicorn ships no type information, so its classes are Any to mypy and subclassing one is
# reported (misc); the two ignores below are for that alone.
class RequestFreeLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger with `RequestFreeFilter` on its error log, and no access log at all."""

    def setup(self, cfg: Any) -> None:
        """Set up gunicorn's handlers, then filter every record that reaches them."""
        super().setup(cfg)
        if not any(isinstance(f, RequestFreeFilter) for f in self.error_log.filters):
            self.error_log.addFilter(RequestFreeFilter())

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Record nothing: an access log would say when someone used the desk."""


def _worker_started(worker: Any) -> None:
    """In each worker, before it serves: drop the Server header, answer the requests gunicorn
    refuses itself with the desk's page, and filter Flask's log."""
    _drop_server_header()
    _desk_error_pages()
    app_log = logging.getLogger("desk")  # Flask's logger for an app named "desk"
    if not any(isinstance(f, RequestFreeFilter) for f in app_log.filters):
        app_log.addFilter(RequestFreeFilter())


def _arbiter_ready(arbiter: Any) -> None:
    """In the arbiter, once it listens: settle the data directory every DESK_SETTLE_INTERVAL
    (deploy/STORAGE.md, "Settling")."""
    from desk.config import load_config
    from desk.ops.settling import guard_forks

    config = load_config(os.environ)
    guard_forks()  # the settle opens the database here, and the arbiter forks workers
    thread = threading.Thread(target=_settle_every, name="desk-settle", daemon=True,
                              args=(config, config.settle_interval, arbiter.log))
    thread.start()


def _settle_every(config: Config, interval: int, log: Any) -> None:
    """Settle, then wait `interval` seconds, until the process ends.

    In the arbiter rather than a worker: there is one arbiter per interface, it never serves
    a request, and it lives as long as the interface. The two interfaces' arbiters take turns
    through the settle lock: one that finds a settle under way skips its turn. The first
    settle is one interval after start, so a restart loop cannot settle in a tight loop.
    """
    from desk.ops.settling import settle_desk
    from desk.storage.settle import SettleBusy

    while True:
        time.sleep(interval)
        try:
            report = settle_desk(config, wait=False)
        except SettleBusy:
            continue
        except Exception as exc:
            log.error("Settling the data directory failed: %s", type(exc).__name__)
            continue
        if not report.database_settled:
            log.warning("The settle could not empty the database's write-ahead log; the next "
                        "settle tries again")


# A sync worker is killed when one request outlives `timeout`, which ends any upload slower
# than that. In gthread workers `timeout` only watches each worker's main loop, which never
# waits on a request, so a source's upload may take hours.
GUNICORN_SETTINGS: dict[str, Any] = {
    # gthread, with read deadlines, a thread-aware accept and a descriptor budget
    # (desk/ops/worker.py).
    "worker_class": "desk.ops.worker.DeskWorker",
    "workers": 2,
    # Each request in progress holds a thread for as long as the client is sending, and a large
    # file over Tor takes hours; idle kept-alive connections wait in the poller, not a thread.
    "threads": 64,
    # Connections a worker keeps open, kept-alive ones included (gunicorn's default is 1000).
    # Each worker lowers it further if its open-file limit would not leave every thread the
    # descriptors a request needs; beyond it, connections wait in the kernel's queue.
    "worker_connections": 200,
    "timeout": 120,
    # On a restart, requests in progress get this long before they are cut off.
    "graceful_timeout": 60,
    # Tor Browser reuses a connection rather than open a stream for every request; the first
    # bytes on a new stream can also take seconds to cross a slow circuit.
    "keepalive": 30,
    # Never recycle a worker: that would cut off the uploads it is receiving.
    "max_requests": 0,
    # No access log: it would record when someone used the desk.
    "accesslog": None,
    "errorlog": "-",
    "loglevel": "warning",
    "logger_class": RequestFreeLogger,
    # Behind Tor every client is 127.0.0.1; never trust a forwarded address or scheme. gunicorn
    # takes any peer of a Unix socket for a trusted proxy whatever these say, so the headers a
    # proxy may set are none: a client's SCRIPT_NAME or X-Forwarded-Proto would otherwise shape
    # every address the journalist interface builds on its socket.
    "forwarded_allow_ips": "",
    "proxy_allow_ips": "",
    "forwarder_headers": "",
    "secure_scheme_headers": {},
    "post_worker_init": _worker_started,
    "when_ready": _arbiter_ready,
}
# gunicorn 25.1 and later open a control socket under $HOME by default; the desk needs none,
# and both interfaces would fight over the same path.
if "control_socket_disable" in GunicornConfig().settings:
    GUNICORN_SETTINGS["control_socket_disable"] = True


# A Unix socket is made with mode 0660: its owner and its group (tor's, where the desk is
# deployed) may connect, no other local user may. TCP on loopback, by contrast, is open to
# every process on the host.
SOCKET_UMASK = 0o117


class DeskServer(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    """A gunicorn application that loads the desk from a factory in each worker.

    It listens on `host`:`port`, or on the Unix socket `socket`; a socket systemd passes in
    (socket activation, deploy/systemd/desk@journalist.socket) takes the place of either.
    """

    def __init__(self, factory: Callable[[], Flask], host: str, port: int,
                 socket: Path | None = None) -> None:
        self._factory = factory
        self._settings = {**GUNICORN_SETTINGS, "bind": f"{host}:{port}"}
        if socket is not None:
            self._settings.update(bind=f"unix:{socket}", umask=SOCKET_UMASK)
        super().__init__()

    def load_config(self) -> None:
        """Apply the desk's gunicorn settings."""
        for key, value in self._settings.items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApp:
        """Build the app inside the worker."""
        return body_errors_as_disconnects(self._factory())


def serve(factory: Callable[[], Flask], host: str, port: int, socket: Path | None = None
          ) -> None:
    """Run an interface until interrupted, on `host`:`port` or the Unix socket `socket`."""
    DeskServer(factory, host, port, socket).run()


def interface_app(interface: str) -> WSGIApp:
    """The app for `interface` on the desk in DESK_DATA, for `gunicorn 'desk.ops.serve:...'`."""
    from desk.app import create_app
    from desk.config import load_config

    if interface not in ("source", "journalist"):
        raise ValueError(f"no interface called {interface!r}")
    return body_errors_as_disconnects(create_app(
        load_config(os.environ), "source" if interface == "source" else "journalist"))


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]
_T = TypeVar("_T")


class _Body(Protocol):
    """What the desk reads of a WSGI input stream (gunicorn's Body)."""

    def read(self, size: int | None = ..., /) -> bytes: ...

    def readline(self, size: int | None = ..., /) -> bytes: ...

    def readlines(self, hint: int | None = ..., /) -> list[bytes]: ...


class _BodyReader:
    """gunicorn's request body, whose framing errors are a 400.

    gunicorn raises its own ParseException (a bad chunk size, a missing chunk terminator, a
    bad trailer) from inside `read`, where nothing in Flask, Werkzeug or the desk expects it;
    it would become a 500 and a logged traceback. It becomes Werkzeug's BadRequest instead:
    the request is refused with the desk's page, and what its body had sent is discarded like
    any failed upload's (not kept, as the bytes before a dropped connection are).
    """

    def __init__(self, body: _Body) -> None:
        self._body = body

    def _guard(self, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except ParseException as exc:
            raise BadRequest("the request body's framing is broken") from exc

    def read(self, size: int | None = None) -> bytes:
        """Like the body's read."""
        return self._guard(lambda: self._body.read(size))

    def readline(self, size: int | None = None) -> bytes:
        """Like the body's readline."""
        return self._guard(lambda: self._body.readline(size))

    def readlines(self, hint: int | None = None) -> list[bytes]:
        """Like the body's readlines."""
        return self._guard(lambda: self._body.readlines(hint))

    def __iter__(self) -> _BodyReader:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def body_errors_as_disconnects(app: WSGIApp) -> WSGIApp:
    """`app` with gunicorn's body parse errors turned into BadRequest, ending the header
    deadline of the desk's worker once a request reaches the app."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        connection = environ.get("gunicorn.socket")
        if isinstance(connection, DeadlineSocket):
            connection.headers_read()
        body = environ.get("wsgi.input")
        if body is not None:
            environ["wsgi.input"] = _BodyReader(body)
        return app(environ, start_response)

    return wrapped


# What gunicorn sends when it refuses a request before the app sees it (a header too large,
# a bad request line or Content-Length): the desk's page, in English (no app runs to choose a
# language), not gunicorn's, which quotes part of the request.
REFUSED_PAGE = """<!doctype html>
<html lang="en" dir="ltr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Not available</title>
<link rel="stylesheet" href="/static/desk.css">
</head>
<body>
<header class="masthead"><span class="brand">desk</span></header>
<main>
<h1>Sorry</h1>
<p class="lead" id="error-message">This request could not be read, so nothing was kept.</p>
<p><a class="button" href="/">Back to the start</a></p>
</main>
</body>
</html>
"""


def _write_refusal(sock: Any, status_int: int, reason: str, _message: str) -> None:
    body = REFUSED_PAGE.encode("utf-8")
    head = "".join(f"{name}: {value}\r\n" for name, value in {
        "Connection": "close", "Content-Type": "text/html; charset=utf-8",
        "Content-Length": str(len(body)), **SECURITY_HEADERS}.items())
    reason = "".join(c for c in reason if c.isprintable() and c != "\r")[:64]
    gunicorn_util.write_nonblock(
        sock, f"HTTP/1.1 {status_int} {reason}\r\n{head}\r\n".encode("latin-1") + body)


def _desk_error_pages() -> None:
    """Make gunicorn answer the requests it refuses itself with `REFUSED_PAGE`."""
    gunicorn_util.write_error = _write_refusal


def _drop_server_header() -> None:
    """Make gunicorn's responses carry no Server header.

    gunicorn writes `Server: gunicorn` itself, after the app's headers, and has no setting for
    it; naming the server software helps nobody but someone choosing an exploit.
    """
    original = wsgi.Response.default_headers
    if getattr(original, "desk_no_server", False):
        return

    def default_headers(self: wsgi.Response) -> list[str]:
        return [line for line in original(self) if not line.lower().startswith("server:")]

    default_headers.desk_no_server = True  # type: ignore[attr-defined]
    wsgi.Response.default_headers = default_headers


def _traceback_without_messages(exc: BaseException) -> str:
    """The frames of `exc` and of the exceptions it came from, each named by type only."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__)
    parts: list[str] = []
    for item in reversed(chain):
        tb: TracebackType | None = item.__traceback__
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(tb))
        parts.append(f"{type(item).__module__}.{type(item).__qualname__} (message not logged)\n")
    return "".join(parts).rstrip("\n")
