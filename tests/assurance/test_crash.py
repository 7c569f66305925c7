"""Crash safety: `kill -9` of a real `desk serve source` while sources are uploading.

The server runs in its own process group, so one SIGKILL takes the gunicorn arbiter, its
workers and their gpg children at the same instant, as a crash or a power cut would. Twenty
sources, each in its own session, send at once: form posts and tus uploads of several PATCHes,
of random content from a few hundred KB to a few MB. At a random moment the server is killed;
`desk doctor` lists what the crash left, `desk doctor --repair` removes it, and the server
restarts on the same data directory. Then:

- every form post that got a 2xx is stored whole and decrypts with stock gpg to the bytes sent;
- every tus upload's HEAD offset is at least the last one the server acknowledged, and
  resuming from it (in the next cycle, or at the end) completes an object that decrypts to
  exactly the bytes sent;
- nothing is half-listed: every stored object decrypts to the whole of something a source sent;
- the database passes `PRAGMA integrity_check` and the custody log verifies;
- after the repair `desk doctor` finds nothing, and the repair removed no file a committed row
  vouches for.

The machinery (the sources, the kill, the checks) is in tests/harness/crash.py.
DESK_CRASH_CYCLES sets the number of crash cycles (default 3; bench/faults.py runs 10),
DESK_CRASH_UPLOADS the number of sources uploading at once (20), and DESK_CRASH_SEED the first
cycle's seed; every failure names its cycle's seed. The tests after the random cycles kill the
server at exact points instead (a hook in the server's own sitecustomize), so that each step
of a write is crashed after at least once, whatever the random cycles happened to hit.
"""

from __future__ import annotations

import collections
import http.client
import os
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from desk.services import Services
from tests.harness.crash import (
    CrashRun,
    Sending,
    Shelf,
    doctor_findings,
    doctor_repair,
    send_form,
    send_tus,
    tus_head,
    verify_custody,
    vouched_files,
)
from tests.harness.data import KiB, sha256
from tests.harness.gpg import Keypair
from tests.harness.http import open_source_session
from tests.harness.servers import CrashableServer, hooked_server, small_parts_env
from tests.harness.tus import parts_of

pytestmark = pytest.mark.slow

# The servers cut parts of 128 KiB (the desk's are 64 MiB), so that uploads of a few hundred KB
# are stored as several parts and crashes land while parts are cut from the sealed tail; doctor,
# examined in this process, uses the same size.
PART = 128 * KiB


@pytest.fixture(autouse=True)
def _small_parts() -> Iterator[None]:
    with parts_of(PART):
        yield


def cycles_setting() -> int:
    """DESK_CRASH_CYCLES, default 3."""
    return int(os.environ.get("DESK_CRASH_CYCLES", "3"))


def first_seed() -> int:
    """DESK_CRASH_SEED, or a fresh one."""
    return int(os.environ.get("DESK_CRASH_SEED") or random.SystemRandom().randrange(2**31))


@pytest.fixture
def crashable(desk: Services, tmp_path: Path) -> Iterator[CrashableServer]:
    """`desk` served by a CrashableServer; killed at the end whatever happened."""
    desk.engine.dispose()  # this process must not hold the database open
    server = CrashableServer(desk.config.data_dir, tmp_path / "server.log",
                             tmp_path / "server-tmp", small_parts_env(tmp_path, PART))
    yield server
    server.kill()


def test_acknowledged_uploads_survive_kill_9_and_doctor_repairs_the_rest(
        crashable: CrashableServer, journalist: Keypair) -> None:
    concurrent = int(os.environ.get("DESK_CRASH_UPLOADS", "20"))
    run = CrashRun(crashable, journalist, concurrent, say=print)
    report = run.run(cycles_setting(), first_seed())
    print(report)
    assert report.cycles_survived == cycles_setting()
    assert report.forms_acknowledged + report.tus_completed > 0
    assert report.objects_verified >= report.forms_acknowledged + report.tus_completed


# Crashing at exact points


@dataclass(frozen=True)
class CrashPoint:
    """A step after which the server dies, and what must be true afterwards."""

    after: str  # "module:qualified.name" of the function that has just returned
    upload: str  # "form", "tus" (crash on a later PATCH) or "tus-create"
    found: dict[str, int]  # what `desk doctor` finds, by kind; all of it removable
    listed: bool = False  # the object was committed before the crash


CRASH_POINTS = {
    "form-part-encrypted": CrashPoint("desk.intake.ingest:ItemWriter.write_part", "form",
                                      {"staging": 1}),
    "form-record-encrypted": CrashPoint("desk.intake.ingest:ItemWriter.finish", "form",
                                        {"staging": 1}),
    "form-published": CrashPoint("desk.storage.store:Store.publish", "form",
                                 {"object-without-row": 1}),
    "form-committed": CrashPoint("desk.records.items:record_items", "form", {},
                                 listed=True),
    "tus-created": CrashPoint("desk.intake.tus:create_upload", "tus-create",
                              {"upload-without-row": 1}),
    # The body sealed, not yet renamed into the tail.
    "tus-tail-sealed": CrashPoint("crypto.sealing:SealedWriter.close", "tus",
                                  {"temp-file": 1}),
    "tus-part-encrypted": CrashPoint("desk.intake.ingest:ItemWriter.write_part", "tus",
                                     {"unrecorded-tail-piece": 1, "unrecorded-part": 1}),
    "tus-record-encrypted": CrashPoint("desk.intake.ingest:ItemWriter.finish", "tus",
                                       {"unrecorded-tail-piece": 1, "unrecorded-part": 4,
                                        "unrecorded-metadata": 1}),
    "tus-published": CrashPoint("desk.storage.store:Store.publish", "tus",
                                {"object-without-row": 1, "unrecorded-tail-piece": 1,
                                 "unrecorded-part": 4, "unrecorded-metadata": 1}),
    "tus-committed": CrashPoint("desk.records.items:record_items", "tus",
                                {"upload-without-row": 1}, listed=True),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS.values()), ids=list(CRASH_POINTS))
def test_a_crash_right_after_each_step_loses_nothing_acknowledged(
        desk: Services, journalist: Keypair, tmp_path: Path, point: CrashPoint) -> None:
    desk.engine.dispose()  # this process must not hold the database open
    server, armed = hooked_server(desk.config.data_dir, tmp_path, point.after, "kill", PART)
    try:
        server.start()
        session = open_source_session(server.url)
        data = os.urandom(700 * KiB)
        never = threading.Event()
        if point.upload == "form":
            sending = Sending("crash", "form", data)
        else:
            # A PATCH of 300 KiB is acknowledged (two parts of 128 KiB cut, 44 KiB left in the
            # tail); the crash comes in the next one, of 200 KiB (a third part cut from the
            # tail) or of the rest (the last four parts, then publication).
            chunks = [300 * KiB, 200 * KiB] if point.after.endswith("write_part") else [300 * KiB]
            sending = Sending("crash", "tus", data, chunks=chunks)
            if point.upload == "tus":
                send_tus(server.port, session, sending, never, until=300 * KiB)
                assert sending.offset == 300 * KiB
                sending.chunks = chunks[1:]
        acknowledged = sending.offset

        def send() -> None:
            if sending.kind == "form":
                send_form(server.port, session, sending)
            else:
                send_tus(server.port, session, sending, never)

        armed.touch()
        with pytest.raises((OSError, http.client.HTTPException)):
            send()  # the server dies before it answers
        server.kill()
        armed.unlink()
        assert not sending.complete

        found = doctor_findings(desk)
        assert collections.Counter(f.kind for f in found) == point.found, \
            [f.line() for f in found]
        assert all(f.removable for f in found), [f.line() for f in found]
        vouched = vouched_files(desk.config.data_dir)
        removed, left = doctor_repair(desk)
        assert removed == found
        assert left == []
        assert vouched_files(desk.config.data_dir) == vouched

        server.start()
        if sending.location is not None:
            offset = tus_head(server.port, session, sending.location)
            if point.listed:
                assert offset is None  # published: the upload is gone, its object stored
            else:
                assert offset == acknowledged
                sending.offset = acknowledged
                sending.chunks = []
                send_tus(server.port, session, sending, never)
                assert sending.complete
        stored = Shelf(desk.config.data_dir, journalist).read()
        whole = [digest for digest, _ in stored.values()]
        if sending.location is not None or point.listed:
            assert whole == [sha256(data)]
        else:
            assert whole == []
        verify_custody(desk)
        server.stop()
        assert doctor_findings(desk) == []
    finally:
        server.kill()


def test_the_next_patch_is_not_refused_because_a_child_was_forked_during_the_last(
        desk: Services, tmp_path: Path) -> None:
    desk.engine.dispose()
    server, armed = hooked_server(desk.config.data_dir, tmp_path, "desk.intake.tus:append_part",
                                  "fork")
    try:
        server.start()
        session = open_source_session(server.url)
        sending = Sending("locked", "tus", os.urandom(300 * KiB), chunks=[100 * KiB] * 3)
        never = threading.Event()
        armed.touch()  # a child is forked while each PATCH holds the upload's lock
        send_tus(server.port, session, sending, never, until=100 * KiB)
        send_tus(server.port, session, sending, never, retry=False)
        assert sending.complete
        assert sending.refusals == []
    finally:
        server.kill()
