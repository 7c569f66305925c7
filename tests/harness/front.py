"""The front (HAProxy, as `desk front-config` writes its configuration) on 127.0.0.1, and Tor
circuits played without tor: each stream opens with the PROXY protocol line tor's
`HiddenServiceExportCircuitID haproxy` sends, whose source address carries the circuit's id."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path

from tests.harness.desks import run_desk
from tests.harness.servers import StartFailed, free_port, listening

ONION_PORT = 80


def proxy_line(circuit: int) -> bytes:
    """The PROXY v1 line tor sends first on a stream of `circuit` (a 32-bit id): family TCP6,
    the id in the low 32 bits of an fc00::/7 source address, destination ::1, source port the
    id's low 16 bits, destination port the onion service's virtual port."""
    if not 0 <= circuit < 2**32:
        raise ValueError("a circuit id has 32 bits")
    return (f"PROXY TCP6 fc00:dead:beef:4dad::{circuit >> 16:x}:{circuit & 0xFFFF:x} ::1 "
            f"{circuit & 0xFFFF} {ONION_PORT}\r\n").encode("ascii")


def circuit_socket(port: int, circuit: int, timeout: float | None = 30) -> socket.socket:
    """A stream to the front on 127.0.0.1:`port` from `circuit`, its PROXY line sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(proxy_line(circuit))
    return sock


class CircuitConnection(HTTPConnection):
    """An HTTP connection to the front, as a stream of one Tor circuit."""

    def __init__(self, port: int, circuit: int, timeout: float = 30) -> None:
        super().__init__("127.0.0.1", port, timeout=timeout)
        self.circuit = circuit

    def connect(self) -> None:
        """Connect, then say which circuit this stream is on, as tor does."""
        super().connect()
        assert self.sock is not None
        self.sock.sendall(proxy_line(self.circuit))


@dataclass
class Front:
    """A running HAProxy with the desk's front configuration."""

    port: int
    config: Path
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        """The end of HAProxy's output."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        """Stop HAProxy and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


def haproxy() -> str | None:
    """HAProxy's path, if installed."""
    return shutil.which("haproxy") or next(
        (str(p) for p in (Path("/usr/sbin/haproxy"),) if p.exists()), None)


def write_front_config(data_dir: Path, out: Path, port: int, source_port: int) -> None:
    """`desk front-config` for a front on `port` before the source interface on
    `source_port`."""
    result = run_desk("front-config", "--out", str(out), "--port", str(port),
                      "--source-port", str(source_port), data_dir=data_dir)
    assert result.returncode == 0, result.stderr


@contextlib.contextmanager
def running_front(data_dir: Path, folder: Path, source_port: int, timeout: float = 30,
                  prefix: Sequence[str] = ()) -> Iterator[Front]:
    """HAProxy in the foreground with what `desk front-config` writes, before the source
    interface on `source_port`, run through `prefix` if given; stopped on leaving. Raises
    StartFailed if it exits or does not listen in time."""
    binary = haproxy()
    assert binary is not None, "haproxy is not installed"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "front.cfg"
    write_front_config(data_dir, config, port, source_port)
    log = folder / "front.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*prefix, binary, "-db", "-f", str(config)], stdout=out,
                                   stderr=subprocess.STDOUT)
    front = Front(port, config, process, log)
    try:
        deadline = time.monotonic() + timeout
        while not listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise StartFailed(f"haproxy did not start:\n{front.log_tail()}",
                                  process.poll())
            time.sleep(0.05)
        yield front
    finally:
        front.stop()
