"""The front: HAProxy between tor and the source interface, giving each Tor circuit a fair share.

Behind tor every client is 127.0.0.1, so the desk cannot tell one source from another, and one
client with a few circuits' worth of streams could hold every gunicorn thread. tor can say
which circuit a stream came from: with `HiddenServiceExportCircuitID haproxy` it opens each
stream with a PROXY protocol (v1) line whose source address carries the circuit's id
(`PROXY TCP6 fc00:dead:beef:4dad::<id> ::1 <port> 80`). HAProxy reads it and:

- gives a request's headers `HEADER_TIMEOUT` in all to arrive, and closes a client that sends
  nothing for `IDLE_TIMEOUT` while it should be sending, before the desk ever sees it;
- lets one circuit hold at most `CIRCUIT_CONNECTIONS` connections at once, and send at most
  `CIRCUIT_REQUESTS` requests in `REQUEST_WINDOW`; beyond that a connection is closed and a
  request gets 429;
- passes the desk at most one request per gunicorn thread (less a spare per worker), each on
  a connection of its own, so that it lands on a worker with a thread free; the rest wait in
  HAProxy's queue, where the requests of circuits holding fewer connections go first;
- streams bodies through without buffering them (HAProxy holds at most one buffer of each in
  memory, and never writes a body anywhere), and keeps no log.

The circuit's id never reaches the desk: HAProxy forwards neither it nor any other address.
deploy/README.md ("Denial of service") says what this buys and what it does not.
"""

from __future__ import annotations

import re
from pathlib import Path

from crypto.durable import write_durably
from desk.errors import DeskError
from desk.ops.serve import GUNICORN_SETTINGS, REFUSED_PAGE
from desk.web.headers import SECURITY_HEADERS

# Seconds a request's headers may take in all (HAProxy's `timeout http-request`).
HEADER_TIMEOUT = 10
# Seconds a client may send nothing while a request of its is arriving (`timeout client`).
IDLE_TIMEOUT = 60
# Seconds a kept-alive connection may wait for its next request.
KEEPALIVE_TIMEOUT = 30
# Seconds a request may wait in HAProxy's queue for a thread before it gets 503.
QUEUE_TIMEOUT = 30
# Connections one circuit may hold at once. Tor Browser opens at most 6 to a site; tor itself
# closes a circuit that asks for more than 20 streams (HiddenServiceMaxStreams).
CIRCUIT_CONNECTIONS = 8
# Requests one circuit may send per REQUEST_WINDOW: a page and its style sheet and icon are
# three or four, and upload.js sends a resumable upload's pieces one after another, each
# about ten seconds of sending (1 to 16 MiB): a request every few seconds at most.
CIRCUIT_REQUESTS = 60
REQUEST_WINDOW = 10
# Connections the front holds in all; each costs it two descriptors.
FRONT_CONNECTIONS = 2000
# Circuits remembered at once; an entry is forgotten once it is idle for a window.
CIRCUITS_TRACKED = 100_000


class FrontSetupError(DeskError):
    """The front's configuration could not be written; the message says what to fix."""


def desk_capacity() -> int:
    """Requests the front passes to the source interface at once: one per gunicorn thread,
    less one per worker kept spare for anything that reaches the desk another way."""
    workers, threads = GUNICORN_SETTINGS["workers"], GUNICORN_SETTINGS["threads"]
    return int(workers) * (int(threads) - 1)


def render_front_config(listen_port: int, source_port: int) -> str:
    """The complete HAProxy configuration: listen on 127.0.0.1:`listen_port` for tor's PROXY
    protocol streams, serve the source interface on 127.0.0.1:`source_port`."""
    errors = "\n".join(f"    {line}" for line in _error_pages())
    return f"""\
# The desk's front, written by `desk front-config`: HAProxy between tor and the source
# interface. Run that command again rather than editing this file.

global
    # No log at all: a log line would say when someone used the desk.
    maxconn {FRONT_CONNECTIONS}
    # A reload lets requests in progress finish for this long, as gunicorn does.
    hard-stop-after 60s

defaults
    mode http
    timeout connect 5s
    # A request's headers must all arrive in this time.
    timeout http-request {HEADER_TIMEOUT}s
    # A client that sends nothing for this long while it should be sending is gone.
    timeout client {IDLE_TIMEOUT}s
    # The desk answers a PATCH only once its whole body has arrived, which over Tor may take
    # as long as the client keeps sending; the idle limit above is what ends a stalled one.
    timeout server 24h
    timeout http-keep-alive {KEEPALIVE_TIMEOUT}s
    timeout queue {QUEUE_TIMEOUT}s
    # A connection of its own to the desk for every request: it then goes to a worker with a
    # thread free, never behind requests another client holds.
    option http-server-close
    # Bodies pass through as they arrive: nothing is buffered beyond one buffer in memory.
    no option http-buffer-request
{errors}

frontend source
    # Only tor connects here, and every stream starts with the PROXY line naming its circuit.
    bind 127.0.0.1:{listen_port} accept-proxy
    maxconn {FRONT_CONNECTIONS}
    stick-table type ipv6 size {CIRCUITS_TRACKED} expire {REQUEST_WINDOW}s \
store conn_cur,http_req_rate({REQUEST_WINDOW}s)
    # Session rules, not connection rules: only these see the PROXY line's address.
    tcp-request session track-sc0 src
    tcp-request session reject if {{ sc0_conn_cur gt {CIRCUIT_CONNECTIONS} }}
    http-request deny deny_status 429 if {{ sc0_http_req_rate gt {CIRCUIT_REQUESTS} }}
    # In the queue, circuits that hold fewer connections go first.
    http-request set-priority-class sc0_conn_cur
    # Nothing about the client is passed on: no X-Forwarded-For, no PROXY line.
    default_backend desk

backend desk
    server desk 127.0.0.1:{source_port} maxconn {desk_capacity()}
"""


def write_front_config(out: Path, listen_port: int, source_port: int) -> None:
    """Write the front's configuration to `out`, whole and durably (readable by HAProxy)."""
    if listen_port == source_port:
        raise FrontSetupError("the front and the source interface need different ports")
    try:
        write_durably(out, render_front_config(listen_port, source_port).encode(), 0o644)
    except OSError as exc:
        raise FrontSetupError(f"cannot write {out}: {exc.strerror}") from exc


# The statuses HAProxy answers by itself: a bad or slow request, a circuit over its limits, a
# desk that is not answering or too busy. Each gets the desk's own page, not HAProxy's, except
# where HAProxy 2.6 answers before a request exists (a request it cannot parse, headers past
# the deadline): there it keeps its own short page, which names nothing.
_FRONT_STATUSES = (400, 408, 429, 500, 502, 503, 504)


def _error_pages() -> list[str]:
    """`http-error` lines answering each of _FRONT_STATUSES with the desk's refusal page and
    security headers."""
    page = _quoted("".join(line.strip() for line in REFUSED_PAGE.splitlines()))
    headers = " ".join(f"hdr {name} {_quoted(value)}"
                       for name, value in {**SECURITY_HEADERS, "Connection": "close"}.items())
    return [f'http-error status {status} content-type "text/html; charset=utf-8" '
            f"string {page} {headers}" for status in _FRONT_STATUSES]


_UNSAFE_IN_QUOTES = re.compile(r"[$\\\x00-\x1f\x7f]")


def _quoted(text: str) -> str:
    """`text` as a double-quoted HAProxy word; nothing in it is expanded or escaped."""
    if _UNSAFE_IN_QUOTES.search(text):
        raise FrontSetupError(f"cannot put {text!r} in HAProxy's configuration")
    return '"' + text.replace('"', '\\"') + '"'
