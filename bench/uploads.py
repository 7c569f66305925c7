"""Uploads at the limits: form and tus throughput, worker memory at 1 and 4 GiB, the cost of a
resume, and many slow tus uploads while a journalist browses.

Run by hand, never as a test:

    .venv/bin/python -m bench.uploads [--size-mib 1024] [--big-mib 4096] [--runs 3]
        [--chunk-mib 64] [--clients 50] [--client-mib 20] [--client-rate 1000000]
        [--phases 1234] [--b-max-seconds 90] [--profile-dir DIR] [--no-profile]
        [--server-env NAME=VALUE ...] [--json FILE]

One throwaway desk (stock-gpg keypair, `desk init`, `desk journalist add`), `desk serve source`
and later `desk serve journalist` on loopback, and in one run:

1. throughput, interleaved round by round on one random file of --size-mib: A (`gpg --encrypt
   --compress-algo none < file`), B (`gzip -9 | gpg --encrypt`; on a prefix, scaled, if the
   whole file would take over 90 s), the no-JS multipart form POST, and a tus 1.0.0 upload in
   --chunk-mib PATCHes. Both desk clients send the file from disk in 1 MiB writes on one
   keep-alive connection; each upload gets a new source session (codename) first, not timed.
2. the gunicorn workers' memory: VmRSS sampled every 50 ms during each upload of phase 1 and
   during a form and a tus upload of --big-mib, against the idle worker's VmRSS, and VmHWM.
3. a tus upload of --size-mib cut mid-PATCH at ~50% (an orderly close, then again with a TCP
   reset), resumed from the offset HEAD reports: body bytes sent in all / file size.
4. --clients tus uploads of --client-mib at once (a source session each), each paced to
   --client-rate bytes/s by the client, while a logged-in journalist GETs the sources list and
   a source page in a loop: failures, journalist latency, wall time.

With --profile-dir, or when a throughput goal is missed (unless --no-profile), one form and one
tus upload run again under py-spy (idle stacks; GIL holders) and the raw stacks are summarised by
thread role.
--server-env passes extra variables to the source server (e.g. GLIBC_TUNABLES, or a scratch
PYTHONPATH to try a change without editing the tree). Every wait is bounded; everything
(servers, temp dir, gpg-agents) is removed at the end, also on failure or `kill`.
See bench/README.md and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import fcntl
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench import common
from bench.common import CHUNK, Monitor, Run, mbps, median, percentile, proc_stat
from tests.harness.data import MiB
from tests.harness.desks import CliJournalist, cli_add_journalist, cli_init_desk
from tests.harness.forms import StreamedForm
from tests.harness.gpg import Keypair
from tests.harness.http import SourceSession, open_source_session
from tests.harness.servers import Server, start_server

TUS = "1.0.0"
OCTETS = "application/offset+octet-stream"
PASSWORD = "bench-long-passphrase-for-alice"  # noqa: S105 - a throwaway desk
IO_TIMEOUT = 600  # seconds for any one socket operation of a big upload
SLOW_PIECE = 64 * 1024  # paced clients send this much at a time
GOALS = {"ratio_a": 0.8, "ratio_b": 5.0, "rss_mib": 64.0, "resume": 1.02, "p95_ms": 300.0}


# --------------------------------------------------------------------------- HTTP client

class Conn:
    """One keep-alive HTTP/1.1 connection on a raw socket, counting every byte it sends.

    Requests are written by hand (request line, headers, body) so that what went over the
    wire is known exactly, bodies can be paced or cut, and the socket can be dropped mid-body.
    """

    def __init__(self, port: int, timeout: float = IO_TIMEOUT) -> None:
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.head_bytes = 0
        self.body_bytes = 0
        self._method = "GET"

    def _socket(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        return self.sock

    def begin(self, method: str, path: str, headers: dict[str, str]) -> None:
        """Send a request's line and headers; the body follows with send()."""
        self._method = method
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._socket().sendall(head)
        self.head_bytes += len(head)

    def send(self, data: bytes | memoryview) -> None:
        assert self.sock is not None
        self.sock.sendall(data)
        self.body_bytes += len(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Read the answer to the request just sent (status, lower-case headers, body)."""
        assert self.sock is not None
        answer = http.client.HTTPResponse(self.sock, method=self._method)
        try:
            answer.begin()
            body = answer.read()
        finally:
            answer.close()
        headers = {k.lower(): v for k, v in answer.getheaders()}
        if answer.will_close:
            self.close()
        return answer.status, headers, body

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b""
                ) -> tuple[int, dict[str, str], bytes]:
        self.begin(method, path, {**headers, "Content-Length": str(len(body))}
                   if body or method in ("POST", "PATCH") else headers)
        if body:
            self.send(body)
        return self.response()

    def unsent(self) -> int:
        """Bytes in the socket's send queue that the peer has not acknowledged yet."""
        if self.sock is None:
            return 0
        queued = fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
        return int(struct.unpack("i", queued)[0])

    def abort(self, reset: bool) -> None:
        """Drop the connection mid-request: an orderly close, or a TCP reset."""
        if self.sock is not None and reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


class Body:
    """The bytes to upload: a file on disk (read 1 MiB at a time) or bytes in memory."""

    def __init__(self, path: Path | None = None, data: bytes | None = None) -> None:
        assert (path is None) != (data is None)
        self.path = path
        self.data = memoryview(data) if data is not None else None
        self.size = path.stat().st_size if path is not None else len(data or b"")

    @contextlib.contextmanager
    def pieces(self, offset: int, length: int, piece: int) -> Iterator[Iterator[memoryview]]:
        if self.data is not None:
            view = self.data
            yield (view[i:min(i + piece, offset + length)]
                   for i in range(offset, offset + length, piece))
            return
        assert self.path is not None
        buffer = bytearray(piece)
        view = memoryview(buffer)

        def read(handle: Any) -> Iterator[memoryview]:
            left = length
            while left:
                n = handle.readinto(view[:min(piece, left)])
                if not n:
                    raise RuntimeError(f"{self.path} ended early")
                left -= n
                yield view[:n]

        with self.path.open("rb") as handle:
            handle.seek(offset)
            yield read(handle)


def new_session(url: str) -> SourceSession:
    """A new source session (codename, cookie, the submit page's CSRF token)."""
    return open_source_session(url, timeout=60)


@dataclass
class Request:
    """One request of an upload, client side."""

    body: int               # body bytes sent
    send_s: float           # first header byte to last body byte handed to the kernel
    tail_s: float           # last body byte to the end of the response
    status: int
    offset: int | None = None  # Upload-Offset answered, for tus


def send_body(conn: Conn, body: Body, offset: int, length: int, rate: float | None,
              stop_after: int | None = None) -> int:
    """Send `length` bytes of `body` from `offset` (1 MiB writes, or paced 64 KiB ones); stop
    early after `stop_after` bytes. Returns the bytes sent."""
    piece = SLOW_PIECE if rate else CHUNK
    limit = length if stop_after is None else min(length, stop_after)
    sent = 0
    start = time.perf_counter()
    with body.pieces(offset, limit, piece) as pieces:
        for data in pieces:
            if rate:
                due = start + sent / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            conn.send(data)
            sent += len(data)
    return sent


def form_upload(conn: Conn, session: SourceSession, body: Body, sha256: str) -> Request:
    """The submit form's multipart POST with one file part; the page must show the SHA-256."""
    form = StreamedForm.build(session.token, "bench.bin", message=None,
                              file_type="application/octet-stream")
    t0 = time.perf_counter()
    conn.begin("POST", "/submit", {
        "Content-Type": form.content_type, "Content-Length": str(form.length(body.size)),
        "Cookie": session.cookie})
    conn.send(form.head)
    send_body(conn, body, 0, body.size, None)
    conn.send(form.tail)
    t1 = time.perf_counter()
    status, _, page = conn.response()
    t2 = time.perf_counter()
    if status != 200 or sha256.encode() not in page:
        raise RuntimeError(f"form upload: {status} {page[:300]!r}")
    return Request(body.size, t1 - t0, t2 - t1, status)


def tus_create(conn: Conn, session: SourceSession, length: int, filename: str = "bench.bin") -> str:
    meta = "filename " + base64.b64encode(filename.encode()).decode()
    status, headers, text = conn.request("POST", "/uploads/", session.headers(**{
        "Upload-Length": str(length), "Upload-Metadata": meta}))
    if status != 201:
        raise RuntimeError(f"tus creation: {status} {text[:300]!r}")
    return headers["location"]


def tus_head(conn: Conn, session: SourceSession, location: str) -> int:
    status, headers, _ = conn.request("HEAD", location, session.headers())
    if status != 200:
        raise RuntimeError(f"tus HEAD: {status}")
    return int(headers["upload-offset"])


def tus_patch(conn: Conn, session: SourceSession, location: str, body: Body, offset: int,
              length: int, rate: float | None = None, cut_after: int | None = None
              ) -> Request:
    """PATCH `length` bytes at `offset`. With `cut_after`, stop sending after that many body
    bytes and return at once (status 0); the caller then drops the connection."""
    t0 = time.perf_counter()
    conn.begin("PATCH", location, session.headers(**{
        "Content-Type": OCTETS, "Content-Length": str(length), "Upload-Offset": str(offset)}))
    sent = send_body(conn, body, offset, length, rate, cut_after)
    t1 = time.perf_counter()
    if cut_after is not None and sent < length:
        return Request(sent, t1 - t0, 0.0, 0)
    status, headers, text = conn.response()
    t2 = time.perf_counter()
    new = int(headers["upload-offset"]) if "upload-offset" in headers else None
    if status != 204:
        raise RuntimeError(f"tus PATCH at {offset}: {status} {text[:300]!r}")
    return Request(sent, t1 - t0, t2 - t1, status, new)


def tus_upload(conn: Conn, session: SourceSession, body: Body, chunk: int,
               rate: float | None = None) -> tuple[str, list[Request]]:
    """A whole tus upload: creation, then PATCHes of `chunk` bytes in order."""
    location = tus_create(conn, session, body.size)
    requests_: list[Request] = []
    offset = 0
    while offset < body.size:
        done = tus_patch(conn, session, location, body, offset,
                         min(chunk, body.size - offset), rate)
        requests_.append(done)
        if done.offset != offset + done.body:
            raise RuntimeError(f"tus PATCH at {offset}: offset {done.offset}, sent {done.body}")
        offset = done.offset
    return location, requests_


# --------------------------------------------------------------------------- the desk

@dataclass
class Desk:
    root: Path
    data: Path
    source: Server
    server_tmp: Path
    alice: CliJournalist
    journalist: Server | None = None

    @property
    def keypair(self) -> Keypair:
        return self.alice.keypair

    @property
    def gnupg_home(self) -> Path:
        return self.data / "gnupg"

    @property
    def objects(self) -> Path:
        return self.data / "store" / "objects"

    @property
    def uploads(self) -> Path:
        return self.data / "store" / "uploads"

    def upload_rows(self) -> int:
        db = sqlite3.connect(f"file:{self.data / 'desk.db'}?mode=ro", uri=True, timeout=30)
        try:
            return int(db.execute("SELECT count(*) FROM uploads").fetchone()[0])
        finally:
            db.close()

    def stop(self) -> None:
        try:
            if self.journalist is not None:
                self.journalist.stop()
        finally:
            self.source.stop()


def start_desk(root: Path, max_upload: int, server_env: dict[str, str]) -> Desk:
    data = root / "desk-data"
    cli_init_desk(data)
    alice = cli_add_journalist(data, "alice", root / "keys" / "alice", "Alice",
                                  password=PASSWORD, admin=True)
    server_tmp = root / "server-tmp"
    server_tmp.mkdir()
    source = start_server(data, "source", log=root / "source.log", workers=2, env={
        "DESK_MAX_UPLOAD_BYTES": str(max_upload), "TMPDIR": str(server_tmp), **server_env})
    return Desk(root, data, source, server_tmp, alice)


def new_objects(desk: Desk, known: set[str]) -> list[Path]:
    new = sorted((p for p in desk.objects.iterdir() if p.name not in known),
                 key=lambda p: p.stat().st_mtime)
    known.update(p.name for p in new)
    return new


def verify_object(desk: Desk, obj: Path, size: int, sha256: str, parts: int) -> str:
    """Decrypt every part in order with stock gpg and the journalist's key alone; the
    plaintext must be the file, the metadata record must list `parts` parts of the right
    sizes. Returns gpg's DECRYPTION_INFO of the first part."""
    record = json.loads(desk.keypair.decrypt(obj / "meta.gpg"))
    names = [p["name"] for p in record["parts"]]
    assert len(names) == parts, (len(names), parts)
    assert record["size"] == size, record["size"]
    whole = hashlib.sha256()
    total = 0
    info = ""
    for i, name in enumerate(names):
        digest, n, cipher = decrypt_stream(desk.keypair, obj / name, whole)
        assert n == record["parts"][i]["size"], (name, n)
        assert digest == record["parts"][i]["sha256"], name
        total += n
        info = info or cipher
    assert (whole.hexdigest(), total) == (sha256, size), "the object does not decrypt to the file"
    if parts == 1:
        assert record["sha256"] == sha256, record["sha256"]
    return info


def decrypt_stream(keypair: Keypair, path: Path, whole: Any) -> tuple[str, int, str]:
    """common.decrypt_sha256, also feeding the plaintext into `whole` (a running SHA-256)."""
    process = subprocess.Popen(
        ["gpg", "--homedir", str(keypair.home), "--batch", "--status-fd", "2", "--decrypt",
         str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    stderr = process.stderr
    assert stderr is not None
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(stderr.read()))
    reader.start()
    digest, size = hashlib.sha256(), 0
    while chunk := process.stdout.read(CHUNK):
        digest.update(chunk)
        whole.update(chunk)
        size += len(chunk)
    reader.join(timeout=120)
    if process.wait(timeout=120) != 0:
        raise RuntimeError(f"gpg --decrypt {path}: {b''.join(err)[-500:]!r}")
    info = next((line for line in b"".join(err).decode(errors="replace").splitlines()
                 if "DECRYPTION_INFO" in line), "").replace("[GNUPG:] ", "")
    return digest.hexdigest(), size, info


# --------------------------------------------------------------------------- measuring

@dataclass
class Measured:
    """One upload through the desk, with what the server processes used meanwhile."""

    method: str
    size: int
    seconds: float
    requests: list[Request]
    cpu: dict[str, float]
    rss: dict[str, list[float]]   # worker pid -> [VmRSS MiB at start, largest sampled]
    served_by: int                # the worker that used the most CPU
    gpg_hwm_mib: float            # largest VmHWM of a gpg child seen
    gpg_at_once: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mbps(self) -> float:
        return mbps(self.size, self.seconds)


def measure(desk: Desk, monitor: Monitor, method: str, size: int,
            upload: Callable[[], list[Request]]) -> Measured:
    workers = desk.source.worker_pids()
    before = {pid: proc_stat(pid) for pid in workers}
    client0 = time.process_time()
    with monitor.lock:
        gpg_known = set(monitor.gpg_hwm)
    monitor.begin_window()
    t0 = time.perf_counter()
    done = upload()
    seconds = time.perf_counter() - t0
    window = monitor.end_window()
    client = time.process_time() - client0
    after = {pid: proc_stat(pid) for pid in workers if Path(f"/proc/{pid}").exists()}
    used = {pid: [after[pid][i] - before[pid][i] for i in range(4)] for pid in after}
    served_by = max(used, key=lambda pid: used[pid][0] + used[pid][1])
    total = [sum(u[i] for u in used.values()) for i in range(4)]
    with monitor.lock:
        gpg_new = [kib for pid, kib in monitor.gpg_hwm.items() if pid not in gpg_known]
        at_once = monitor.gpg_window
    return Measured(
        method, size, seconds, done,
        {"client": client, "worker": total[0] + total[1], "worker_user": total[0],
         "worker_sys": total[1], "gpg": total[2] + total[3], "gpg_user": total[2],
         "gpg_sys": total[3]},
        {str(pid): [start / 1024, peak / 1024] for pid, (start, peak) in window.items()
         if pid != desk.source.arbiter},
        served_by, max(gpg_new, default=0) / 1024, at_once)


def idle_rss(server: Server) -> dict[int, float]:
    """VmRSS (MiB) of each worker right now."""
    return {pid: (common.status_kib(pid, "VmRSS") or 0) / 1024 for pid in server.worker_pids()}


def hwm(server: Server) -> dict[int, float]:
    return {pid: (common.status_kib(pid, "VmHWM") or 0) / 1024 for pid in server.worker_pids()}


# --------------------------------------------------------------------------- phases

def phase_throughput(args: argparse.Namespace, desk: Desk, monitor: Monitor, body: Body,
                     sha256: str, root: Path, known: set[str]) -> dict[str, Any]:
    size, chunk = body.size, args.chunk_mib * MiB
    assert body.path is not None
    b_file, b_size, probe, projected = common.choose_b_input(
        desk.gnupg_home, desk.keypair.fingerprint, body.path, size, root, args.b_max_seconds)
    print(f"baseline B probe: {min(size, 32 * MiB)} bytes in {probe.seconds:.2f} s, projected "
          f"{projected:.1f} s for the whole file; running B on {b_size} bytes"
          + ("" if b_size == size else " and scaling its throughput to the whole file"))
    out = root / "out.gpg"
    runs: dict[str, list[Any]] = {"A": [], "B": [], "form": [], "tus": []}
    verified: dict[str, str] = {}
    for i in range(args.runs):
        run = common.run_baseline_a(desk.gnupg_home, desk.keypair.fingerprint, body.path, out)
        runs["A"].append(run)
        if i == 0:
            got, n, info = common.decrypt_sha256(desk.keypair, out)
            assert (got, n) == (sha256, size), "A does not decrypt to the file"
            verified["A"] = info
        out.unlink()
        runs["B"].append(common.run_baseline_b(desk.gnupg_home, desk.keypair.fingerprint,
                                               b_file, out))
        out.unlink()

        session = new_session(desk.source.url)
        conn = Conn(desk.source.port)
        try:
            form = measure(desk, monitor, "form", size,
                           lambda: [form_upload(conn, session, body, sha256)])  # noqa: B023
        finally:
            conn.close()
        runs["form"].append(form)
        (obj,) = new_objects(desk, known)
        form.extra["ciphertext"] = sum(p.stat().st_size for p in obj.iterdir())
        if i == 0:
            verified["form"] = verify_object(desk, obj, size, sha256, 1)
        shutil.rmtree(obj)

        session = new_session(desk.source.url)
        conn = Conn(desk.source.port)
        try:
            tus = measure(desk, monitor, "tus", size,
                          lambda: tus_upload(conn, session, body, chunk)[1])  # noqa: B023
            tus.extra["head_bytes"] = conn.head_bytes
        finally:
            conn.close()
        runs["tus"].append(tus)
        (obj,) = new_objects(desk, known)
        tus.extra["ciphertext"] = sum(p.stat().st_size for p in obj.iterdir())
        if i == 0:
            verified["tus"] = verify_object(desk, obj, size, sha256, math.ceil(size / chunk))
        shutil.rmtree(obj)
        print(f"round {i + 1}: A {run.seconds:6.2f} s  B {runs['B'][-1].seconds:6.2f} s  "
              f"form {form.seconds:6.2f} s  tus {tus.seconds:6.2f} s", flush=True)
    print(f"verified: every desk object decrypts with stock gpg to the file ({verified})")

    rate = {"A": mbps(size, median([r.seconds for r in runs["A"]])),
            "B": mbps(b_size, median([r.seconds for r in runs["B"]])),
            "form": mbps(size, median([r.seconds for r in runs["form"]])),
            "tus": mbps(size, median([r.seconds for r in runs["tus"]]))}
    a_sync = mbps(size, median([r.seconds + r.extra["fsync"] for r in runs["A"]]))
    return {"runs": runs, "rate": rate, "a_sync": a_sync, "b_size": b_size,
            "b_projected": projected, "verified": verified}


def report_throughput(size: int, t: dict[str, Any]) -> None:
    runs, rate = t["runs"], t["rate"]
    sizes = {"A": size, "B": t["b_size"], "form": size, "tus": size}
    print("\n| method | bytes | median s | median MB/s | runs (s) | CPU s (medians) |")
    print("|---|---|---|---|---|---|")
    for name, rs in runs.items():
        cpu = {k: median([r.cpu[k] for r in rs]) for k in rs[0].cpu}
        print(f"| {name} | {sizes[name]} | {median([r.seconds for r in rs]):.2f} | "
              f"{rate[name]:.0f} | {', '.join(f'{r.seconds:.2f}' for r in rs)} | "
              + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()) + " |")
    fsync = median([r.extra["fsync"] for r in runs["A"]])
    print(f"\nA's fsync after gpg exits: median {fsync:.2f} s (the desk fsyncs, plain gpg does "
          f"not); A + fsync {t['a_sync']:.0f} MB/s")
    print("| ratio | form | tus | goal |")
    print("|---|---|---|---|")
    print(f"| / A | {rate['form'] / rate['A']:.2f} | {rate['tus'] / rate['A']:.2f} | "
          f">= {GOALS['ratio_a']} |")
    print(f"| / (A + fsync) | {rate['form'] / t['a_sync']:.2f} | "
          f"{rate['tus'] / t['a_sync']:.2f} | |")
    print(f"| / B | {rate['form'] / rate['B']:.2f} | {rate['tus'] / rate['B']:.2f} | "
          f">= {GOALS['ratio_b']} |")
    for name in ("form", "tus"):
        for i, r in enumerate(runs[name]):
            sends = sum(q.send_s for q in r.requests)
            tails = [q.tail_s for q in r.requests]
            print(f"{name} run {i + 1}: {len(r.requests)} request(s); sending {sends:.2f} s, "
                  f"waiting for answers {sum(tails):.2f} s (last {tails[-1]:.2f} s, others "
                  f"median {median(tails[:-1]) if len(tails) > 1 else 0:.3f} s); served by "
                  f"worker {r.served_by}: VmRSS {r.rss[str(r.served_by)][0]:.1f} MiB at start, "
                  f"{r.rss[str(r.served_by)][1]:.1f} MiB largest sample; gpg processes "
                  f"at once {r.gpg_at_once}, largest gpg VmHWM {r.gpg_hwm_mib:.1f} MiB")


def phase_memory(args: argparse.Namespace, desk: Desk, monitor: Monitor, root: Path,
                 known: set[str]) -> dict[str, Any]:
    size, chunk = args.big_mib * MiB, args.chunk_mib * MiB
    big = root / "big.bin"
    t0 = time.perf_counter()
    sha256 = common.write_random(big, size)
    print(f"\nwrote {size} random bytes in {time.perf_counter() - t0:.1f} s for the memory "
          "phase", flush=True)
    body = Body(big)
    out: dict[str, Any] = {}
    try:
        for method in ("form", "tus"):
            session = new_session(desk.source.url)
            conn = Conn(desk.source.port)
            try:
                if method == "form":
                    run = measure(desk, monitor, "form", size,
                                  lambda: [form_upload(conn, session, body, sha256)])  # noqa: B023
                else:
                    run = measure(desk, monitor, "tus", size,
                                  lambda: tus_upload(conn, session, body, chunk)[1])  # noqa: B023
            finally:
                conn.close()
            for obj in new_objects(desk, known):
                shutil.rmtree(obj)
            out[method] = run
            print(f"{method} {size} bytes: {run.seconds:.2f} s ({run.mbps:.0f} MB/s)", flush=True)
    finally:
        big.unlink(missing_ok=True)
    return out


def phase_resume(args: argparse.Namespace, desk: Desk, body: Body, sha256: str,
                 known: set[str], reset: bool) -> dict[str, Any]:
    """A tus upload cut mid-PATCH at ~50%, resumed from the offset HEAD reports.

    The byte count is what the client's connections handed to the kernel (request heads apart):
    the PATCH bodies before the cut, the cut one up to the cut, and everything after, refused
    attempts included."""
    size, chunk = body.size, args.chunk_mib * MiB
    half = size // 2
    # Cut inside a PATCH: the one that holds byte size/2, halfway through it if size/2 falls
    # on a PATCH boundary.
    cut = half + chunk // 2 if half % chunk == 0 else half
    session = new_session(desk.source.url)
    first = Conn(desk.source.port)
    t0 = time.perf_counter()
    location = tus_create(first, session, size)
    offset = 0
    whole_patches = 0
    while True:
        length = min(chunk, size - offset)
        if offset + length > cut:
            tus_patch(first, session, location, body, offset, length, cut_after=cut - offset)
            unsent = first.unsent()
            first.abort(reset)
            break
        done = tus_patch(first, session, location, body, offset, length)
        whole_patches += 1
        offset = done.offset or 0
    acknowledged = offset  # what the server had confirmed before the cut
    t_cut = time.perf_counter()
    heads: list[tuple[float, int]] = []
    second = Conn(desk.source.port)
    # A careful client: HEAD every 50 ms until the offset moves past what was acknowledged
    # (the server has finished the cut PATCH's part), or has not moved for 5 s.
    while True:
        heads.append((time.perf_counter() - t_cut, tus_head(second, session, location)))
        if heads[-1][1] > acknowledged or heads[-1][0] > 5:
            break
        time.sleep(0.05)
    resume_at = offset = heads[-1][1]
    refused = 0
    resumed_patches = 0
    while offset < size:
        try:
            done = tus_patch(second, session, location, body, offset, min(chunk, size - offset))
        except (RuntimeError, OSError) as exc:  # e.g. 423 while the cut part is finished
            if refused >= 20:
                raise
            refused += 1
            print(f"  resume PATCH at {offset} refused ({exc}); HEAD again")
            second.close()
            time.sleep(0.2)
            offset = tus_head(second, session, location)
            continue
        resumed_patches += 1
        offset = done.offset or 0
    seconds = time.perf_counter() - t0
    second.close()
    (obj,) = new_objects(desk, known)
    kept = resume_at - acknowledged
    info = verify_object(desk, obj, size, sha256,
                         whole_patches + (1 if kept else 0) + resumed_patches)
    shutil.rmtree(obj)
    sent = first.body_bytes + second.body_bytes
    result = {
        "mode": "reset" if reset else "close", "cut_at": cut, "acknowledged": acknowledged,
        "sent_before_cut": first.body_bytes, "unsent_queue_at_cut": unsent,
        "first_head": heads[0], "heads": len(heads), "settled_after_s": heads[-1][0],
        "resumed_at": resume_at, "kept_of_cut_patch": kept, "sent_after": second.body_bytes,
        "refused_patches": refused, "head_bytes": first.head_bytes + second.head_bytes,
        "ratio": sent / size, "seconds": seconds, "decrypts": info,
    }
    print(f"resume ({result['mode']}): cut after {cut} bytes ({cut / size:.1%}); the first "
          f"HEAD, {heads[0][0] * 1000:.0f} ms after the cut, said {heads[0][1]}; settled at "
          f"{resume_at} after {heads[-1][0] * 1000:.0f} ms ({len(heads)} HEADs); kept {kept} "
          f"of the {cut - acknowledged} bytes sent in the cut PATCH (client send queue at the "
          f"cut: {unsent} bytes); {refused} refused PATCHes; body bytes sent in all {sent}: "
          f"{sent / size:.4f} of the file (request heads {result['head_bytes']} bytes); "
          f"{seconds:.1f} s", flush=True)
    return result


@dataclass
class Slow:
    """One of the paced concurrent uploads."""

    index: int
    started: float = 0.0
    finished: float = 0.0
    error: str | None = None
    requests: list[Request] = field(default_factory=list)


def phase_concurrent(args: argparse.Namespace, desk: Desk, monitor: Monitor,
                     known: set[str]) -> dict[str, Any]:
    clients, size, rate = args.clients, args.client_mib * MiB, args.client_rate
    chunk = args.chunk_mib * MiB
    desk.journalist = newsroom = start_server(desk.data, "journalist",
                                              log=desk.root / "journalist.log", workers=2)
    t0 = time.perf_counter()
    sessions = [new_session(desk.source.url) for _ in range(clients)]
    setup_s = time.perf_counter() - t0
    print(f"\n{clients} source sessions (codenames) made one after another in {setup_s:.1f} s",
          flush=True)
    journalist = common.log_in(desk.journalist.url, "alice", PASSWORD,
                               desk.alice.totp_secret or b"")
    listing = journalist.get(desk.journalist.url + "/", timeout=60)
    assert listing.status_code == 200, listing.status_code
    ids = re.findall(r'href="/sources/([0-9a-f]{32})"', listing.text)
    if not ids:  # phase 4 alone: give the list a source with one item
        conn = Conn(desk.source.port)
        try:
            tus_upload(conn, new_session(desk.source.url), Body(data=os.urandom(MiB)), chunk)
        finally:
            conn.close()
        known.update(p.name for p in desk.objects.iterdir())
        listing = journalist.get(desk.journalist.url + "/", timeout=60)
        ids = re.findall(r'href="/sources/([0-9a-f]{32})"', listing.text)
    assert ids, "the sources list links no source"
    pages = ["/", f"/sources/{ids[0]}"]
    data = Body(data=os.urandom(size))
    expected_s = size / rate
    deadline_s = expected_s * 4 + 120

    def browse(stop: threading.Event, until: float, limit: int
               ) -> list[tuple[float, str, float, int]]:
        samples: list[tuple[float, str, float, int]] = []
        i = 0
        while not stop.is_set() and time.perf_counter() < until and len(samples) < limit:
            page = pages[i % len(pages)]
            i += 1
            q0 = time.perf_counter()
            try:
                response = journalist.get(newsroom.url + page, timeout=30,
                                          allow_redirects=False)
                status = response.status_code
            except requests.RequestException:
                status = -1
            samples.append((q0 - t_start, page, (time.perf_counter() - q0) * 1000, status))
            if args.journalist_pause:
                time.sleep(args.journalist_pause)
        return samples

    # The journalist alone first: the same loop against an idle source side.
    t_start = time.perf_counter()
    idle = browse(threading.Event(), time.perf_counter() + args.idle_seconds, 100_000)

    slows = [Slow(i) for i in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def upload(slow: Slow) -> None:
        conn = Conn(desk.source.port, timeout=120)
        try:
            barrier.wait(timeout=60)
            slow.started = time.perf_counter()
            slow.requests = tus_upload(conn, sessions[slow.index], data, chunk, rate)[1]
        except Exception as exc:  # counted as a failure, reported below
            slow.error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            slow.finished = time.perf_counter()
            conn.close()

    threads = [threading.Thread(target=upload, args=(s,), daemon=True) for s in slows]
    for thread in threads:
        thread.start()
    stop = threading.Event()
    samples: list[tuple[float, str, float, int]] = []
    browser = threading.Thread(target=lambda: samples.extend(
        browse(stop, time.perf_counter() + deadline_s, 100_000)), daemon=True)
    offset = desk.source.log.stat().st_size
    joffset = desk.journalist.log.stat().st_size
    workers = desk.source.worker_pids()
    cpu0 = {pid: proc_stat(pid) for pid in workers}
    jworkers = desk.journalist.worker_pids()
    jcpu0 = sum(common.cpu_seconds(p) for p in jworkers)
    monitor.begin_window()
    barrier.wait(timeout=60)
    t_start = time.perf_counter()
    browser.start()
    for thread in threads:
        thread.join(timeout=max(1.0, t_start + deadline_s - time.perf_counter()))
    wall = time.perf_counter() - t_start
    stop.set()
    browser.join(timeout=60)
    window = monitor.end_window()
    gpg_at_once = monitor.gpg_window
    cpu1 = {pid: proc_stat(pid) for pid in workers if Path(f"/proc/{pid}").exists()}
    jcpu = sum(common.cpu_seconds(p) for p in jworkers) - jcpu0
    hung = [s.index for s, t in zip(slows, threads, strict=True) if t.is_alive()]

    failures = [(s.index, s.error) for s in slows if s.error] + [(i, "still running") for i in hung]
    objects = new_objects(desk, known)
    time.sleep(0.5)
    leftovers = {"upload rows": desk.upload_rows(),
                 "upload folders": len(list(desk.uploads.iterdir())) if desk.uploads.exists()
                 else 0}
    for obj in objects:
        shutil.rmtree(obj, ignore_errors=True)
    errors = log_errors(desk.source.log, offset) + log_errors(desk.journalist.log, joffset)
    durations = [s.finished - s.started for s in slows if not s.error and s.started]
    ok = [ms for _, _, ms, status in samples if status == 200]
    by_page = {p: [ms for _, page, ms, status in samples if page == p and status == 200]
               for p in pages}
    bad = collections.Counter(status for _, _, _, status in samples if status != 200)
    worker_cpu = sum(cpu1[p][0] + cpu1[p][1] - cpu0[p][0] - cpu0[p][1] for p in cpu1)
    gpg_cpu = sum(cpu1[p][2] + cpu1[p][3] - cpu0[p][2] - cpu0[p][3] for p in cpu1)
    result = {
        "clients": clients, "size": size, "rate": rate, "setup_s": setup_s, "wall_s": wall,
        "failures": failures, "objects": len(objects), "leftovers": leftovers,
        "server_errors": errors,
        "upload_s": {"median": median(durations), "min": min(durations),
                     "max": max(durations)} if durations else {},
        "expected_s": expected_s,
        "journalist": {"requests": len(samples), "ok": len(ok), "bad": dict(bad),
                       **({"median": median(ok), "p95": percentile(ok, 95), "max": max(ok)}
                          if ok else {}),
                       "pages": {p: {"n": len(v), "median": median(v),
                                     "p95": percentile(v, 95), "max": max(v)}
                                 for p, v in by_page.items() if v},
                       "worker_cpu_s": jcpu},
        "journalist_idle": summarise_latency(idle),
        "source_workers": {"cpu_s": worker_cpu, "gpg_cpu_s": gpg_cpu,
                           "rss_mib": {str(pid): [a / 1024, b / 1024]
                                       for pid, (a, b) in window.items()
                                       if pid != desk.source.arbiter},
                           "gpg_at_once": gpg_at_once},
        "samples": samples,
    }
    journalist.close()
    return result


def summarise_latency(samples: list[tuple[float, str, float, int]]) -> dict[str, Any]:
    ok = [ms for _, _, ms, status in samples if status == 200]
    return {"requests": len(samples), "ok": len(ok),
            **({"median": median(ok), "p95": percentile(ok, 95), "max": max(ok)} if ok else {})}


def log_errors(log: Path, since: int) -> list[str]:
    """Tracebacks and error lines in a server log after `since` bytes: each distinct one once,
    with how often it occurred (file paths shortened)."""
    text = log.read_bytes()[since:].decode(errors="replace")
    blocks: collections.Counter[str] = collections.Counter()
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("Traceback"):
            current = [line]
        elif current is not None:
            current.append(re.sub(r'File "/[^"]*/(site-packages|main)/', 'File "', line))
            if line and not line.startswith((" ", "\t", "Traceback", "During", "The above")):
                blocks["\n".join(current)] += 1
                current = None
        elif "[ERROR]" in line or "[CRITICAL]" in line or "WORKER TIMEOUT" in line:
            blocks[re.sub(r"^\[[^]]*\] ", "", line)[:300]] += 1
    return [f"{n} x {block}" for block, n in blocks.most_common(20)]


def report_concurrent(c: dict[str, Any]) -> None:
    j = c["journalist"]
    idle = c["journalist_idle"]
    kinds = collections.Counter(str(e)[:60] for _, e in c["failures"]).most_common(4)
    print(f"{c['clients']} tus uploads of {c['size']} bytes at {c['rate'] / 1e6:.2f} MB/s each "
          f"(alone {c['expected_s']:.1f} s): failures {len(c['failures'])} {kinds}; wall "
          f"{c['wall_s']:.1f} s; per upload "
          + (f"median {c['upload_s']['median']:.1f} s, {c['upload_s']['min']:.1f} to "
             f"{c['upload_s']['max']:.1f} s" if c["upload_s"] else "none finished")
          + f"; {c['objects']} objects published; leftovers {c['leftovers']}")
    print(f"journalist during the uploads: {j['requests']} GETs, {j['ok']} answered 200, other "
          f"{j['bad']}" + (f"; median {j['median']:.1f} ms, p95 {j['p95']:.1f} ms, max "
                           f"{j['max']:.1f} ms" if j["ok"] else ""))
    for page, s in j["pages"].items():
        print(f"  {page}: {s['n']} GETs, median {s['median']:.1f} ms, p95 {s['p95']:.1f} ms, "
              f"max {s['max']:.1f} ms")
    if idle.get("ok"):
        print(f"journalist alone before the uploads: {idle['requests']} GETs, median "
              f"{idle['median']:.1f} ms, p95 {idle['p95']:.1f} ms, max {idle['max']:.1f} ms")
    w = c["source_workers"]
    print(f"source workers: CPU {w['cpu_s']:.1f} s, their gpg children {w['gpg_cpu_s']:.1f} s, "
          f"gpg processes at once up to {w['gpg_at_once']}; VmRSS MiB [start, largest] "
          f"{ {k: [round(a, 1), round(b, 1)] for k, (a, b) in w['rss_mib'].items()} }; "
          f"journalist workers CPU {j['worker_cpu_s']:.1f} s")
    if c["server_errors"]:
        print("server log errors (distinct tracebacks, most frequent first):")
        for block in c["server_errors"][:6]:
            print("  " + block.replace("\n", "\n  "))


# --------------------------------------------------------------------------- profiling

def _role(_label: str, frames: list[str]) -> str:
    """A sample's thread role, from its frames: tus starts new python-gnupg threads for every
    PATCH, thread ids are reused, and py-spy's thread names go stale."""
    if any(f.startswith("_copy_data (") for f in frames):
        return "copy thread (python-gnupg _copy_data: body -> gpg stdin)"
    if any(f.startswith(("_read_response (", "_read_data (")) for f in frames):
        return "gpg stdout/stderr readers"
    if any(f.startswith("submit (desk/web/source/views.py") for f in frames):
        return "request thread (view submit)"
    if any(f.startswith("patch (desk/web/source/tus_views.py") for f in frames):
        return "request thread (tus patch)"
    return "other (idle pools, arbiter, other requests)"


def profile(desk: Desk, monitor: Monitor, body: Body, sha256: str, chunk: int,
            out_dir: Path, known: set[str]) -> dict[str, str]:
    """One form and one tus upload under py-spy per mode; summaries by thread role."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = {}
    modes = {"all": ["--threads", "--idle", "--nonblocking"],
             "gil": ["--threads", "--gil", "--nonblocking"]}
    for method in ("form", "tus"):
        for mode, flags in modes.items():
            path = out_dir / f"pyspy-{method}-{mode}.txt"
            session = new_session(desk.source.url)
            conn = Conn(desk.source.port)
            try:
                with common.pyspy(desk.source.arbiter, path, flags):
                    if method == "form":
                        run = measure(desk, monitor, method, body.size,
                                      lambda: [form_upload(conn, session, body, sha256)])  # noqa: B023
                    else:
                        run = measure(desk, monitor, method, body.size,
                                      lambda: tus_upload(conn, session, body, chunk)[1])  # noqa: B023
            finally:
                conn.close()
            for obj in new_objects(desk, known):
                shutil.rmtree(obj)
            text = common.summarise_profile(path, _role)
            summaries[f"{method}-{mode}"] = text
            print(f"\npy-spy {mode}, {method} upload {run.seconds:.2f} s "
                  f"({run.mbps:.0f} MB/s) under profiling:\n{text}", flush=True)
    return summaries


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="phases 1-3 file size")
    parser.add_argument("--big-mib", type=int, default=4096, help="phase 2's large upload")
    parser.add_argument("--runs", type=int, default=3, help="rounds of phase 1")
    parser.add_argument("--chunk-mib", type=int, default=64, help="tus PATCH size")
    parser.add_argument("--clients", type=int, default=50, help="phase 4 concurrent uploads")
    parser.add_argument("--client-mib", type=int, default=20, help="phase 4 file size")
    parser.add_argument("--client-rate", type=float, default=1e6,
                        help="phase 4 pace per client, bytes/s")
    parser.add_argument("--journalist-pause", type=float, default=0.0,
                        help="seconds between the journalist's GETs in phase 4")
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="the journalist's loop alone before phase 4's uploads")
    parser.add_argument("--phases", default="1234", help="which phases to run (e.g. 14)")
    parser.add_argument("--b-max-seconds", type=float, default=common.B_MAX_SECONDS,
                        help="B runs on a prefix (its throughput scaled) if the whole file "
                             "would take longer")
    parser.add_argument("--profile-dir", type=Path,
                        help="profile a form and a tus upload with py-spy into this dir")
    parser.add_argument("--no-profile", action="store_true",
                        help="do not profile when a throughput goal is missed")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the source server")
    parser.add_argument("--json", type=Path, help="write all measurements here")
    args = parser.parse_args()
    server_env = dict(item.split("=", 1) for item in args.server_env)
    common.exit_on_sigterm()
    size = args.size_mib * MiB
    info = common.machine(tools=("gpg", "gzip"), packages=(
        "gunicorn", "werkzeug", "flask", "python-gnupg", "sqlalchemy", "requests"))
    print("machine:", json.dumps(info, indent=1))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    need = size * 2 + (args.big_mib * MiB * 2 if "2" in args.phases else 0) + 2 * 1024 * MiB
    free = shutil.disk_usage(Path(os.environ.get("TMPDIR", "/tmp"))).free
    print(f"disk: {free / 2**30:.1f} GiB free in the temp dir, about {need / 2**30:.1f} GiB "
          f"needed", flush=True)
    if free < need:
        print("not enough free disk space")
        return 1
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    with common.workspace("desk-bench-uploads-") as root:
        file = root / "random.bin"
        t0 = time.perf_counter()
        sha256 = common.write_random(file, size)
        print(f"wrote {size} random bytes in {time.perf_counter() - t0:.1f} s; sha256 {sha256}")
        max_upload = max(size, args.big_mib * MiB) + 64 * MiB
        desk = start_desk(root, max_upload, server_env)
        monitor = Monitor(desk.source.arbiter)
        try:
            return bench(args, info, root, desk, monitor, Body(file), sha256)
        except BaseException:
            print("---- source server log ----\n" + desk.source.log_tail())
            if desk.journalist is not None:
                print("---- journalist server log ----\n" + desk.journalist.log_tail())
            raise
        finally:
            try:
                monitor.stop()
            finally:
                desk.stop()


def bench(args: argparse.Namespace, info: dict[str, str], root: Path, desk: Desk,
          monitor: Monitor, body: Body, sha256: str) -> int:
    size = body.size
    # Warm-up: the landing page in each worker (templates, first imports), no codename yet.
    for _ in range(4):
        requests.get(desk.source.url + "/", timeout=60)
    monitor.sample()
    idle = idle_rss(desk.source)
    hwm_idle = hwm(desk.source)
    arbiter0 = (common.status_kib(desk.source.arbiter, "VmRSS") or 0) / 1024
    print(f"idle workers (after {4} GETs of the landing page, no codename yet): VmRSS "
          f"{ {p: round(v, 1) for p, v in idle.items()} } MiB, VmHWM "
          f"{ {p: round(v, 1) for p, v in hwm_idle.items()} } MiB; arbiter VmRSS "
          f"{arbiter0:.1f} MiB")
    monitor.start()
    known = {p.name for p in desk.objects.iterdir()}
    results: dict[str, Any] = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                               "size": size, "sha256": sha256, "idle_rss_mib": idle,
                               "idle_hwm_mib": hwm_idle}
    goals_missed: list[str] = []

    if "1" in args.phases:
        print(f"\n== 1. throughput: {args.runs} interleaved rounds on {size} bytes, tus in "
              f"{args.chunk_mib} MiB PATCHes", flush=True)
        t = phase_throughput(args, desk, monitor, body, sha256, root, known)
        report_throughput(size, t)
        results["throughput"] = t
        rate = t["rate"]
        for name in ("form", "tus"):
            if rate[name] / rate["A"] < GOALS["ratio_a"]:
                goals_missed.append(f"{name} / A")
            if rate[name] / rate["B"] < GOALS["ratio_b"]:
                goals_missed.append(f"{name} / B")

    memory: dict[str, Measured] = {}
    if "2" in args.phases:
        print(f"\n== 2. worker memory: a form and a tus upload of {args.big_mib * MiB} bytes",
              flush=True)
        memory = phase_memory(args, desk, monitor, root, known)
        results["memory"] = memory
    print("\n| upload | worker | idle VmRSS MiB | VmRSS at start | largest VmRSS sampled | "
          "largest - idle | gpg VmHWM |")
    print("|---|---|---|---|---|---|---|")
    rows: list[tuple[str, Measured]] = []
    if "throughput" in results:
        rows += [(f"{r.method} {size >> 20} MiB run {i + 1}", r)
                 for name in ("form", "tus")
                 for i, r in enumerate(results["throughput"]["runs"][name])]
    rows += [(f"{r.method} {r.size >> 20} MiB", r) for r in memory.values()]
    for label, r in rows:
        start, peak = r.rss[str(r.served_by)]
        growth = peak - idle.get(r.served_by, start)
        if growth > GOALS["rss_mib"]:
            goals_missed.append(f"RSS {label}")
        print(f"| {label} | {r.served_by} | {idle.get(r.served_by, 0):.1f} | {start:.1f} | "
              f"{peak:.1f} | {growth:+.1f} | {r.gpg_hwm_mib:.1f} |")
    monitor.sample()
    print(f"VmHWM now: { {p: round(v, 1) for p, v in hwm(desk.source).items()} } MiB (idle: "
          f"{ {p: round(v, 1) for p, v in hwm_idle.items()} }); arbiter VmHWM "
          f"{(common.status_kib(desk.source.arbiter, 'VmHWM') or 0) / 1024:.1f} MiB")

    if "3" in args.phases:
        print(f"\n== 3. resume: a tus upload of {size} bytes cut at ~50% mid-PATCH", flush=True)
        results["resume"] = [phase_resume(args, desk, body, sha256, known, reset)
                             for reset in (False, True)]
        for r in results["resume"]:
            if r["ratio"] > GOALS["resume"]:
                goals_missed.append(f"resume ({r['mode']})")

    if "4" in args.phases:
        print(f"\n== 4. {args.clients} concurrent paced tus uploads while a journalist browses",
              flush=True)
        c = phase_concurrent(args, desk, monitor, known)
        report_concurrent(c)
        results["concurrent"] = c
        if c["failures"] or c["journalist"]["bad"]:
            goals_missed.append("concurrent failures")
        if c["journalist"].get("p95", math.inf) >= GOALS["p95_ms"]:
            goals_missed.append("journalist p95")

    leftovers = {
        "server TMPDIR files": len(list(desk.server_tmp.rglob("*"))),
        "staging entries": len(list((desk.data / "store" / "staging").iterdir())),
        "upload folders": len(list(desk.uploads.iterdir())) if desk.uploads.exists() else 0,
        "upload rows": desk.upload_rows(),
    }
    print(f"\nleftovers: {leftovers}")
    results["leftovers"] = leftovers
    print(f"goals missed: {goals_missed or 'none'}")
    results["goals_missed"] = goals_missed

    missed = any(g.startswith(("form /", "tus /")) for g in goals_missed)
    if args.profile_dir or (missed and not args.no_profile):
        out_dir = args.profile_dir or root / "profiles"
        print(f"\nprofiling a form and a tus upload of {size} bytes (py-spy, every gunicorn "
              f"process, raw stacks in {out_dir}{'' if args.profile_dir else ', removed'}):")
        if common.PYSPY.exists():
            results["profiles"] = profile(desk, monitor, body, sha256, args.chunk_mib * MiB,
                                          out_dir, known)
        else:
            print("py-spy is not installed in the venv: skipped")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=_json))
    return 0


def _json(value: Any) -> Any:
    if isinstance(value, Measured | Request | Run):
        return asdict(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
