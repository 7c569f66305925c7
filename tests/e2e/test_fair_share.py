"""One source must not be able to take the desk's threads, database connections or
descriptors from everyone else (sections 1 and 2 of the second security review), reproduced as
the review did, on loopback, bounded in count and time, against `desk serve source` itself.
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

from desk.services import Services
from tests.harness.data import KiB, MiB
from tests.harness.desks import read_objects
from tests.harness.gpg import Keypair
from tests.harness.http import TIMEOUT, open_source_session, read_response
from tests.harness.servers import Server, start_server, wait_for
from tests.harness.siege import UNFINISHED_HEADERS, SlowPatches, Target, attacker_uploads

pytestmark = pytest.mark.slow

# How long an honest client waits for any one answer: more than the worker's header deadline
# (15 s), far less than forever.
PATIENCE = 40


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
