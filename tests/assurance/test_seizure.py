"""A seized server dates nothing more precisely than the day (invariant 5), file system part.

Against real servers (`desk serve source` and `desk serve journalist`), activities run at
recorded instants: a codename generated, a form post, a tus upload of several PATCHes with one
cut off, a codename login, a reply typed by a journalist and deleted by the source, a
journalist's export and deletion. Then `desk settle` runs, and every file and folder under
DESK_DATA is read with statx: no atime, mtime, ctime or birth time may fall inside an activity
window unless it falls inside the settle's own; atime and mtime are the start of the UTC day;
gpg's `random_seed` is gone.

Then `kill -9` of `desk settle` at random moments, and of a server between a write and a
settle: nothing acknowledged is lost, `desk doctor --repair` leaves `desk doctor` clean, and
stock gpg decrypts every stored file. And a running desk settles on its own interval, its
database included: a journalist's expired login values are cleared.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from crypto.names import GNUPG_DIR, OBJECTS_DIR, POOL_DIR, REPLIES_DIR, STORE_DIR
from desk.records.models import Item, Journalist, Reply, Source
from desk.services import Services
from desk.storage import fstime
from desk.storage.settle import day_start, read_mark
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
    assert result.returncode == 0, result.stderr
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


def test_a_settled_server_dates_nothing_finer_than_the_day(
        accounts: Services, journalist: Keypair, tmp_path: Path) -> None:
    data_dir = accounts.config.data_dir
    accounts.engine.dispose()
    clock = Clock()
    source = start_server(data_dir, "source", log=tmp_path / "source.log",
                          tmpdir=tmp_path / "source-tmp", timeout=30)
    newsroom = start_server(data_dir, "journalist", log=tmp_path / "journalist.log",
                            tmpdir=tmp_path / "journalist-tmp", timeout=30)
    first = time.time_ns()
    try:
        browser = HttpBrowser(source.url)
        with clock.activity("generate"):
            codename = browser.get_codename()
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
        with accounts.sessions() as db:
            source_id = db.scalars(select(Source.id)).one()
        page = f"/sources/{source_id}"
        with clock.activity("journalist login and reply"):
            alice = journalist_session(newsroom.url, "alice", PASSWORDS["alice"],
                                       fresh_code(accounts, "alice"), timeout=TIMEOUT)
            typed = post_journalist_form(alice, newsroom.url, page, f"{page}/replies",
                                         {"text": "we read it"})
            assert typed.status_code == 302
        with accounts.sessions() as db:
            reply_id = db.scalars(select(Reply.id)).one()
        with clock.activity("reply deleted"):
            shown = returning.submit_page()
            deleted = returning.http.post(f"{source.url}/replies/delete", data={
                "csrf_token": csrf_token(shown), "reply": reply_id}, timeout=TIMEOUT,
                allow_redirects=False)
            assert deleted.status_code == 302
        with clock.activity("export"):
            bundle = post_journalist_form(alice, newsroom.url, "/", "/export", {"scope": "all"})
            assert bundle.status_code == 200
        with accounts.sessions() as db:
            message = db.scalars(select(Item.id).where(Item.kind == "message")).one()
        with clock.activity("journalist delete"):
            removed = post_journalist_form(alice, newsroom.url, page, f"{page}/items", {
                "action": "delete", "confirm": "yes", "item": message})
            assert removed.status_code == 302
    finally:
        newsroom.stop(timeout=30)
        source.stop(timeout=30)
    accounts.engine.dispose()

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
                         for name, (start, end) in clock.windows.items()
                         if start <= stamp <= end]
            if stamp >= first:
                problems.append(f"{path.relative_to(data_dir)} {kind} after the first "
                                "activity, outside the settle")
        if times.atime != day or times.mtime != day:
            problems.append(f"{path.relative_to(data_dir)} atime/mtime not the day's start")
    assert not problems, "\n".join(problems)
    assert not (data_dir / GNUPG_DIR / "random_seed").exists()
    assert any((data_dir / STORE_DIR / POOL_DIR).iterdir())

    doctor = run_desk("doctor", data_dir=data_dir)
    assert doctor.returncode == 0, doctor.stdout
    # The form's message was deleted; its file, the upload and the reply's copy remain.
    with accounts.sessions() as db:
        files = sum(count + 1 for count in db.scalars(select(Item.part_count))) + \
            len(db.scalars(select(Reply.id)).all())
    accounts.engine.dispose()
    assert files >= 5
    assert decrypt_everything(data_dir, journalist) == files


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
