"""Serving an interface under gunicorn: threaded workers for slow Tor clients, no access log,
no trust in forwarded addresses, no Server header, and an error log without request data.

`GUNICORN_SETTINGS` is the one place these settings live: `desk serve` applies them, and
`deploy/gunicorn.conf.py` hands the same ones to a plain `gunicorn` command.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from flask import Flask
from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.config import Config as GunicornConfig
from gunicorn.http import wsgi

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
    """In each worker, before it serves: drop the Server header and filter Flask's log."""
    _drop_server_header()
    app_log = logging.getLogger("desk")  # Flask's logger for an app named "desk"
    if not any(isinstance(f, RequestFreeFilter) for f in app_log.filters):
        app_log.addFilter(RequestFreeFilter())


# A sync worker is killed when one request outlives `timeout`, which ends any upload slower
# than that. In gthread workers `timeout` only watches each worker's main loop, which never
# waits on a request, so a source's upload may take hours.
GUNICORN_SETTINGS: dict[str, Any] = {
    "worker_class": "gthread",
    "workers": 2,
    # Each request in progress holds a thread for as long as the client is sending, and a large
    # file over Tor takes hours; idle kept-alive connections wait in the poller, not a thread.
    "threads": 64,
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
    # Behind Tor every client is 127.0.0.1; never trust a forwarded address or scheme.
    "forwarded_allow_ips": "",
    "proxy_allow_ips": "",
    "post_worker_init": _worker_started,
}
# gunicorn 25.1 and later open a control socket under $HOME by default; the desk needs none,
# and both interfaces would fight over the same path.
if "control_socket_disable" in GunicornConfig().settings:
    GUNICORN_SETTINGS["control_socket_disable"] = True


class DeskServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application that loads the desk from a factory in each worker."""

    def __init__(self, factory: Callable[[], Flask], host: str, port: int) -> None:
        self._factory = factory
        self._settings = {**GUNICORN_SETTINGS, "bind": f"{host}:{port}"}
        super().__init__()

    def load_config(self) -> None:
        """Apply the desk's gunicorn settings."""
        for key, value in self._settings.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """Build the app inside the worker."""
        return self._factory()


def serve(factory: Callable[[], Flask], host: str, port: int) -> None:
    """Run an interface until interrupted."""
    DeskServer(factory, host, port).run()


def interface_app(interface: str) -> Flask:
    """The app for `interface` on the desk in DESK_DATA, for `gunicorn 'desk.serve:...'`."""
    from desk.app import create_app
    from desk.config import load_config

    if interface not in ("source", "journalist"):
        raise ValueError(f"no interface called {interface!r}")
    return create_app(load_config(os.environ), "source" if interface == "source" else "journalist")


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
