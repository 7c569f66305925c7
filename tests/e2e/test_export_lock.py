"""Exports never block sources (review 2, finding 4): a source's message sent over real HTTP
while a journalist exports a desk of many items is received, and an export's memory does not
grow with the number of items it carries.

The review filled a desk with 20,000 items, whose export held SQLite's write lock for 17 s: an
honest message then got a 500 after the 10 s busy timeout and was lost. A test cannot fill
20,000 (bench/export_lock.py does, and measures); here the journalist server signs each
export entry 8 ms more slowly (a sitecustomize hook), so that 1,500 items hold one export
transaction past the busy timeout as 20,000 do on the review's machine.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from crypto.names import OBJECTS_DIR
from desk.records.models import Item
from desk.services import Services
from tests.harness.bulk import fill_desk
from tests.harness.desks import PASSWORDS, desk_env, fresh_code
from tests.harness.forms import csrf_token
from tests.harness.http import HttpBrowser, journalist_session
from tests.harness.servers import Server, start_server

pytestmark = pytest.mark.slow

ITEMS = 1500
ENTRY_PAUSE = 0.008  # seconds added to each export entry: 1,500 then take at least 12 s
# What the reviewer's export held the lock for, at 20,000 items, was 17 s; the busy timeout
# (desk/records/db.py) is 10 s.
WAIT = 120  # seconds any one step may take before the test gives up

SLOW_ENTRIES_HOOK = '''\
import os
import time

if os.environ.get("DESK_TEST_ENTRY_PAUSE"):
    import crypto.custody

    _pause = float(os.environ["DESK_TEST_ENTRY_PAUSE"])
    _original = crypto.custody.subject_entry

    def _slowed(key, previous, on, event, *args, **kwargs):
        if event == "export":
            time.sleep(_pause)
        return _original(key, previous, on, event, *args, **kwargs)

    crypto.custody.subject_entry = _slowed
'''


@pytest.fixture
def slow_newsroom(accounts: Services, tmp_path: Path) -> Iterator[Server]:
    """The journalist interface of `accounts` under gunicorn, signing export entries slowly."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_ENTRIES_HOOK)
    path = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    started = start_server(accounts.config.data_dir, "journalist",
                           log=tmp_path / "journalist.log", timeout=30,
                           env={"PYTHONPATH": path, "DESK_TEST_ENTRY_PAUSE": str(ENTRY_PAUSE)})
    yield started
    started.stop(timeout=30)


def _export_entries(data_dir: Path) -> list[int]:
    with sqlite3.connect(f"file:{data_dir / 'desk.db'}?mode=ro", uri=True, timeout=30) as db:
        return [seq for (seq,) in db.execute(
            "SELECT seq FROM custody_entries WHERE event = 'export' ORDER BY seq")]


def _write_lock_taken(data_dir: Path) -> bool:
    """True if another connection holds SQLite's write lock at this moment."""
    db = sqlite3.connect(data_dir / "desk.db", timeout=0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return True
    finally:
        db.close()
    return False


def _download(browser: requests.Session, url: str, out: Path, answer: dict[str, object]) -> None:
    token = csrf_token(browser.get(f"{url}/", timeout=WAIT).text)
    with browser.post(f"{url}/export", data={"csrf_token": token, "scope": "all"},
                      stream=True, timeout=WAIT) as response, out.open("wb") as handle:
        answer["status"] = response.status_code
        answer["length"] = int(response.headers.get("Content-Length", -1))
        for chunk in response.iter_content(1 << 20):
            handle.write(chunk)


def test_source_message_is_received_while_a_large_export_runs(
        accounts: Services, server: Server, slow_newsroom: Server, tmp_path: Path) -> None:
    data_dir = accounts.config.data_dir
    filled = set(fill_desk(accounts, ITEMS))
    source = HttpBrowser.with_codename(server.url)
    token = source.form_token()
    alice = journalist_session(slow_newsroom.url, "alice", PASSWORDS["alice"],
                               fresh_code(accounts, "alice"))

    bundle = tmp_path / "bundle.tar"
    answer: dict[str, object] = {}
    export = threading.Thread(target=_download, args=(alice, slow_newsroom.url, bundle, answer))
    export.start()
    try:
        # The source presses Send once the export holds the write lock: it is recording.
        deadline = time.monotonic() + WAIT
        while not _write_lock_taken(data_dir):
            assert export.is_alive(), "the export ended before it took the write lock"
            assert time.monotonic() < deadline, "the export never took the write lock"
            time.sleep(0.02)
        sent = source.http.post(f"{server.url}/submit", timeout=WAIT, files={
            "csrf_token": (None, token.encode()),
            "message": (None, b"the second train left at 05:10")})
    finally:
        export.join(WAIT * 2)

    # Before: 500 "Something went wrong. Nothing was kept." after the 10 s busy timeout.
    assert sent.status_code == 200, sent.text[:300]
    assert "Your message was received." in sent.text
    with accounts.sessions() as db:
        received = [item for item in db.scalars(select(Item)) if item.id not in filled]
        assert len(received) == 1
        subject = received[0].custody.subject
    with sqlite3.connect(data_dir / "desk.db") as db:
        (ingested,) = db.execute("SELECT seq FROM custody_entries WHERE event = 'ingest' "
                                 "AND subject = ?", (subject,)).fetchone()
    exported = _export_entries(data_dir)
    # The message was committed while the export was still recording: between its entries,
    # not after them (one transaction for the whole export kept every source out).
    assert len(exported) == ITEMS
    assert exported[0] < ingested < exported[-1]

    # The export itself completed: every filled item is in the bundle.
    assert answer["status"] == 200
    assert bundle.stat().st_size == answer["length"]
    with tarfile.open(bundle) as tar:
        objects = {name.split("/")[2] for name in tar.getnames()
                   if name.split("/")[1] == OBJECTS_DIR}
    assert len(objects) == ITEMS


# --- memory ---------------------------------------------------------------------------------

PEAK_RSS = re.compile(r"peak-rss-kib (\d+)")
# `desk export` in this interpreter, printing its own peak RSS at the end.
EXPORT_MEASURED = """\
import resource, sys
from desk.ops.cli import cli
try:
    cli(["export", "--all", "--out", sys.argv[1]])
finally:
    print("peak-rss-kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _export_peak_kib(data_dir: Path, out: Path) -> int:
    result = subprocess.run([sys.executable, "-c", EXPORT_MEASURED, str(out)],
                            env=desk_env(data_dir), capture_output=True, text=True,
                            timeout=WAIT * 2, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    match = PEAK_RSS.search(result.stdout)
    assert match, result.stdout
    return int(match.group(1))


def test_export_memory_does_not_grow_with_the_items(accounts: Services, tmp_path: Path) -> None:
    data_dir = accounts.config.data_dir
    fill_desk(accounts, 500)
    small = _export_peak_kib(data_dir, tmp_path / "small.tar")
    fill_desk(accounts, 2500)
    large = _export_peak_kib(data_dir, tmp_path / "large.tar")
    # Six times the items: before, the peak grew by about 7.7 KiB an item (143 MB at 20,000
    # in the review), 19 MiB here; now by the ids and the manifest, about 1 KiB an item.
    assert large - small < 8 * 1024, (small, large)
