"""A seized server dates nothing more precisely than the day, and keeps nothing of what was
deleted (invariant 5).

Against real servers (`desk serve source` and `desk serve journalist`), activities run at
recorded instants: codenames generated (one never used), a form post, a tus upload of several
PATCHes with one cut off, a codename login, a second source's post and unfinished tus upload, a
journalist's login and typed replies, a reply deleted by its source, a journalist's export, a
reply written on the offline console (`desk-review reply`) and uploaded, a journalist deleting
an item and deleting a source for good, and `desk purge` deleting the codename never used.
Before any deletion, the identifiers and ciphertext digests of what is about to go are read
from the database: the deleted item, the source deleted for good (its id, lookup id,
designation, items, replies and upload), the purged source, and the box of the reply its
source deleted.

Once each deletion has been answered, with the servers still running, and again after
`desk settle`: the raw bytes of desk.db, desk.db-wal and any other journal beside it must hold
none of the identifiers (as text) or digests (as hex text and as 32 raw bytes) of what was
deleted so far, the custody log included; each one found is named with the table or index
whose page holds it. (The reply its source deleted keeps its row and the journalists' copy,
by design: only its box goes.) After the settle:

- file times: every file and folder under DESK_DATA is read with statx: no atime, mtime,
  ctime or birth time may fall inside an activity window, or after the first activity, unless
  it falls inside the settle's own; atime and mtime are the start of the UTC day; gpg's
  `random_seed` is gone; no file or folder is named by a deleted identifier;
- database values: every column of every table is read with sqlite3, and none may date
  anything between the first activity and the end of the settle: no text that reads as a
  date with a time of day, no integer (or 8 bytes of a blob, either byte order) that reads as
  a unix time in seconds, milliseconds, microseconds or nanoseconds, or as a TOTP step. A
  journalist's login values are kept while they can still change an answer (about 90 s); the
  test lets the login's step expire before it settles, so the settle must clear it.

Then `kill -9` of `desk settle` at random moments, and of a server between a write and a
settle: nothing acknowledged is lost, `desk doctor --repair` leaves `desk doctor` clean, and
stock gpg decrypts every stored file. And a running desk settles on its own interval, its
database included: a journalist's expired login values are cleared.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crypto.names import (
    DATABASE_NAME,
    GNUPG_DIR,
    OBJECTS_DIR,
    POOL_DIR,
    REPLIES_DIR,
    REPLY_BOX_NAME,
    STORE_DIR,
)
from desk.records.credentials import TOTP_DRIFT_STEPS, TOTP_STEP_SECONDS
from desk.records.models import Item, Journalist, Reply, Source, Upload
from desk.services import Services
from desk.storage import fstime
from desk.storage.settle import day_start, read_mark
from tests.harness.console import ok, review
from tests.harness.data import KiB
from tests.harness.desks import PASSWORDS, desk_env, fresh_code, run_desk
from tests.harness.forms import csrf_token
from tests.harness.gpg import Keypair
from tests.harness.http import (
    TIMEOUT,
    HttpBrowser,
    hang_up,
    journalist_session,
    post_journalist_form,
)
from tests.harness.paths import DESK_COMMAND
from tests.harness.servers import CrashableServer, start_server, wait_for

pytestmark = pytest.mark.slow

SECOND = 1_000_000_000
STEP_NS = TOTP_STEP_SECONDS * SECOND
# A date with a time of day, as SQLite, SQLAlchemy or isoformat() write one.
DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?")
# A WAL file's header and each frame's header, in bytes (sqlite.org/fileformat.html).
WAL_HEADER = 32
WAL_FRAME_HEADER = 24


@dataclass
class Clock:
    """Named windows of wall-clock time, in nanoseconds."""

    windows: dict[str, tuple[int, int]] = field(default_factory=dict)

    @contextmanager
    def activity(self, name: str) -> Iterator[None]:
        """Record the window the block runs in."""
        start = time.time_ns()
        yield
        self.windows[name] = (start, time.time_ns())

    def overlapping(self, low: int, high: int) -> list[str]:
        """The windows that share an instant with [low, high]."""
        return [name for name, (start, end) in self.windows.items()
                if start <= high and low <= end]


def every_time(data_dir: Path) -> dict[Path, fstime.Times]:
    """The statx times of every file and folder under `data_dir`, itself included."""
    found = {data_dir: fstime.times(data_dir)}
    for directory, folders, files in os.walk(data_dir):
        for name in folders + files:
            path = Path(directory) / name
            found[path] = fstime.times(path)
    return found


def settle(data_dir: Path) -> tuple[int, int]:
    """Run `desk settle`; its window."""
    start = time.time_ns()
    result = run_desk("settle", data_dir=data_dir)
    end = time.time_ns()
    assert result.returncode == 0, result.stdout + result.stderr
    return start, end


def decrypt_everything(data_dir: Path, keypair: Keypair) -> int:
    """Decrypt every stored ciphertext file with stock gpg; how many there were."""
    store = data_dir / STORE_DIR
    files = sorted((store / OBJECTS_DIR).glob("*/*.gpg")) + \
        sorted((store / REPLIES_DIR).glob("*/copy.gpg"))
    for path in files:
        keypair.decrypt(path)
    return len(files)


def doctor_clean(data_dir: Path) -> None:
    """`desk doctor --repair` leaves nothing for `desk doctor` to report."""
    repaired = run_desk("doctor", "--repair", data_dir=data_dir)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    checked = run_desk("doctor", data_dir=data_dir)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- what deleting must forget ---------------------------------------------------------------


@dataclass
class Forgotten:
    """What must leave the database once deleted: each identifier as text, each ciphertext
    digest as hex text and as its 32 raw bytes, by a label naming what it was."""

    needles: dict[str, bytes] = field(default_factory=dict)

    def identifier(self, label: str, value: str) -> None:
        self.needles[label] = value.encode("ascii")

    def digest(self, label: str, hex_digest: str) -> None:
        self.needles[f"{label} (hex)"] = hex_digest.encode("ascii")
        self.needles[f"{label} (raw)"] = bytes.fromhex(hex_digest)

    def source(self, db: Session, source_id: str, label: str) -> None:
        """A source about to be deleted for good, and everything it has."""
        row = db.get(Source, source_id)
        assert row is not None
        self.identifier(f"{label}'s id", row.id)
        self.identifier(f"{label}'s lookup id", row.lookup_id)
        self.identifier(f"{label}'s designation", row.designation)
        for item in db.scalars(select(Item).where(Item.source_id == source_id)):
            self.item(item, f"{label}'s {item.kind}")
        for reply in db.scalars(select(Reply).where(Reply.source_id == source_id)):
            self.identifier(f"{label}'s reply {reply.number} id", reply.id)
            self.digest(f"{label}'s reply {reply.number} digest", reply.ciphertext_sha256)
        for upload in db.scalars(select(Upload).where(Upload.source_id == source_id)):
            self.identifier(f"{label}'s upload id", upload.id)
            self.identifier(f"{label}'s upload owner", upload.owner)

    def item(self, item: Item, label: str) -> None:
        self.identifier(f"{label} id", item.id)
        self.digest(f"{label} digest", item.ciphertext_sha256)


def database_files(data_dir: Path) -> dict[Path, bytes]:
    """The raw bytes of desk.db and of every journal beside it (-wal, -shm, -journal)."""
    return {path: path.read_bytes() for path in sorted(data_dir.iterdir())
            if path.name.startswith(DATABASE_NAME) and path.is_file()}


def page_owners(database: Path) -> tuple[int, dict[int, str]]:
    """The database's page size, and the table or index each page belongs to."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        size = connection.execute("PRAGMA page_size").fetchone()[0]
        owners = dict(connection.execute("SELECT pageno, name FROM dbstat"))
    return size, owners


def occurrences(data: bytes, needle: bytes) -> Iterator[int]:
    offset = data.find(needle)
    while offset >= 0:
        yield offset
        offset = data.find(needle, offset + 1)


def still_readable(data_dir: Path, forgotten: Forgotten) -> list[str]:
    """Every deleted identifier or digest the database files still hold: where, by file and
    by the table or index owning the page (for the WAL, the page a frame holds, as the
    database now maps it)."""
    files = database_files(data_dir)  # before anything opens the database again
    size, owners = page_owners(data_dir / DATABASE_NAME)
    found: set[str] = set()
    for path, data in files.items():
        for label, needle in forgotten.needles.items():
            for offset in occurrences(data, needle):
                if path.name == DATABASE_NAME:
                    page = offset // size + 1
                    where = owners.get(page, f"page {page}, free")
                elif path.name.endswith("-wal") and offset >= WAL_HEADER:
                    frame = WAL_HEADER + (offset - WAL_HEADER) // (WAL_FRAME_HEADER + size) \
                        * (WAL_FRAME_HEADER + size)
                    page = int.from_bytes(data[frame:frame + 4], "big")
                    where = f"a frame of page {page}, {owners.get(page, 'free')}"
                else:
                    where = "outside any page"
                found.add(f"{label} in {path.name} ({where})")
    return sorted(found)


def named_paths(data_dir: Path, forgotten: Forgotten) -> list[str]:
    """Every file or folder under `data_dir` whose name holds a deleted identifier."""
    texts = {label: needle.decode("ascii") for label, needle in forgotten.needles.items()
             if not label.endswith("(raw)")}
    found = []
    for directory, folders, files in os.walk(data_dir):
        for name in folders + files:
            found += [f"{label} names {Path(directory, name).relative_to(data_dir)}"
                      for label, text in texts.items() if text in name]
    return found


# --- database values -------------------------------------------------------------------------


def every_value(database: Path) -> Iterator[tuple[str, str, object]]:
    """(table, column, value) of every column of every row of every table."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table'")]
        for table in tables:
            cursor = connection.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - schema names
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                yield from ((table, column, value) for column, value in zip(columns, row,
                                                                            strict=True))


def readings(value: object) -> Iterator[tuple[str, int, int]]:
    """Each way `value` can be read as a time finer than a day: (how, the earliest and the
    latest instant it can name, in nanoseconds)."""
    if isinstance(value, bytes):
        for offset in range(len(value) - 7):
            for order in ("big", "little"):
                number = int.from_bytes(value[offset:offset + 8], order)
                for how, low, high in readings(number):
                    yield f"{how} in 8 bytes ({order}-endian) at {offset}", low, high
        return
    if isinstance(value, str):
        for match in DATETIME_RE.finditer(value):
            text = match.group(0).replace("Z", "+00:00")
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                continue
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            ns = int(moment.timestamp()) * SECOND + moment.microsecond * 1000
            yield "a date and time", ns, ns + SECOND
        if value.strip().isdigit():
            yield from readings(int(value.strip()))
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    number = int(value)
    for how, unit in (("unix seconds", SECOND), ("unix milliseconds", 1_000_000),
                      ("unix microseconds", 1000), ("unix nanoseconds", 1)):
        yield how, number * unit, number * unit + unit - 1
    # A step is accepted for codes up to the drift away from the moment of the login.
    yield ("a TOTP step", (number - TOTP_DRIFT_STEPS) * STEP_NS,
           (number + TOTP_DRIFT_STEPS + 1) * STEP_NS - 1)


def dated_values(database: Path, clock: Clock, span: tuple[int, int]) -> list[str]:
    """Every database value that can be read as a time inside `span`, with the activities
    it would date."""
    found = []
    for table, column, value in every_value(database):
        for how, low, high in readings(value):
            if low <= span[1] and span[0] <= high:
                windows = clock.overlapping(low, high) or ["between activities"]
                shown = value.hex()[:40] if isinstance(value, bytes) else repr(value)
                found.append(f"{table}.{column} = {shown}: {how}, inside "
                             + ", ".join(windows))
    return found


def wait_for_logins_to_expire(accounts: Services) -> None:
    """Sleep until no journalist's used TOTP step can refuse a code any more, so that the
    settle must clear it (a step still live at the settle is kept, by design)."""
    with accounts.sessions() as db:
        steps = [step for step in db.scalars(select(Journalist.totp_last_step))
                 if step is not None]
    accounts.engine.dispose()
    if steps:
        expired_at = (max(steps) + TOTP_DRIFT_STEPS + 1) * TOTP_STEP_SECONDS + 1
        time.sleep(max(0.0, expired_at - time.time()))


# --- the test ----------------------------------------------------------------------------------


def test_a_settled_server_dates_nothing_finer_than_the_day_and_forgets_what_was_deleted(
        accounts: Services, journalist: Keypair, tmp_path: Path) -> None:
    data_dir = accounts.config.data_dir
    accounts.engine.dispose()
    clock = Clock()
    source = start_server(data_dir, "source", log=tmp_path / "source.log",
                          tmpdir=tmp_path / "source-tmp", timeout=30)
    newsroom = start_server(data_dir, "journalist", log=tmp_path / "journalist.log",
                            tmpdir=tmp_path / "journalist-tmp", timeout=30)
    # What each deletion must forget, and what all of them so far must have.
    deleting = {name: Forgotten() for name in ("reply deleted", "journalist delete",
                                                "journalist deletes a source", "purge")}
    forgotten = Forgotten()
    while_running: list[str] = []

    def deleted(name: str) -> None:
        """The deletion `name` has been answered: nothing deleted so far may be readable."""
        forgotten.needles.update(deleting[name].needles)
        while_running.extend(f"after {name}: {line}"
                             for line in still_readable(data_dir, forgotten))

    first = time.time_ns()
    try:
        browser = HttpBrowser(source.url)
        with clock.activity("generate"):
            codename = browser.get_codename()
        with accounts.sessions() as db:
            source_id = db.scalars(select(Source.id)).one()
        with clock.activity("form post"):
            form: dict[str, Any] = {
                "csrf_token": (None, csrf_token(browser.submit_page())),
                "message": (None, "the train left at dawn"),
                "files": ("platform.mp4", os.urandom(300 * KiB), "video/mp4")}
            sent = browser.http.post(f"{source.url}/submit", files=form, timeout=TIMEOUT)
            assert sent.status_code == 200
        session = browser.session()
        body = os.urandom(600 * KiB)
        with clock.activity("tus"):
            location = session.new_upload(len(body))
            assert session.patch(location, 0, body[:100 * KiB]).status_code == 204
            assert session.patch(location, 100 * KiB, body[100 * KiB:250 * KiB]) \
                .status_code == 204
            sock = session.begin_patch(location, 250 * KiB, 200 * KiB)
            sock.sendall(body[250 * KiB:300 * KiB])
            time.sleep(0.5)
            hang_up(sock, reset=False)
            assert wait_for(lambda: session.offset(location) >= 250 * KiB, 10)
            # The cut request may still hold the upload's lock a moment (423): retry, as a
            # tus client does.
            assert wait_for(lambda: session.patch(
                location, session.offset(location),
                body[session.offset(location):]).status_code == 204, 10)
        with clock.activity("login"):
            returning = HttpBrowser(source.url)
            returning.log_in(codename)
            returning.submit_page()
        with clock.activity("second source's post and unfinished upload"):
            doomed = HttpBrowser(source.url)
            doomed.get_codename()
            form = {"csrf_token": (None, csrf_token(doomed.submit_page())),
                    "message": (None, "they moved the crates at night"),
                    "files": ("crates.jpg", os.urandom(200 * KiB), "image/jpeg")}
            sent = doomed.http.post(f"{source.url}/submit", files=form, timeout=TIMEOUT)
            assert sent.status_code == 200
            pending = doomed.session()
            unfinished = pending.new_upload(400 * KiB)
            assert pending.patch(unfinished, 0, os.urandom(100 * KiB)).status_code == 204
        with accounts.sessions() as db:
            doomed_id = db.scalars(select(Source.id).where(Source.id != source_id)).one()
        with clock.activity("generate, never used"):
            HttpBrowser(source.url).get_codename()
        with accounts.sessions() as db:
            unused_id = db.scalars(select(Source.id).where(
                Source.id.not_in([source_id, doomed_id]))).one()
        page, doomed_page = f"/sources/{source_id}", f"/sources/{doomed_id}"
        with clock.activity("journalist login and replies"):
            alice = journalist_session(newsroom.url, "alice", PASSWORDS["alice"],
                                       fresh_code(accounts, "alice"), timeout=TIMEOUT)
            for target in (page, doomed_page):
                typed = post_journalist_form(alice, newsroom.url, target, f"{target}/replies",
                                             {"text": "we read it"})
                assert typed.status_code == 302

        # What the deletions below must forget, read before any of them.
        with accounts.sessions() as db:
            reply_id = db.scalars(select(Reply.id).where(Reply.source_id == source_id)).one()
            message = db.scalars(select(Item).where(Item.source_id == source_id,
                                                    Item.kind == "message")).one()
            deleting["journalist delete"].item(message, "the deleted message")
            deleting["journalist deletes a source"].source(db, doomed_id,
                                                           "the source deleted for good")
            deleting["purge"].source(db, unused_id, "the purged source")
            designation = db.scalars(select(Source.designation)
                                     .where(Source.id == source_id)).one()
        accounts.engine.dispose()
        box = (accounts.store.reply_path(reply_id) / REPLY_BOX_NAME).read_bytes()
        # The source deletes the box; the row and the journalists' copy stay, as the record
        # of what was said (crypto/FORMAT.md, "Reply copies").
        deleting["reply deleted"].digest("the reply box its source deleted",
                                         hashlib.sha256(box).hexdigest())

        with clock.activity("reply deleted"):
            shown = returning.submit_page()
            answer = returning.http.post(f"{source.url}/replies/delete", data={
                "csrf_token": csrf_token(shown), "reply": reply_id}, timeout=TIMEOUT,
                allow_redirects=False)
            assert answer.status_code == 302
        deleted("reply deleted")
        with clock.activity("export"):
            bundle = post_journalist_form(alice, newsroom.url, "/", "/export", {"scope": "all"})
            assert bundle.status_code == 200
        # On the offline machine: import the bundle, write a reply.
        offline = tmp_path / "offline"
        offline.mkdir()
        (offline / "bundle.tar").write_bytes(bundle.content)
        ok(review(offline / "ws", journalist.home, "import", str(offline / "bundle.tar")))
        (offline / "reply.txt").write_text("send the rest by the same road\n", encoding="utf-8")
        ok(review(offline / "ws", journalist.home, "reply", designation, "--message-file",
                  str(offline / "reply.txt"), "--out", str(offline / "reply.desk")))
        with clock.activity("console reply upload"):
            token = csrf_token(alice.get(f"{newsroom.url}{page}", timeout=TIMEOUT).text)
            uploaded = alice.post(
                f"{newsroom.url}{page}/replies/upload", data={"csrf_token": token},
                files={"reply_file": ("reply.desk", (offline / "reply.desk").read_bytes())},
                timeout=TIMEOUT)
            assert f"Reply 2 to {designation} stored" in uploaded.text
        with clock.activity("journalist delete"):
            removed = post_journalist_form(alice, newsroom.url, page, f"{page}/items", {
                "action": "delete", "confirm": "yes", "item": message.id})
            assert removed.status_code == 302
        deleted("journalist delete")
        with clock.activity("journalist deletes a source"):
            removed = post_journalist_form(alice, newsroom.url, doomed_page,
                                           f"{doomed_page}/delete", {"confirm": "yes"})
            assert removed.status_code == 302
        deleted("journalist deletes a source")
        with clock.activity("purge"):
            # The codename never used is made two days old: purge deletes such a source.
            two_days_ago = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
            with closing(sqlite3.connect(data_dir / DATABASE_NAME)) as connection, \
                    connection:
                connection.execute("UPDATE sources SET created_on = ?, last_activity_on = ? "
                                   "WHERE id = ?", (two_days_ago, two_days_ago, unused_id))
            purged = run_desk("purge", data_dir=data_dir)
            assert purged.returncode == 0, purged.stdout + purged.stderr
            assert "1 source(s) with nothing left" in purged.stdout
        deleted("purge")
        with accounts.sessions() as db:
            assert set(db.scalars(select(Source.id))) == {source_id}
            assert db.get(Reply, reply_id) is not None  # the journalists' copy stays
        accounts.engine.dispose()
    finally:
        newsroom.stop(timeout=30)
        source.stop(timeout=30)
    accounts.engine.dispose()

    wait_for_logins_to_expire(accounts)
    settled = settle(data_dir)

    day = day_start(settled[0])
    assert day == day_start(settled[1]), "the settle ran across midnight; run again"
    problems = []
    for path, times in every_time(data_dir).items():
        stamps = {"atime": times.atime, "mtime": times.mtime, "ctime": times.ctime,
                  "birth": times.birth}
        for kind, stamp in stamps.items():
            if stamp is None or settled[0] <= stamp <= settled[1]:
                continue
            problems += [f"{path.relative_to(data_dir)} {kind} inside {name}"
                         for name in clock.overlapping(stamp, stamp)]
            if stamp >= first:
                problems.append(f"{path.relative_to(data_dir)} {kind} after the first "
                                "activity, outside the settle")
        if times.atime != day or times.mtime != day:
            problems.append(f"{path.relative_to(data_dir)} atime/mtime not the day's start")
    assert not problems, "\n".join(problems)
    assert not (data_dir / GNUPG_DIR / "random_seed").exists()
    assert any((data_dir / STORE_DIR / POOL_DIR).iterdir())

    after_settle = still_readable(data_dir, forgotten)  # reads the files before opening them
    dated = dated_values(data_dir / DATABASE_NAME, clock, (first, settled[1]))
    assert not dated, "\n".join(dated)
    names = named_paths(data_dir, forgotten)
    assert not names, "\n".join(names)

    doctor = run_desk("doctor", data_dir=data_dir)
    assert doctor.returncode == 0, doctor.stdout
    # The form's message was deleted; its file, the upload and the replies' copies remain.
    with accounts.sessions() as db:
        files = sum(count + 1 for count in db.scalars(select(Item.part_count))) + \
            len(db.scalars(select(Reply.id)).all())
    accounts.engine.dispose()
    assert files >= 6
    assert decrypt_everything(data_dir, journalist) == files

    kept = [f"while the servers ran, {line}" for line in while_running] + \
        [f"after the settle: {line}" for line in after_settle]
    assert not kept, "\n".join(kept)


def test_kill_during_a_settle_loses_nothing(desk: Services, journalist: Keypair,
                                            tmp_path: Path) -> None:
    data_dir = desk.config.data_dir
    desk.engine.dispose()
    server = CrashableServer(data_dir, tmp_path / "server.log", tmp_path / "server-tmp")
    server.start()
    rng = random.SystemRandom()
    sent = 0
    try:
        for attempt in range(4):
            # Writes between settles: each attempt's settle has new things to re-birth.
            browser = HttpBrowser(server.url)
            browser.get_codename()
            for _ in range(5):
                form: dict[str, Any] = {
                    "csrf_token": (None, csrf_token(browser.submit_page())),
                    "files": ("f.bin", os.urandom(rng.randrange(1, 400) * KiB),
                              "application/octet-stream")}
                answer = browser.http.post(f"{server.url}/submit", files=form,
                                           timeout=TIMEOUT)
                assert answer.status_code == 200, answer.text[-600:]
                sent += 1
            if attempt == 3:
                # Killed between a write and a settle: the server, not the settle.
                server.kill()
                server.start()
            settling = subprocess.Popen([DESK_COMMAND, "settle"], env=desk_env(data_dir),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, 0.4))
            settling.send_signal(signal.SIGKILL)
            settling.wait(timeout=30)
    finally:
        server.kill()
    doctor_clean(data_dir)
    settle(data_dir)
    doctor_clean(data_dir)
    with desk.sessions() as db:
        items = db.scalars(select(Item.id)).all()
    desk.engine.dispose()
    assert len(items) == sent
    assert decrypt_everything(data_dir, journalist) == 2 * sent
    verified = run_desk("custody", "verify", data_dir=data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_running_desk_settles_on_its_interval(desk: Services, tmp_path: Path) -> None:
    data_dir = desk.config.data_dir
    # A login step from long ago: the running desk's settle clears it from the database too.
    with desk.sessions() as db:
        db.execute(update(Journalist).values(totp_last_step=1, failed_logins=2,
                                             failures_since=datetime(2020, 1, 2, 3, 4, 5)))
        db.commit()
    desk.engine.dispose()
    (data_dir / GNUPG_DIR / "random_seed").write_bytes(b"stale")
    server = start_server(data_dir, "source", log=tmp_path / "source.log",
                          tmpdir=tmp_path / "source-tmp", timeout=30,
                          env={"DESK_SETTLE_INTERVAL": "1s"})
    try:
        # A settle fsyncs every file it re-creates and ends with a syncfs: on a disk busy with
        # other writers that can take many seconds, so allow for it.
        assert wait_for(lambda: read_mark(data_dir) is not None, 120), server.log_tail()
        first = read_mark(data_dir)
        assert wait_for(lambda: read_mark(data_dir) != first, 120), server.log_tail()
    finally:
        server.stop(timeout=30)
    assert not (data_dir / GNUPG_DIR / "random_seed").exists()
    assert any((data_dir / STORE_DIR / POOL_DIR).iterdir())
    with desk.sessions() as db:
        cleared = db.execute(select(Journalist.totp_last_step, Journalist.failed_logins,
                                    Journalist.failures_since)).one()
    desk.engine.dispose()
    assert tuple(cleared) == (None, 0, None)
