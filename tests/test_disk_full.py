"""Disk full: what no longer fits is refused with 507, nothing partial is kept or listed, and
the desk takes uploads again as soon as space is freed, in the same process.

The desk's data lives on a small tmpfs of its own, and a ballast file on it leaves exactly as
much free space as a test wants. Where the tests may not mount (not root, or mount fails), the
store's test hook (`Store.simulated_free_bytes`) stands in for the small filesystem: store
writes then fail with ENOSPC past the given amount, and the tests that need a real filesystem
(a real server, SQLite on a full disk) are skipped. `DESK_TEST_DISK=hook` forces the hook, to
check that path on a machine that can mount. Every mount is undone at teardown.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

import crypto.gpg
from crypto.names import LOCK_NAME, TEMP_PREFIX
from desk.app import create_app
from desk.config import Config
from desk.ops.serve import GUNICORN_SETTINGS
from desk.records.accounts import add_journalist
from desk.records.instance import init_desk
from desk.records.models import CustodyRecord, Submission, Upload
from desk.services import Services, open_services
from desk.storage.store import SPACE_RESERVE, Store
from tests.conftest import CHEAP_KDF, Server, SourceBrowser, files_under, read_objects
from tests.forms import CODENAME_RE, FormBody, csrf_token
from tests.gpgtool import Keypair
from tests.test_tus import OCTETS, RemoteSource, TusTestSource, metadata, wait_for

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer as Buffer

KiB = 1024
MiB = 1024 * KiB
TIMEOUT = 30
# Room for the reserve the desk keeps free (SPACE_RESERVE) plus the uploads the tests send.
DISK_BYTES = SPACE_RESERVE + 64 * MiB
DATABASE_DISK_BYTES = 8 * MiB
BALLAST = "ballast"
NO_SPACE_PAGE = "The desk has no room for what you sent right now, so nothing was kept."
NO_SPACE_LOG = "the disk holding the desk's data is full"


# A filesystem whose free space the test sets


def mount_tmpfs(path: Path, size: int) -> bool:
    """Mount a tmpfs of `size` bytes at `path` (made here); False if the test may not."""
    path.mkdir()
    if os.environ.get("DESK_TEST_DISK") == "hook" or os.geteuid() != 0:
        return False
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True, timeout=TIMEOUT, check=False)
    return mounted.returncode == 0


def unmount(path: Path) -> None:
    """Undo `mount_tmpfs`, even if something still holds a file open there."""
    # gpg may have started an agent for a GnuPG home there, whose socket keeps it busy.
    for home in {socket.parent for socket in path.rglob("S.gpg-agent*")}:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       capture_output=True, timeout=TIMEOUT, check=False)
    if subprocess.run(["umount", str(path)], capture_output=True, timeout=TIMEOUT,
                      check=False).returncode != 0:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True, timeout=TIMEOUT,
                       check=True)


@dataclass
class Disk:
    """A filesystem for a desk's data (a tmpfs, or a plain directory with the store's hook)."""

    path: Path
    mounted: bool
    store: Store | None = None  # the store the hook acts on, when not mounted

    def fill(self, leave: int = 0) -> None:
        """Leave only `leave` bytes free."""
        self.free()
        if not self.mounted:
            assert self.store is not None
            self.store.simulated_free_bytes = leave
            return
        # A writer may be taking space meanwhile. Grow the ballast a step at a time: a step
        # that fails is undone whole, and must not hand the writer back the whole disk.
        step, allocated = 8 * MiB, 0
        with (self.path / BALLAST).open("wb") as ballast:
            for _ in range(10_000):
                if (wanted := self.available() - leave) <= 0:
                    break
                size = min(step, wanted)
                try:
                    os.posix_fallocate(ballast.fileno(), allocated, size)
                    allocated += size
                except OSError:  # ENOSPC: the writer took some first
                    step = max(step // 2, 4 * KiB)
        assert self.available() <= leave

    def available(self) -> int:
        """Free bytes on the filesystem."""
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def free(self) -> None:
        """Give the space back."""
        if self.store is not None:
            self.store.simulated_free_bytes = None
        (self.path / BALLAST).unlink(missing_ok=True)


@contextlib.contextmanager
def small_disk(path: Path, size: int) -> Iterator[Disk]:
    """A Disk at `path`, unmounted again however the test ends."""
    mounted = mount_tmpfs(path, size)
    try:
        yield Disk(path, mounted)
    finally:
        if mounted:
            unmount(path)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """A small filesystem of the test's own."""
    with small_disk(tmp_path / "disk", DISK_BYTES) as made:
        yield made


@pytest.fixture
def config(disk: Disk) -> Config:
    """conftest's desk configuration, with the data directory on `disk`."""
    data = disk.path / "data"
    return Config(data_dir=data, database_url=f"sqlite:///{data / 'desk.db'}",
                  max_upload_bytes=64 * MiB, kdf=CHEAP_KDF)


@pytest.fixture
def space(disk: Disk, desk: Services) -> Disk:
    """`disk` under the desk, whose free space the test sets."""
    disk.store = desk.store
    return disk


def need_a_real_filesystem(disk: Disk) -> None:
    """Skip a test that the store's hook cannot stand in for."""
    if not disk.mounted:
        pytest.skip("needs a small filesystem of its own, and this test may not mount one")


# What the desk lists and leaves behind


@dataclass(frozen=True)
class Listed:
    """Everything that says an item arrived (rows, published objects, the custody log), and
    the uploads under way with their offsets."""

    submissions: list[str]
    objects: list[str]
    custody: list[str]
    uploads: list[tuple[str, int, int]]


def listed(desk: Services) -> Listed:
    """What `desk` lists right now."""
    with desk.sessions() as session:
        return Listed(
            submissions=sorted(session.scalars(select(Submission.id))),
            objects=sorted(p.name for p in (desk.config.store_dir / "objects").iterdir()),
            custody=list(session.scalars(select(CustodyRecord.entry_hash)
                                         .order_by(CustodyRecord.seq))),
            uploads=sorted((u.id, u.offset, u.part_count)
                           for u in session.scalars(select(Upload))))


def leftovers(desk: Services) -> list[Path]:
    """Anything in staging, and any temporary file anywhere in the store."""
    staging = desk.config.store_dir / "staging"
    return sorted([*staging.iterdir(), *(p for p in files_under(desk.config.store_dir)
                                         if p.name.startswith(TEMP_PREFIX))])


def upload_files(desk: Services, location: str) -> list[str]:
    """The files in an upload's folder, but its lock."""
    folder = desk.store.uploads / location.rsplit("/", 1)[-1]
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)


def assert_no_space_page(page: TestResponse | requests.Response) -> None:
    """The desk's error page, 507, with the calm message and nothing else said."""
    assert page.status_code == 507
    assert NO_SPACE_PAGE in page.text
    for detail in ("Traceback", "ENOSPC", "No space left", "Errno", "gpg", "sqlite", "full"):
        assert detail not in page.text


def assert_logged_once(caplog: pytest.LogCaptureFixture, refusals: int = 1) -> None:
    """The desk's log holds one line per refusal, saying the disk is full, and nothing else
    worth a warning: no traceback, no request data. (python-gnupg's own logger, which the
    desk leaves without a handler, reports the failed gpg run too.)"""
    logged = [r for r in caplog.records
              if r.name.split(".")[0] == "desk" and r.levelno >= logging.WARNING]
    assert [NO_SPACE_LOG in r.getMessage() for r in logged] == [True] * refusals
    assert [r.exc_info for r in logged] == [None] * refusals


class FillingBody(io.BytesIO):
    """A request body that fills the disk (up to `leave` bytes) once `at` bytes of it have
    been read, as another upload arriving at the same time would."""

    def __init__(self, data: bytes, at: int, disk: Disk, leave: int = 0) -> None:
        super().__init__(data)
        self._at, self._disk, self._leave = at, disk, leave
        self.filled = False

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to `size` bytes, stopping once at `at` so that the disk fills exactly there."""
        position = self.tell()
        if position >= self._at and not self.filled:
            self._disk.fill(self._leave)
            self.filled = True
        if not self.filled:
            wanted = self._at - position
            size = wanted if size is None or size < 0 else min(size, wanted)
        return super().read(size)

    def readinto(self, buffer: Buffer, /) -> int:
        """As `read`, into `buffer` (what Werkzeug's request stream calls)."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)


def post_form(client: FlaskClient, body: FormBody, stream: FillingBody) -> TestResponse:
    """Post a hand-built form whose bytes come from `stream`."""
    return client.post("/submit", input_stream=stream, content_type=body.content_type)


# The form


def test_form_upload_that_does_not_fit_is_507_and_the_desk_works_once_space_is_freed(
        desk: Services, space: Disk, source: SourceBrowser, journalist: Keypair,
        caplog: pytest.LogCaptureFixture) -> None:
    before = listed(desk)
    space.fill(leave=2 * MiB)
    video = os.urandom(4 * MiB)
    page = source.send("They were moved at dawn.", (("station.mp4", video),))

    assert_no_space_page(page)
    assert listed(desk) == before
    assert leftovers(desk) == []
    assert_logged_once(caplog)

    space.free()
    page = source.send("They were moved at dawn.", (("station.mp4", video),))
    assert page.status_code == 200, page.text
    stored = sorted(obj.plaintext for obj in read_objects(desk.config, journalist))
    assert stored == sorted([b"They were moved at dawn.", video])


@pytest.mark.parametrize("where", ["while a file arrives", "between two files"])
def test_disk_that_fills_during_a_form_upload_leaves_nothing_behind(
        desk: Services, space: Disk, source: SourceBrowser, journalist: Keypair,
        where: str, caplog: pytest.LogCaptureFixture) -> None:
    first, second = os.urandom(3 * MiB), os.urandom(200 * KiB)
    body = FormBody().field("csrf_token", source.form_token()).field("message", "platform 3")
    body.file("first.mp4", first).file("second.mp4", second)
    chunks = list(body.chunks())
    start_of_first, start_of_second = (sum(len(c) for c in chunks[:i]) for i in (2, 3))
    # The message (and, between the files, the first file) is encrypted before the disk fills;
    # what was staged must go too.
    at = start_of_first + MiB if where == "while a file arrives" else start_of_second + KiB
    before = listed(desk)
    stream = FillingBody(body.encode(), at, space)

    page = post_form(source.client, body, stream)

    assert stream.filled
    assert_no_space_page(page)
    assert listed(desk) == before
    assert leftovers(desk) == []
    assert_logged_once(caplog)
    space.free()
    assert source.send("", (("again.mp4", second),)).status_code == 200
    assert [o.plaintext for o in read_objects(desk.config, journalist)] == [second]


def test_disk_filled_by_another_upload_that_then_gives_up_is_still_507(
        desk: Services, space: Disk, source: SourceBrowser,
        monkeypatch: pytest.MonkeyPatch) -> None:
    need_a_real_filesystem(space)  # with the hook the write itself says ENOSPC
    video = os.urandom(16 * MiB)
    body = FormBody().field("csrf_token", source.form_token()).file("clip.mp4", video)
    # Another upload takes all but 4 MiB early on, then runs out of room too and removes its
    # file at the very moment gpg's partial output is removed: by the time the desk asks,
    # the disk has plenty of room again.
    stream = FillingBody(body.encode(), 2 * MiB, space, leave=4 * MiB)
    remove = crypto.gpg._remove

    def remove_both(path: Path) -> None:
        space.free()
        remove(path)

    monkeypatch.setattr(crypto.gpg, "_remove", remove_both)
    before = listed(desk)
    page = post_form(source.client, body, stream)

    assert stream.filled
    assert space.available() > len(video) + SPACE_RESERVE
    assert_no_space_page(page)
    assert listed(desk) == before
    assert leftovers(desk) == []


# Resumable uploads


def test_tus_creation_without_room_is_507_and_creates_nothing(
        desk: Services, space: Disk, source: SourceBrowser,
        caplog: pytest.LogCaptureFixture) -> None:
    tus = TusTestSource(source)
    space.fill(leave=1 * MiB)
    refused = tus.create(100 * KiB, metadata("clip.mp4", "video/mp4"))

    assert refused.status_code == 507
    assert refused.mimetype == "text/plain"
    assert "Location" not in refused.headers
    assert listed(desk).uploads == []
    assert list(desk.store.uploads.iterdir()) == []
    assert_logged_once(caplog)
    space.free()
    assert tus.create(100 * KiB).status_code == 201


def test_tus_patch_that_runs_out_of_space_keeps_the_last_part_and_resumes(
        desk: Services, space: Disk, source: SourceBrowser, journalist: Keypair,
        caplog: pytest.LogCaptureFixture) -> None:
    tus = TusTestSource(source)
    data = os.urandom(6 * MiB)
    location = tus.new(len(data), metadata("resumed.mp4", "video/mp4"))
    assert tus.patch(location, 0, data[:2 * MiB]).status_code == 204
    before = listed(desk)

    space.fill(leave=1 * MiB)
    refused = tus.patch(location, 2 * MiB, data[2 * MiB:])
    assert refused.status_code == 507
    assert refused.mimetype == "text/plain"  # the protocol's answer, not a page
    assert refused.headers["Tus-Resumable"] == "1.0.0"
    assert tus.offset(location) == 2 * MiB
    assert upload_files(desk, location) == ["part-000000.gpg"]
    assert listed(desk) == before
    assert leftovers(desk) == []
    assert_logged_once(caplog)

    space.free()
    resumed = tus.patch(location, 2 * MiB, data[2 * MiB:])
    assert resumed.status_code == 204, resumed.text
    assert resumed.headers["Upload-Offset"] == str(len(data))
    (obj,) = read_objects(desk.config, journalist)
    assert obj.plaintext == data
    parts = obj.record["parts"]
    assert isinstance(parts, list)
    assert [p["size"] for p in parts] == [2 * MiB, 4 * MiB]
    assert listed(desk).uploads == []
    assert list(desk.store.uploads.iterdir()) == []


# SQLite on a full disk


@dataclass
class DatabaseDisk:
    """A desk whose database lives alone on a small filesystem (its store does not), so that
    the database, not the store, is what runs out of room."""

    disk: Disk
    desk: Services
    watcher: sqlite3.Connection

    def fill(self) -> None:
        """Leave the database no room to write a single page."""
        # An emptied write-ahead log must grow for the next write; a reused one would not.
        busy, _, _ = self.watcher.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        self.disk.fill(0)

    def integrity(self) -> str:
        """SQLite's own verdict on the database file."""
        return ", ".join(row[0] for row in self.watcher.execute("PRAGMA integrity_check"))


@pytest.fixture
def database_disk(tmp_path: Path, journalist: Keypair) -> Iterator[DatabaseDisk]:
    """A desk with its database on its own small filesystem."""
    with small_disk(tmp_path / "database-disk", DATABASE_DISK_BYTES) as made:
        need_a_real_filesystem(made)
        database = made.path / "desk.db"
        config = Config(data_dir=tmp_path / "data", database_url=f"sqlite:///{database}",
                        max_upload_bytes=64 * MiB, kdf=CHEAP_KDF)
        init_desk(config)
        services = open_services(config)
        with services.sessions() as session:
            add_journalist(session, services.gpg, "alice", journalist.public_key.read_bytes())
            session.commit()
        # Held open for the whole test, so SQLite keeps its log and index files meanwhile.
        watcher = sqlite3.connect(database, isolation_level=None)
        try:
            yield DatabaseDisk(made, services, watcher)
        finally:
            watcher.close()
            services.engine.dispose()


@pytest.mark.parametrize("sending", ["form", "tus creation", "tus last part"])
def test_full_database_is_507_stays_intact_and_works_once_space_is_freed(
        database_disk: DatabaseDisk, journalist: Keypair, sending: str,
        caplog: pytest.LogCaptureFixture) -> None:
    desk = database_disk.desk
    source = SourceBrowser(create_app(desk.config, "source", services=desk).test_client())
    source.get_codename()
    tus = TusTestSource(source)
    data = os.urandom(300 * KiB)
    location = ""
    if sending == "tus last part":
        location = tus.new(len(data), metadata("last.mp4"))
        assert tus.patch(location, 0, data[:100 * KiB]).status_code == 204
    before = listed(desk)

    def send() -> TestResponse:
        if sending == "form":
            return source.send("words", (("clip.mp4", data),))
        if sending == "tus creation":
            return tus.create(len(data))
        return tus.patch(location, 100 * KiB, data[100 * KiB:])

    database_disk.fill()
    refused = send()

    if sending == "form":
        assert_no_space_page(refused)
    else:
        assert refused.status_code == 507
        assert refused.mimetype == "text/plain"
    assert_logged_once(caplog)
    assert database_disk.integrity() == "ok"
    assert listed(desk) == before
    assert leftovers(desk) == []
    if sending == "tus last part":
        assert tus.offset(location) == 100 * KiB
        assert upload_files(desk, location) == ["part-000000.gpg"]
    else:
        assert list(desk.store.uploads.iterdir()) == []

    database_disk.disk.free()
    accepted = send()
    assert accepted.status_code == {"form": 200, "tus creation": 201}.get(sending, 204)
    assert database_disk.integrity() == "ok"
    if sending != "tus creation":
        stored = [o.plaintext for o in read_objects(desk.config, journalist)]
        assert sorted(stored) == sorted([data, b"words"] if sending == "form" else [data])


def test_login_whose_session_cannot_be_saved_on_a_full_database_is_507(
        database_disk: DatabaseDisk, caplog: pytest.LogCaptureFixture) -> None:
    desk = database_disk.desk
    app = create_app(desk.config, "source", services=desk)
    codename = SourceBrowser(app.test_client()).get_codename()
    client = app.test_client()
    form = {"csrf_token": csrf_token(client.get("/login").text), "codename": codename}

    database_disk.fill()
    # The login itself only reads; saving its new session, after the view, is what fails.
    refused = client.post("/login", data=form)
    assert_no_space_page(refused)
    assert any(NO_SPACE_LOG in r.getMessage() for r in caplog.records)
    assert database_disk.integrity() == "ok"

    database_disk.disk.free()
    assert client.post("/login", data=form).status_code == 302
    assert client.get("/submit").status_code == 200
    assert database_disk.integrity() == "ok"


# A real server


@dataclass
class Browser:
    """A source's browser against the real server: a session with a codename, and the submit
    page's CSRF token."""

    http: requests.Session
    url: str
    token: str

    @classmethod
    def start(cls, server: Server) -> Browser:
        """Landing page, codename, submit page."""
        http = requests.Session()
        landing = http.get(server.url + "/", timeout=TIMEOUT)
        page = http.post(server.url + "/generate",
                         data={"csrf_token": csrf_token(landing.text)}, timeout=TIMEOUT)
        assert CODENAME_RE.search(page.text), "no codename shown"
        form = http.get(server.url + "/submit", timeout=TIMEOUT)
        return cls(http, server.url, csrf_token(form.text))

    def send(self, body: FormBody | Iterator[bytes], content_type: str) -> requests.Response:
        """Post a form body (a generator is sent in chunks, without a length)."""
        data = body.encode() if isinstance(body, FormBody) else body
        return self.http.post(self.url + "/submit", data=data, timeout=TIMEOUT,
                              headers={"Content-Type": content_type})


def filling_chunks(data: bytes, at: int, disk: Disk) -> Iterator[bytes]:
    """`data` in pieces; the disk fills once `at` bytes have gone, as if another upload took
    the room meanwhile."""
    for start in range(0, len(data), 256 * KiB):
        if start == at:
            disk.fill(0)
        yield data[start:start + 256 * KiB]


def log_lines(server: Server, text: str) -> list[str]:
    """The server log's lines that contain `text`."""
    return [line for line in server.log.read_text().splitlines() if text in line]


def test_real_server_refuses_a_form_upload_without_room_and_recovers_without_restart(
        desk: Services, space: Disk, server: Server, journalist: Keypair) -> None:
    need_a_real_filesystem(space)
    assert wait_for(lambda: len(server.worker_pids()) == GUNICORN_SETTINGS["workers"], 20)
    workers = server.worker_pids()
    browser = Browser.start(server)
    video = os.urandom(8 * MiB)
    before = listed(desk)

    body = FormBody().field("csrf_token", browser.token).field("message", "at dawn")
    body.file("station.mp4", video)
    # In chunks, without a length: the disk fills while it arrives, and the write fails.
    page = browser.send(filling_chunks(body.encode(), 2 * MiB, space), body.content_type)

    assert_no_space_page(page)
    assert listed(desk) == before
    assert leftovers(desk) == []
    assert len(log_lines(server, NO_SPACE_LOG)) == 1
    assert log_lines(server, "Traceback") == []

    space.free()
    page = browser.send(body, body.content_type)
    assert page.status_code == 200, page.text
    assert server.process.poll() is None
    assert server.worker_pids() == workers  # the same processes, not restarted
    stored = sorted(obj.plaintext for obj in read_objects(desk.config, journalist))
    assert stored == sorted([b"at dawn", video])


def test_real_server_tus_upload_waits_out_a_full_disk_and_resumes(
        desk: Services, space: Disk, server: Server, journalist: Keypair) -> None:
    need_a_real_filesystem(space)
    remote = RemoteSource.start(server)
    data = os.urandom(6 * MiB)
    location = remote.new(len(data), metadata("resumed.mp4", "video/mp4"))
    first = remote.request("PATCH", location, data[:2 * MiB],
                           **{"Content-Type": OCTETS, "Upload-Offset": "0"})
    assert first.status_code == 204

    space.fill(leave=1 * MiB)
    refused = remote.request("PATCH", location, data[2 * MiB:],
                             **{"Content-Type": OCTETS, "Upload-Offset": str(2 * MiB)})
    assert refused.status_code == 507  # an answer, not a dropped connection
    assert remote.offset(location) == 2 * MiB
    created = remote.request("POST", "/uploads/", **{"Upload-Length": str(KiB)})
    assert created.status_code == 507
    assert upload_files(desk, location) == ["part-000000.gpg"]
    assert leftovers(desk) == []
    assert len(log_lines(server, NO_SPACE_LOG)) == 2
    assert log_lines(server, "Traceback") == []

    space.free()
    resumed = remote.request("PATCH", location, data[2 * MiB:],
                             **{"Content-Type": OCTETS, "Upload-Offset": str(2 * MiB)})
    assert resumed.status_code == 204, resumed.text
    (obj,) = read_objects(desk.config, journalist)
    assert obj.plaintext == data
    with desk.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Upload)) == 0
