"""Crash cycles against a real server: sources uploading at once (form posts and multi-PATCH
tus uploads) while `desk serve source` is killed as a whole, and the checks after each kill
(`desk doctor`, the repair, acknowledged uploads stored whole, tus offsets never going back,
custody verified). tests/assurance/test_crash.py runs a few cycles; bench/faults.py runs many.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import http.client
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from crypto.items import padme
from crypto.names import (
    GNUPG_DIR,
    GPG_DOTLOCK_PREFIX,
    GPG_LOCK_SUFFIX,
    TAIL_PREFIX,
    part_name,
)
from crypto.sealing import sealed_plaintext_size
from desk.intake.shape import part_size
from desk.ops.doctor import Finding, database_problems, examine, repair, sole_session
from desk.records.custody import verify_desk
from desk.records.keys import gpg_running, stale_locks
from desk.services import Services
from tests.harness.data import KiB, MiB, sha256
from tests.harness.desks import run_desk
from tests.harness.forms import FormBody
from tests.harness.gpg import Keypair
from tests.harness.http import Answer, SourceSession, open_source_session, send_in_pieces
from tests.harness.servers import CrashableServer
from tests.harness.tus import OCTETS

TIMEOUT = 30  # seconds for any one HTTP exchange
PIECE = 64 * KiB  # bodies go out in pieces this big, so a kill can land between any two
SMALLEST, LARGEST = 200 * KiB, 3 * MiB
# After the sources start sending, the kill comes this many seconds later.
KILL_AFTER = (0.3, 2.5)
MAX_RETRIES = 20  # 423 and 5xx answers one tus upload may get before the test gives up


# Sources and what they sent


@dataclass
class Sending:
    """One upload a source started, and what the server acknowledged of it."""

    name: str
    kind: str  # "form" or "tus"
    data: bytes
    message: bytes | None = None  # form posts only
    chunks: list[int] = field(default_factory=list)  # tus: PATCH body sizes to try, in order
    acknowledged: bool = False  # form: a 2xx; tus: a Location from the creation POST
    offset: int = 0  # tus: the last offset the server acknowledged (PATCH or HEAD)
    complete: bool = False  # the whole upload is known to be stored
    abandoned: bool = False  # unacknowledged and never retried
    refusals: list[int] = field(default_factory=list)  # 423 and 5xx answers, retried
    location: str | None = None  # tus: the upload's path, once its creation was acknowledged

    @property
    def finished(self) -> bool:
        """Nothing more to send."""
        return self.complete or self.abandoned


@dataclass
class Slot:
    """One source uploading one thing after another across crash cycles."""

    index: int
    session: SourceSession
    current: Sending | None = None
    sent: list[Sending] = field(default_factory=list)


class Surprise(Exception):
    """A live server answered in a way no crash explains."""


class Refused(Exception):
    """A live server refused with a 5xx (as under heavy load): nothing was acknowledged, so
    nothing may be lost, but it is counted and reported."""


def _send(port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
    """Send a request, its body in pieces so that a kill can cut it anywhere; the answer."""
    return send_in_pieces(port, method, path, headers, body, PIECE, TIMEOUT)


def send_form(port: int, session: SourceSession, sending: Sending) -> None:
    """Post the submit form once; acknowledged on a 2xx."""
    body = FormBody().field("csrf_token", session.token)
    body.field("message", sending.message or b"").file(f"{sending.name}.mp4", sending.data)
    response = _send(port, "POST", "/submit", {
        "Cookie": session.cookie, "Content-Type": body.content_type}, body.encode())
    if response.status >= 500:
        sending.refusals.append(response.status)
        raise Refused(f"{sending.name}: form post answered {response.status}")
    if not 200 <= response.status < 300:
        raise Surprise(f"{sending.name}: form post answered {response.status}")
    if sha256(sending.data).encode() not in response.body:
        raise Surprise(f"{sending.name}: the received page shows another SHA-256")
    sending.acknowledged = sending.complete = True


def send_tus(port: int, session: SourceSession, sending: Sending, stop: threading.Event,
             until: int | None = None, retry: bool = True) -> None:
    """Create the upload if that was never acknowledged, then PATCH from the acknowledged
    offset until the last byte (or `until`) is acknowledged.

    Like tus-js-client, it retries a PATCH answered 423 (the upload is locked) and, after
    asking HEAD where to resume, one answered 5xx; `retry=False` refuses instead.
    """
    if sending.location is None:
        response = _send(port, "POST", "/uploads/", session.headers(
            **{"Upload-Length": str(len(sending.data)),
                        "Upload-Metadata": "filename " + "Y2xpcC5tcDQ="}), b"")
        if response.status >= 500:
            sending.refusals.append(response.status)
            raise Refused(f"{sending.name}: creation answered {response.status}")
        if response.status != 201:
            raise Surprise(f"{sending.name}: creation answered {response.status}")
        sending.location = response.headers.get("location")
        sending.acknowledged = True
    assert sending.location is not None
    sizes = iter(sending.chunks)
    end = len(sending.data) if until is None else until
    size = next(sizes, len(sending.data))
    while sending.offset < end and not stop.is_set():
        body = sending.data[sending.offset:sending.offset + size]
        response = _send(port, "PATCH", sending.location, session.headers(
            **{"Content-Type": OCTETS, "Upload-Offset": str(sending.offset)}), body)
        if response.status == 423 or response.status >= 500:
            sending.refusals.append(response.status)
            if not retry or len(sending.refusals) > MAX_RETRIES:
                raise (Refused if response.status >= 500 else Surprise)(
                    f"{sending.name}: PATCH at {sending.offset} answered {response.status}")
            time.sleep(0.05 * len(sending.refusals))
            if response.status >= 500:
                offset = tus_head(port, session, sending.location)
                if offset is None or offset < sending.offset:
                    raise Surprise(f"{sending.name}: after a {response.status} HEAD says "
                                   f"{offset}, {sending.offset} was acknowledged")
                sending.offset = offset
            continue
        if response.status != 204:
            raise Surprise(f"{sending.name}: PATCH at {sending.offset} answered "
                           f"{response.status}")
        offset = int(response.headers.get("upload-offset", -1))
        if not sending.offset < offset <= len(sending.data):
            raise Surprise(f"{sending.name}: PATCH at {sending.offset} acknowledged {offset}")
        sending.offset = offset
        size = next(sizes, len(sending.data))
    if sending.offset == len(sending.data):
        sending.complete = True


def tus_head(port: int, session: SourceSession, location: str) -> int | None:
    """The upload's offset as HEAD reports it; None for 404 (published, or never there)."""
    response = _send(port, "HEAD", location, session.headers(), b"")
    if response.status == 404:
        return None
    if response.status != 200:
        raise Surprise(f"HEAD {location} answered {response.status}")
    return int(response.headers.get("upload-offset", -1))


def new_sending(rng: random.Random, name: str) -> Sending:
    """A form post or a tus upload of random content, a few hundred KB to a few MB."""
    data = rng.randbytes(rng.randint(SMALLEST, LARGEST))
    if rng.random() < 0.5:
        message = f"message {name} {rng.getrandbits(64):016x}".encode() \
            if rng.random() < 0.5 else None
        return Sending(name, "form", data, message=message)
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(2, 5)))
    chunks = [b - a for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return Sending(name, "tus", data, chunks=chunks)


# The store, read the way a journalist and an auditor would


def sqlite_rows(data_dir: Path, query: str) -> list[tuple[object, ...]]:
    """Rows of one query on the desk's database, on a connection closed at once (`desk doctor
    --repair` refuses while any other process has the database open)."""
    connection = sqlite3.connect(data_dir / "desk.db", timeout=30)
    try:
        return list(connection.execute(query))
    finally:
        connection.close()


def vouched_files(data_dir: Path) -> dict[str, int]:
    """Every file a committed row vouches for, with its size (-1 if missing): each listed
    object's files, each unfinished upload's recorded parts and the sealed tail pieces that
    hold its acknowledged bytes past them (at this process's part size)."""
    store = data_dir / "store"
    files: dict[str, int] = {}
    for (oid,) in sqlite_rows(data_dir, "SELECT id FROM submissions"):
        folder = store / "objects" / str(oid)
        files[f"objects/{oid}/"] = 0 if folder.is_dir() else -1
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if not path.name.startswith("."):
                files[f"objects/{oid}/{path.name}"] = path.stat().st_size
    consumed = part_size()
    for uid, count, offset in sqlite_rows(data_dir,
                                          "SELECT id, part_count, offset FROM uploads"):
        folder = store / "uploads" / str(uid)
        for index in range(int(str(count))):
            path = folder / part_name(index)
            files[f"uploads/{uid}/{path.name}"] = path.stat().st_size if path.exists() else -1
        # The tail pieces holding acknowledged bytes not yet in a recorded part.
        done = int(str(count)) * consumed
        for path in sorted(folder.glob(f"{TAIL_PREFIX}*")) if folder.is_dir() else []:
            start = int(path.name.removeprefix(TAIL_PREFIX))
            with path.open("rb") as handle:
                length = sealed_plaintext_size(handle)
            if length is not None and start < int(str(offset)) and start + length > done:
                files[f"uploads/{uid}/{path.name}"] = path.stat().st_size
    return files


class Shelf:
    """What the store holds, decrypted once per object with stock gpg and the journalist's
    secret key alone: object id -> (SHA-256 of the whole plaintext, its size)."""

    def __init__(self, data_dir: Path, keypair: Keypair) -> None:
        self.data_dir = data_dir
        self.keypair = keypair
        self.seen: dict[str, tuple[str, int]] = {}

    def read(self) -> dict[str, tuple[str, int]]:
        """Decrypt every listed object not read before; return all of them."""
        listed = {str(oid) for (oid,) in sqlite_rows(self.data_dir, "SELECT id FROM submissions")}
        for oid in sorted(listed - set(self.seen)):
            folder = self.data_dir / "store" / "objects" / oid
            record = json.loads(self.keypair.decrypt(folder / "meta.gpg"))
            digest, size, stored = hashlib.sha256(), record["size"], 0
            names = [part["name"] for part in record["parts"]]
            assert sorted(p.name for p in folder.glob("part-*.gpg")) == names, oid
            for name in names:
                plaintext = self.keypair.decrypt(folder / name)
                # The first `size` bytes are the item; the rest is padding, all zeros.
                content = plaintext[:max(size - stored, 0)]
                assert plaintext[len(content):].count(0) == len(plaintext) - len(content), oid
                digest.update(content)
                stored += len(plaintext)
            assert stored == padme(size), f"object {oid}: {stored} bytes stored for {size}"
            assert record["id"] == oid
            self.seen[oid] = (digest.hexdigest(), size)
        gone = set(self.seen) - listed
        assert not gone, f"listed objects disappeared: {sorted(gone)}"
        return self.seen


# The cycles


@dataclass
class CrashReport:
    """What the crash cycles did and proved."""

    seeds: list[int] = field(default_factory=list)
    cycles_survived: int = 0
    started: int = 0
    forms_acknowledged: int = 0
    tus_completed: int = 0
    tus_resumed_after_crash: int = 0
    objects_verified: int = 0
    bytes_verified: int = 0
    found: collections.Counter[str] = field(default_factory=collections.Counter)
    repaired: collections.Counter[str] = field(default_factory=collections.Counter)
    refusals: collections.Counter[int] = field(default_factory=collections.Counter)
    kill_after: list[float] = field(default_factory=list)
    acknowledged_per_cycle: list[int] = field(default_factory=list)  # whole uploads


@contextlib.contextmanager
def noted(note: str) -> Iterator[None]:
    """Add `note` (the cycle and its seed) to any failure inside the block."""
    try:
        yield
    except BaseException as exc:
        exc.add_note(note)
        raise


class CrashRun:
    """Sources uploading at once against a CrashableServer, crash after crash."""

    def __init__(self, server: CrashableServer, keypair: Keypair, concurrent: int,
                 say: Callable[[str], None] = lambda _: None) -> None:
        self.server = server
        self.data_dir = server.data_dir
        self.shelf = Shelf(self.data_dir, keypair)
        self.concurrent = concurrent
        self.say = say
        self.slots: list[Slot] = []
        self.report = CrashReport()
        self.expected: dict[str, str] = {}  # SHA-256 of everything sent whole -> its name
        # `desk doctor` judges an upload's tail at the part size the server cut it with.
        self.desk_env = {name: value for name, value in server.env.items()
                         if name in ("PYTHONPATH", "DESK_TEST_PART_SIZE")}

    def run(self, cycles: int, first_seed: int) -> CrashReport:
        """Start the server, open the sources' sessions, crash `cycles` times, then finish
        every upload and check the whole store once more."""
        self.server.start()
        with ThreadPoolExecutor(self.concurrent) as pool:
            sessions = list(pool.map(lambda _: open_source_session(self.server.url, TIMEOUT),
                                     range(self.concurrent)))
        self.slots = [Slot(n, session) for n, session in enumerate(sessions)]
        for cycle in range(cycles):
            seed = first_seed + cycle
            self.report.seeds.append(seed)
            with noted(f"crash cycle {cycle} of {cycles}, seed {seed} (DESK_CRASH_SEED="
                       f"{first_seed}); server log:\n{self.server.log_tail()}"):
                self.cycle(cycle, seed)
            self.report.cycles_survived += 1
        with noted(f"after the last crash cycle (DESK_CRASH_SEED={first_seed}); server log:\n"
                   f"{self.server.log_tail()}"):
            self.finish()
        return self.report

    def cycle(self, cycle: int, seed: int) -> None:
        """Upload, kill at a random moment, repair, restart, check."""
        rng = random.Random(seed)  # noqa: S311 - reproducible test data and timing, not secrets
        complete_before = self.completed()
        stop = threading.Event()
        failures: list[BaseException] = []
        slot_rngs = [random.Random(rng.getrandbits(64)) for _ in self.slots]  # noqa: S311
        threads = [threading.Thread(target=self._upload, daemon=True,
                                    args=(slot, cycle, slot_rng, stop, failures))
                   for slot, slot_rng in zip(self.slots, slot_rngs, strict=True)]
        kill_after = rng.uniform(*KILL_AFTER)
        for thread in threads:
            thread.start()
        time.sleep(kill_after)
        stop.set()
        self.server.kill()
        for thread in threads:
            thread.join(2 * TIMEOUT)
        assert not any(thread.is_alive() for thread in threads), "a client hung after the kill"
        assert not failures, failures
        self.report.kill_after.append(kill_after)
        self.report.acknowledged_per_cycle.append(self.completed() - complete_before)
        self.say(f"cycle {cycle} (seed {seed}): killed after {kill_after:.2f} s")
        self.repair_and_restart()
        self.check_acknowledged()

    def completed(self) -> int:
        """How many uploads were acknowledged whole so far."""
        return sum(sending.complete for slot in self.slots for sending in slot.sent)

    def _upload(self, slot: Slot, cycle: int, rng: random.Random, stop: threading.Event,
                failures: list[BaseException]) -> None:
        """One source: continue its unfinished upload, then start new ones, until the kill."""
        count = 0
        while not stop.is_set():
            if slot.current is None or slot.current.finished:
                slot.current = new_sending(rng, f"s{slot.index}c{cycle}n{count}")
                slot.sent.append(slot.current)
                self.report.started += 1
                count += 1
                sending = slot.current
                self.expected[sha256(sending.data)] = sending.name
                if sending.message:
                    self.expected[sha256(sending.message)] = sending.name + " message"
            sending = slot.current
            try:
                if sending.kind == "form":
                    send_form(self.server.port, slot.session, sending)
                else:
                    send_tus(self.server.port, slot.session, sending, stop)
            except Refused:
                # Nothing was acknowledged; a tus upload resumes after the restart.
                if sending.kind == "form" or sending.location is None:
                    sending.abandoned = True
                    continue
                return
            except Surprise as exc:
                if self.server.process is not None and self.server.process.poll() is None \
                        and not stop.is_set():
                    failures.append(exc)
                return
            except (OSError, http.client.HTTPException):
                # The kill cut this request off: a form post is lost unless it got its 2xx, a
                # tus upload resumes after the restart.
                if sending.kind == "form" or sending.location is None:
                    sending.abandoned = True
                return

    def repair_and_restart(self) -> None:
        """With the server dead: doctor, repair, doctor again; nothing vouched for may go.
        Then start the server again."""
        # The killed server's gpg children outlive it for a moment (as processes, then as
        # zombies); until they are gone the lock files they leave are not yet stale, and
        # doctor would see them change between its looks.
        home = self.data_dir / GNUPG_DIR
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (gpg_running(home) or any(
                path.name.endswith(GPG_LOCK_SUFFIX) or path.name.startswith(GPG_DOTLOCK_PREFIX)
                for path in set(home.iterdir()) - set(stale_locks(home)))):
            time.sleep(0.05)
        found = run_desk("doctor", data_dir=self.data_dir, timeout=300,
                         extra_env=self.desk_env)
        lines = [line for line in found.stdout.splitlines() if "\t" in line]
        assert found.returncode == (1 if lines else 0), found.stdout + found.stderr
        not_removable = [line for line in lines if not line.endswith("(--repair removes it)")]
        assert not not_removable, not_removable
        self.report.found.update(line.split("\t")[0] for line in lines)
        vouched = vouched_files(self.data_dir)
        assert all(size >= 0 for size in vouched.values()), \
            [name for name, size in vouched.items() if size < 0]
        repaired = run_desk("doctor", "--repair", data_dir=self.data_dir, timeout=300,
                            extra_env=self.desk_env)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        removed = [line.split("\t") for line in repaired.stdout.splitlines()
                   if line.startswith("removed\t")]
        assert sorted(kind for _, kind, _ in removed) == sorted(
            line.split("\t")[0] for line in lines), \
            "doctor found:\n" + "\n".join(lines) + "\n--repair:\n" + repaired.stdout
        self.report.repaired.update(kind for _, kind, _ in removed)
        again = run_desk("doctor", data_dir=self.data_dir, timeout=300,
                         extra_env=self.desk_env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert vouched_files(self.data_dir) == vouched, "the repair removed something vouched for"
        assert sqlite_rows(self.data_dir, "PRAGMA integrity_check") == [("ok",)]
        self.say(f"  doctor repaired {len(removed)}: "
                 f"{dict(collections.Counter(kind for _, kind, _ in removed))}")
        self.server.start()

    def check_acknowledged(self) -> None:
        """Everything acknowledged is there; tus offsets did not go back; nothing is half-listed;
        custody verifies."""
        for slot in self.slots:
            sending = slot.current
            if sending is None or sending.kind != "tus" or sending.finished:
                continue
            if sending.location is None:
                sending.abandoned = True  # its creation was never acknowledged
                continue
            offset = tus_head(self.server.port, slot.session, sending.location)
            if offset is None:
                # Published, the answer lost in the crash: it must be stored whole.
                sending.complete = True
                continue
            assert sending.offset <= offset <= len(sending.data), \
                f"{sending.name}: HEAD says {offset}, {sending.offset} was acknowledged"
            if sending.offset:
                self.report.tus_resumed_after_crash += 1
            sending.offset = offset
        self.check_store()
        verified = run_desk("custody", "verify", data_dir=self.data_dir, timeout=300)
        assert verified.returncode == 0, verified.stdout + verified.stderr

    def check_store(self) -> None:
        """Every stored object is the whole of something sent; everything acknowledged whole
        is stored."""
        stored = self.shelf.read()
        by_digest = {digest: oid for oid, (digest, _) in stored.items()}
        strays = {oid: size for oid, (digest, size) in stored.items()
                  if digest not in self.expected}
        assert not strays, f"objects that are not the whole of anything sent: {strays}"
        for slot in self.slots:
            for sending in slot.sent:
                if not sending.complete:
                    continue
                assert sha256(sending.data) in by_digest, \
                    f"{sending.name} ({sending.kind}, {len(sending.data)} bytes) was " \
                    "acknowledged but is not stored whole"
                if sending.message:
                    assert sha256(sending.message) in by_digest, f"{sending.name}'s message"
        self.report.objects_verified = len(stored)
        self.report.bytes_verified = sum(size for _, size in stored.values())

    def _resume(self, slot: Slot, stop: threading.Event) -> None:
        assert slot.current is not None
        send_tus(self.server.port, slot.session, slot.current, stop)

    def finish(self) -> None:
        """Resume every unfinished tus upload to the end, check the store, stop the server
        gracefully and expect `desk doctor` to find nothing."""
        unfinished = [slot for slot in self.slots if slot.current is not None
                      and slot.current.kind == "tus" and not slot.current.finished]
        stop = threading.Event()
        with ThreadPoolExecutor(self.concurrent) as pool:
            list(pool.map(lambda slot: self._resume(slot, stop), unfinished))
        assert all(slot.current is not None and slot.current.complete for slot in unfinished)
        self.check_store()
        sendings = [s for slot in self.slots for s in slot.sent]
        self.report.refusals.update(status for s in sendings for status in s.refusals)
        self.report.forms_acknowledged = sum(s.kind == "form" and s.complete for s in sendings)
        self.report.tus_completed = sum(s.kind == "tus" and s.complete for s in sendings)
        self.server.stop()
        clean = run_desk("doctor", data_dir=self.data_dir, timeout=300,
                         extra_env=self.desk_env)
        assert clean.returncode == 0, clean.stdout + clean.stderr




# Crashes at exact points, examined in this process while the server is down


def doctor_findings(desk: Services) -> list[Finding]:
    """What `desk doctor` would report, examined in this process (the server is down)."""
    desk.engine.dispose()
    with sole_session(desk.config.database_url) as session:
        return examine(session, desk.store) + database_problems(session)


def doctor_repair(desk: Services) -> tuple[list[Finding], list[Finding]]:
    """What `desk doctor --repair` removes, and what is left afterwards."""
    desk.engine.dispose()
    with sole_session(desk.config.database_url) as session:
        removed = repair(examine(session, desk.store) + database_problems(session))
        return removed, examine(session, desk.store) + database_problems(session)


def verify_custody(desk: Services) -> None:
    """The custody chain and every stored object check out (`desk custody verify`)."""
    with desk.sessions() as session:
        verify_desk(session, desk.store, desk.signing_key.public_hex)
    desk.engine.dispose()
