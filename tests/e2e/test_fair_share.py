"""One source must not be able to take the desk's threads or descriptors from everyone else
(sections 1 and 2 of the second security review), reproduced as the review did, on loopback,
bounded in count and time: against `desk serve source` itself, and through the front
(HAProxy, as `desk front-config` writes it) with Tor circuits played by PROXY lines.

HAProxy is installed by `.ci/run`: in CI (CI set) a missing one is a failure, elsewhere the
front's test is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from desk.ops.front import CIRCUIT_CONNECTIONS
from desk.services import Services
from tests.harness.data import KiB, MiB
from tests.harness.desks import read_objects
from tests.harness.front import running_front
from tests.harness.gpg import Keypair
from tests.harness.http import TIMEOUT, open_source_session, read_response
from tests.harness.servers import Server, start_server, wait_for
from tests.harness.siege import (
    UNFINISHED_HEADERS,
    CreationFlood,
    HonestResult,
    SlowHeaders,
    SlowPatches,
    Target,
    attacker_uploads,
    honest_pages,
    honest_upload,
)

pytestmark = pytest.mark.slow

# How long an honest client waits for any one answer: more than the worker's header deadline
# (15 s), far less than forever.
PATIENCE = 40


def require_haproxy() -> None:
    """A failure in CI when HAProxy is missing, a skip elsewhere."""
    if shutil.which("haproxy") or Path("/usr/sbin/haproxy").exists():
        return
    if os.environ.get("CI"):
        pytest.fail("haproxy is missing: CI must run this test (.ci/run installs haproxy)")
    pytest.skip("haproxy is not installed (apt-get install haproxy)")


@contextlib.contextmanager
def held_streams(port: int, count: int, first_bytes: bytes) -> Iterator[list[socket.socket]]:
    """`count` connections that send `first_bytes` and then nothing; closed on leaving."""
    streams = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            sock.sendall(first_bytes)
            streams.append(sock)
        yield streams
    finally:
        for sock in streams:
            sock.close()


# 1. Threads, without the front: what the worker itself bounds


def test_streams_that_never_finish_their_headers_do_not_hold_the_desk(server: Server) -> None:
    """Review, section 1, reproduction A: 200 or more streams that stop half-way through their
    headers (no codename needed) held all 2 x 64 threads, and every honest page load timed
    out. The worker gives headers 15 s in all, so the threads come back and the page loads
    (after the streams queued before it have had their 15 s: without the front, nothing can
    tell the honest client from the others)."""
    assert wait_for(lambda: len(server.worker_pids()) == 2, 30)  # each takes its share
    with held_streams(server.port, 250, UNFINISHED_HEADERS):
        time.sleep(1)  # every held stream has reached a thread, or waits for one
        answer = requests.get(server.url + "/", timeout=PATIENCE)
        workers = server.worker_pids()

    assert answer.status_code == 200
    assert len(workers) == 2


def test_patches_that_drip_hold_no_database_connection(server: Server) -> None:
    """Found while reproducing section 1, reproduction B: a PATCH whose body is still
    arriving held one of the 15 pooled database connections of its worker (the view's read
    transaction, reopened by the first attribute read after it was ended), so 40 dripping
    PATCHes made every other request wait 30 s for a connection and fail with a 500. They
    now hold their thread only."""
    uploads = attacker_uploads(server.url, 40, [0])
    drips = SlowPatches(Target(server.port, via_front=False), uploads, drip=1.0, seconds=60)
    drips.start()
    try:
        time.sleep(5)  # every PATCH has started and is dripping
        answer = requests.get(server.url + "/", timeout=PATIENCE)
    finally:
        drips.stop()

    assert drips.started == 40
    assert answer.status_code == 200, server.log_tail()


# 2. Descriptors


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """`count` TCP connections that send nothing, opened without waiting for the server to
    accept them (those past its queue are left half-open, as a flood leaves them)."""
    opened = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        error = sock.connect_ex(("127.0.0.1", port))
        if error not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(error, os.strerror(error))
        opened.append(sock)
    return opened


@pytest.fixture
def low_limit_server(desk: Services, tmp_path: Path) -> Iterator[Server]:
    """The source interface with 1024 descriptors at most (soft and hard): systemd's default
    soft limit, which the unit kept before it set LimitNOFILE."""
    prlimit = shutil.which("prlimit")
    assert prlimit is not None, "prlimit (util-linux) is missing"
    started = start_server(desk.config.data_dir, "source", log=tmp_path / "server.log",
                           prefix=(prlimit, "--nofile=1024:1024", "--"), workers=2,
                           timeout=30)
    yield started
    started.abandon()


def test_a_flood_of_idle_connections_under_a_low_descriptor_limit_loses_nothing(
        desk: Services, low_limit_server: Server, journalist: Keypair) -> None:
    """Review, section 2: with 1024 descriptors, 2,100 idle connections made an honest PATCH
    in progress fail with a 500 and lose its 2 MiB, and both workers died on accept()'s
    EMFILE. Each worker now keeps its connections within its limit (and would pause accepting
    rather than die), so the PATCH is acknowledged whole and the workers live on."""
    server = low_limit_server
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 3000 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    session = open_source_session(server.url)
    data = os.urandom(2 * MiB)
    location = session.new_upload(len(data))
    workers = server.worker_pids()
    patch = session.begin_patch(location, 0, len(data))
    flood: list[socket.socket] = []
    try:
        patch.sendall(data[:MiB])
        flood = idle_connections(server.port, 2100)
        for start in range(MiB, len(data), 128 * KiB):
            time.sleep(0.5)  # the rest over 4 s, while the flood is accepted
            patch.sendall(data[start:start + 128 * KiB])
        status, headers = read_response(patch)
    finally:
        patch.close()
        for sock in flood:
            sock.close()

    assert status == 204, server.log_tail()
    assert int(headers["upload-offset"]) == len(data)
    assert server.worker_pids() == workers, server.log_tail()
    assert "Too many open files" not in server.log_tail(20000)
    stored = [obj.plaintext for obj in read_objects(desk.config, journalist)]
    assert stored == [data]


# 3. The front: a fair share for every Tor circuit


def test_a_source_on_its_own_circuit_is_served_beside_an_attacker(
        desk: Services, server: Server, journalist: Keypair, tmp_path: Path) -> None:
    """The issue's goal at a smaller scale: an attacker on 9 circuits holds 40 streams that
    never finish their headers and 140 PATCHes that drip a byte a second (more than the
    desk's 128 threads, so without per-circuit limits the honest source would wait for a
    thread that never comes), and creates uploads as fast as it is answered; an honest source
    on a circuit of its own loads pages and uploads 256 KiB through the front."""
    require_haproxy()
    header_circuits = [0x1000, 0x1001]
    patch_circuits = [0x2000 + i for i in range(7)]
    honest_circuit = 0x7E57
    honest = open_source_session(server.url)
    uploads = attacker_uploads(server.url, 140, patch_circuits, seconds=60)
    creator = open_source_session(server.url)
    result = HonestResult()
    data = os.urandom(256 * KiB)
    with running_front(desk.config.data_dir, tmp_path / "front", server.port) as front:
        target = Target(front.port, via_front=True)
        loops = [SlowHeaders(target, header_circuits, 40, seconds=120),
                 SlowPatches(target, uploads, drip=1.0, seconds=120),
                 CreationFlood(target, 0x3000, creator, seconds=120)]
        try:
            for loop in loops:
                loop.start()
            time.sleep(5)  # the attack has its share before the honest source comes
            honest_pages(target, honest_circuit, honest, 3, result, PATIENCE, give_up_after=1)
            honest_upload(target, honest_circuit, honest, data, 64 * KiB, result, PATIENCE,
                          tries=1)
        finally:
            for loop in loops:
                loop.stop()

    slow_patches = loops[1]
    assert isinstance(slow_patches, SlowPatches)
    assert len(uploads) > 2 * 64  # the attack was big enough to take every thread
    assert slow_patches.started >= len(patch_circuits) * CIRCUIT_CONNECTIONS // 2
    assert result.page_failures == [], server.log_tail()
    assert len(result.page_seconds) == 6
    assert result.upload_failures == [], server.log_tail()
    assert result.upload_seconds is not None
    assert not result.lost_acknowledged
    assert data in [obj.plaintext for obj in read_objects(desk.config, journalist)]
