"""The desk's gunicorn worker: gunicorn's threaded worker, made to survive a client that sends
slowly or not at all, and a flood of connections.

gunicorn's gthread worker gives each request a thread for as long as its headers and body are
arriving, with no deadline on either: 2 x 64 connections that stop half-way through their
headers, or that drip a body one byte at a time, held every thread and the desk answered
nobody. It accepts up to `worker_connections` connections whatever its open-file limit, and an
`accept()` that fails for want of a descriptor ends the worker and every upload it was serving.
This worker:

- gives a request's headers `HEADER_DEADLINE` seconds in all to arrive, and no read of a
  request (headers or body) waits more than `IDLE_DEADLINE` seconds for a byte; a client that
  misses either is treated as gone (what it sent of a body is handled as a dropped connection
  is), and its thread is free;
- takes a new connection only while it has a thread free for it, so that a connection never
  waits behind the others in a worker that is full while the other worker has room;
- keeps its connections within what its open-file limit allows next to the descriptors each
  request in progress needs (gpg's pipes, the upload's lock and folder), raising its own soft
  limit first where the hard one allows;
- and, should `accept()` still find no descriptor, stops accepting for a second instead of
  dying.

The deadlines bound idleness, not slowness: a client that keeps sending one byte a minute keeps
its thread. Bounding how many threads one client holds needs to know who the client is, which
only tor can tell; the front (desk/ops/front.py) does that per Tor circuit.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import select
import socket
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# Seconds a request's headers may take to arrive in all. Tor Browser sends them in one go; a
# slow circuit delays them by a few seconds at most.
HEADER_DEADLINE = 15
# Seconds any read of a request may wait for its next byte. A Tor circuit that delivers nothing
# for a minute is broken; a resumable upload picks up from what was acknowledged.
IDLE_DEADLINE = 60

# Descriptors one request in progress may hold besides its connection: gpg's four pipes and
# the pipes python-gnupg's threads read, the upload's lock file and folder, a database handle.
DESCRIPTORS_PER_REQUEST = 8
# Descriptors a worker holds whatever it serves: the listener, its poller and wake-up pipe, the
# log, the database, gpg-agent's socket, Python's own.
DESCRIPTORS_AT_REST = 64
# The soft open-file limit a worker raises itself to when its hard limit allows.
WANTED_OPEN_FILES = 4096
# Errors of accept() that mean "no descriptor or memory for one right now", not "stop".
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# How long a worker that found no descriptor waits before it accepts again.
ACCEPT_PAUSE = 1.0


class DescriptorLimitTooLow(RuntimeError):
    """The open-file limit leaves no room for connections next to the worker's threads."""


def connection_budget(open_files: int, threads: int, wanted: int) -> int:
    """How many connections a worker with `threads` threads may keep open within `open_files`
    descriptors: at most `wanted`, and never so many that a request in progress on every
    thread would run out of descriptors."""
    room = open_files - DESCRIPTORS_AT_REST - threads * DESCRIPTORS_PER_REQUEST
    if room < threads:
        needed = DESCRIPTORS_AT_REST + threads * (DESCRIPTORS_PER_REQUEST + 1)
        raise DescriptorLimitTooLow(
            f"the open-file limit ({open_files}) is too low for {threads} threads: raise it to "
            f"at least {needed} (LimitNOFILE= in the unit, or ulimit -n)")
    return min(wanted, room)


def raise_open_file_limit(wanted: int = WANTED_OPEN_FILES) -> int:
    """Raise this process's soft open-file limit to `wanted` if the hard limit allows (never
    lower it); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class DeadlineSocket(socket.socket):
    """A client connection whose blocking reads give up (module docstring).

    A worker thread sets the connection blocking when it takes up a request: that starts the
    header deadline. `headers_read` (called once the app has the request) ends it. gunicorn's
    own timed reads (settimeout) are left as they are.
    """

    __slots__ = ("_headers_due",)
    _headers_due: float | None

    @classmethod
    def adopt(cls, sock: socket.socket) -> DeadlineSocket:
        """The same connection as a DeadlineSocket (`sock` is detached, not closed)."""
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        adopted._headers_due = None
        return adopted

    def setblocking(self, flag: bool) -> None:
        """As socket.setblocking; blocking starts a request's header deadline."""
        super().setblocking(flag)
        if flag:
            self._headers_due = time.monotonic() + HEADER_DEADLINE

    def headers_read(self) -> None:
        """The request's headers are in: from now on only the idle deadline applies."""
        self._headers_due = None

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        """As socket.recv, but b"" (the client is gone) once a deadline passes."""
        if self.gettimeout() is None and not self._readable_in_time():
            return b""
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0, /) -> int:
        """As socket.recv_into, but 0 (the client is gone) once a deadline passes."""
        if self.gettimeout() is None and not self._readable_in_time():
            return 0
        return super().recv_into(buffer, nbytes, flags)

    def _readable_in_time(self) -> bool:
        """Wait for a byte within the deadlines; past them, shut the reading side, so that
        every later read also finds the client gone."""
        wait = float(IDLE_DEADLINE)
        due = self._headers_due
        if due is not None:
            wait = min(wait, due - time.monotonic())
        if wait > 0:
            poller = select.poll()
            poller.register(self.fileno(), select.POLLIN | select.POLLPRI)
            if poller.poll(wait * 1000):
                return True
        with contextlib.suppress(OSError):
            self.shutdown(socket.SHUT_RD)
        return False


# gunicorn ships no type information, so its classes are Any to mypy and subclassing one is
# reported (misc).
class DeskWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker with read deadlines, thread-aware accepting and a descriptor
    budget (module docstring). `worker_class` in GUNICORN_SETTINGS names it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy = 0  # requests handed to the thread pool and not yet finished
        self._accept_paused_until = 0.0

    def init_process(self) -> None:
        """Fit the connection limit to the descriptors this process may open, then run."""
        open_files = raise_open_file_limit()
        self.worker_connections = connection_budget(
            open_files, self.cfg.threads, self.cfg.worker_connections)
        self.max_keepalived = self.worker_connections - self.cfg.threads
        if self.worker_connections < self.cfg.worker_connections:
            self.log.warning("The open-file limit (%d) allows %d connections per worker, not %d",
                             open_files, self.worker_connections, self.cfg.worker_connections)
        super().init_process()

    def enqueue_req(self, conn: Any) -> None:
        """Hand a connection to a thread, with reads that give up (DeadlineSocket)."""
        if not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket.adopt(conn.sock)
        self._busy += 1
        super().enqueue_req(conn)
        if self._busy >= self.cfg.threads:
            self.set_accept_enabled(False)

    def finish_request(self, conn: Any, fs: Any) -> None:
        """A thread is done with a connection."""
        self._busy -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        """Accept only with a thread free and no pause after running out of descriptors."""
        enabled = (enabled and self._busy < self.cfg.threads
                   and time.monotonic() >= self._accept_paused_until)
        super().set_accept_enabled(enabled)

    def accept(self, listener: Any) -> None:
        """Accept a connection; out of descriptors, pause accepting rather than die."""
        try:
            super().accept(listener)
        except OSError as exc:
            if exc.errno not in _OUT_OF_DESCRIPTORS:
                raise
            self.log.warning("Out of file descriptors: not accepting connections for %.0f s",
                             ACCEPT_PAUSE)
            self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE
            self.set_accept_enabled(False)
