"""One source against the desk's threads, as the second security review attacked it, and an
honest source beside it: streams that never finish their headers, tus PATCHes that drip a byte
at a time, upload creation as fast as the desk answers, each on Tor circuits of the attacker's,
while the honest source loads pages and uploads a file on a circuit of its own.

The streams go either to the front (each opens with the PROXY line naming its circuit) or
straight to `desk serve source` (no circuit can be told apart there). Every loop stops when
told to or at its deadline; nothing here asserts: the tests and bench/fair_share.py judge what
comes back.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException

from tests.harness.front import CircuitConnection, proxy_line
from tests.harness.http import SourceSession, open_source_session
from tests.harness.tus import OCTETS

# What a stream that never finishes its headers sends.
UNFINISHED_HEADERS = b"GET / HTTP/1.1\r\nHost: desk.onion\r\nX-Pad: "
# What each slow PATCH announces; it never sends that much.
DRIP_LENGTH = 1024 * 1024


@dataclass(frozen=True)
class Target:
    """Where streams go: the front (`via_front`, each stream opens with a PROXY line) or the
    source interface itself."""

    port: int
    via_front: bool

    def stream(self, circuit: int, timeout: float | None) -> socket.socket:
        """A new stream from `circuit`."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.via_front:
            sock.sendall(proxy_line(circuit))
        return sock

    def http(self, circuit: int, timeout: float) -> HTTPConnection:
        """An HTTP connection from `circuit`."""
        if self.via_front:
            return CircuitConnection(self.port, circuit, timeout=timeout)
        return HTTPConnection("127.0.0.1", self.port, timeout=timeout)


def request(target: Target, circuit: int, method: str, path: str, headers: dict[str, str],
            body: bytes = b"", timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own; status, headers (lower-case names), body."""
    connection = target.http(circuit, timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        connection.close()


class _Loop(threading.Thread):
    """A daemon thread that runs `step` until stopped or past its deadline."""

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(name=name, daemon=True)
        self.stopping = threading.Event()
        self.deadline = time.monotonic() + seconds
        self.failure: BaseException | None = None

    def running(self) -> bool:
        """True until stopped or past the deadline."""
        return not self.stopping.is_set() and time.monotonic() < self.deadline

    def run(self) -> None:
        try:
            self.loop()
        except BaseException as exc:  # reported by whoever joins
            self.failure = exc
        finally:
            self.cleanup()

    def loop(self) -> None:
        """The work."""

    def cleanup(self) -> None:
        """Close what the loop holds."""

    def stop(self) -> None:
        """Stop and wait."""
        self.stopping.set()
        self.join(timeout=30)


class SlowHeaders(_Loop):
    """`count` streams, spread over `circuits`, that send part of a request's headers and
    then nothing; one the other side closes is opened again."""

    def __init__(self, target: Target, circuits: list[int], count: int, seconds: float) -> None:
        super().__init__("slow-headers", seconds)
        self.target = target
        self.slots: list[socket.socket | None] = [None] * count
        self.circuits = [circuits[i % len(circuits)] for i in range(count)]
        self.opened = 0
        self.closed_by_desk = 0

    def loop(self) -> None:
        while self.running():
            for i, sock in enumerate(self.slots):
                if sock is None and self.running():
                    with contextlib.suppress(OSError):
                        sock = self.target.stream(self.circuits[i], timeout=2)
                        sock.sendall(UNFINISHED_HEADERS)
                        sock.setblocking(False)
                        self.slots[i] = sock
                        self.opened += 1
            live = [s for s in self.slots if s is not None]
            if not live:
                time.sleep(0.2)
                continue
            readable, _, _ = select.select(live, [], [], 0.5)
            for sock in readable:  # an answer (a refusal) or a close: open another
                self.closed_by_desk += 1
                sock.close()
                self.slots[self.slots.index(sock)] = None
            if readable:
                time.sleep(0.1)

    def cleanup(self) -> None:
        for sock in self.slots:
            if sock is not None:
                sock.close()


@dataclass
class _Drip:
    circuit: int
    session: SourceSession
    location: str
    offset: int = 0
    sock: socket.socket | None = None
    retry_at: float = 0.0


class SlowPatches(_Loop):
    """One PATCH per upload, each announcing DRIP_LENGTH bytes and sending one byte every
    `drip` seconds; a PATCH the other side ends is started again at the offset HEAD gives."""

    def __init__(self, target: Target, uploads: list[tuple[int, SourceSession, str]],
                 drip: float, seconds: float) -> None:
        super().__init__("slow-patches", seconds)
        self.target = target
        self.drips = [_Drip(circuit, session, location)
                      for circuit, session, location in uploads]
        self.drip = drip
        self.started = 0
        self.ended_by_desk = 0

    def _start(self, entry: _Drip) -> None:
        status, headers, _ = request(self.target, entry.circuit, "HEAD", entry.location,
                                     entry.session.headers(), timeout=5)
        if status != 200:
            raise OSError(f"HEAD answered {status}")
        entry.offset = int(headers["upload-offset"])
        sock = self.target.stream(entry.circuit, timeout=5)
        head = {**entry.session.headers(), "Host": "desk.onion", "Content-Type": OCTETS,
                "Content-Length": str(DRIP_LENGTH), "Upload-Offset": str(entry.offset)}
        sock.sendall((f"PATCH {entry.location} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode("latin-1"))
        sock.setblocking(False)
        entry.sock = sock
        self.started += 1

    def loop(self) -> None:
        while self.running():
            now = time.monotonic()
            for entry in self.drips:
                if entry.sock is None and now >= entry.retry_at and self.running():
                    try:
                        self._start(entry)
                    except (OSError, HTTPException, KeyError, ValueError):
                        entry.retry_at = time.monotonic() + 1
            for entry in self.drips:
                if entry.sock is None:
                    continue
                try:
                    if select.select([entry.sock], [], [], 0)[0]:
                        raise ConnectionError("the desk answered or closed")
                    entry.sock.send(b"x")
                except OSError:
                    self.ended_by_desk += 1
                    entry.sock.close()
                    entry.sock = None
                    entry.retry_at = time.monotonic() + 1
            self.stopping.wait(self.drip)

    def cleanup(self) -> None:
        for entry in self.drips:
            if entry.sock is not None:
                entry.sock.close()


class CreationFlood(_Loop):
    """tus upload creation from `circuit`, as fast as the answers come; counts the statuses."""

    def __init__(self, target: Target, circuit: int, session: SourceSession,
                 seconds: float) -> None:
        super().__init__("creation-flood", seconds)
        self.target, self.circuit, self.session = target, circuit, session
        self.statuses: Counter[int | str] = Counter()

    def loop(self) -> None:
        while self.running():
            try:
                status, _, _ = request(self.target, self.circuit, "POST", "/uploads/",
                                       self.session.headers(**{"Upload-Length": "1"}),
                                       timeout=10)
                self.statuses[status] += 1
            except (OSError, HTTPException) as exc:
                self.statuses[type(exc).__name__] += 1
                self.stopping.wait(0.2)


def attacker_uploads(direct_url: str, count: int, circuits: list[int],
                     seconds: float = 120) -> list[tuple[int, SourceSession, str]]:
    """`count` uploads made straight on the source interface (before the attack), from as few
    codenames as the desk allows, each given to one of `circuits` in turn."""
    made: list[tuple[int, SourceSession, str]] = []
    deadline = time.monotonic() + seconds
    circuit = itertools.cycle(circuits)
    while len(made) < count and time.monotonic() < deadline:
        session = open_source_session(direct_url)
        while len(made) < count:
            response = session.request("POST", "/uploads/",
                                       **{"Upload-Length": str(DRIP_LENGTH * 4)})
            if response.status_code != 201:
                break
            made.append((next(circuit), session, response.headers["Location"]))
    return made


@dataclass
class HonestResult:
    """What the honest source saw."""

    page_seconds: list[float] = field(default_factory=list)
    page_failures: list[str] = field(default_factory=list)
    upload_seconds: float | None = None
    upload_location: str | None = None
    # In order: ("ack", a 204's Upload-Offset) and ("resume", HEAD's offset before a retry).
    offsets: list[tuple[str, int]] = field(default_factory=list)
    upload_failures: list[str] = field(default_factory=list)

    @property
    def lost_acknowledged(self) -> bool:
        """Whether a resume ever found less than had been acknowledged before it."""
        best = 0
        for kind, offset in self.offsets:
            if kind == "resume" and offset < best:
                return True
            best = max(best, offset) if kind == "ack" else best
        return False


def honest_pages(target: Target, circuit: int, session: SourceSession, pages: int,
                 result: HonestResult, timeout: float, pause: float = 0.5,
                 give_up_after: int = 1000) -> None:
    """Load the submit page and its style sheet `pages` times, timing each; stop after
    `give_up_after` failures."""
    for _ in range(pages):
        if len(result.page_failures) >= give_up_after:
            return
        for path in ("/submit", "/static/desk.css"):
            start = time.monotonic()
            try:
                status, _, _ = request(target, circuit, "GET", path,
                                       {"Cookie": session.cookie}, timeout=timeout)
            except (OSError, HTTPException) as exc:
                result.page_failures.append(f"{path}: {type(exc).__name__}")
                continue
            if status != 200:
                result.page_failures.append(f"{path}: {status}")
                continue
            result.page_seconds.append(time.monotonic() - start)
        time.sleep(pause)


def honest_upload(target: Target, circuit: int, session: SourceSession, data: bytes,
                  chunk: int, result: HonestResult, timeout: float, tries: int = 20) -> None:
    """Upload `data` with tus in PATCHes of `chunk` bytes, resuming from HEAD after a failure
    as tus-js-client does, at most `tries` failures."""
    start = time.monotonic()
    headers = session.headers(**{"Upload-Length": str(len(data))})
    try:
        status, answer, _ = request(target, circuit, "POST", "/uploads/", headers,
                                    timeout=timeout)
    except (OSError, HTTPException) as exc:
        result.upload_failures.append(f"create: {type(exc).__name__}")
        return
    if status != 201:
        result.upload_failures.append(f"create: {status}")
        return
    location = result.upload_location = answer["location"]
    offset = 0
    while offset < len(data):
        body = data[offset:offset + chunk]
        try:
            status, answer, _ = request(
                target, circuit, "PATCH", location,
                session.headers(**{"Content-Type": OCTETS, "Upload-Offset": str(offset)}),
                body, timeout=timeout)
            if status != 204:
                raise HTTPException(f"PATCH answered {status}")
            offset = int(answer["upload-offset"])
            result.offsets.append(("ack", offset))
            continue
        except (OSError, HTTPException) as exc:
            result.upload_failures.append(f"PATCH at {offset}: {type(exc).__name__} {exc}")
        if len(result.upload_failures) >= tries:
            return
        time.sleep(1)
        with contextlib.suppress(OSError, HTTPException, KeyError, ValueError):
            status, answer, _ = request(target, circuit, "HEAD", location,
                                        session.headers(), timeout=timeout)
            if status == 200:
                offset = int(answer["upload-offset"])
                result.offsets.append(("resume", offset))
    result.upload_seconds = time.monotonic() - start

