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

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from werkzeug.test import TestResponse

import crypto.gpg
from desk.app import create_app
from desk.config import Config
from desk.intake import shape
from desk.ops.serve import GUNICORN_SETTINGS
from desk.records.models import Upload
from desk.services import Services
from desk.storage.store import SPACE_RESERVE
from tests.harness.data import KiB, MiB
from tests.harness.desks import add_account, desk_config, new_desk, read_objects
from tests.harness.disk import (
    NO_SPACE_LOG,
    DatabaseDisk,
    Disk,
    FillingBody,
    assert_logged_once,
    assert_no_space_page,
    filling_chunks,
    leftovers,
    listed,
    log_lines,
    post_form,
    small_disk,
    upload_files,
)
from tests.harness.forms import FormBody, csrf_token
from tests.harness.gpg import Keypair
from tests.harness.http import HttpBrowser, open_source_session
from tests.harness.servers import Server, wait_for
from tests.harness.tus import OCTETS, assert_parts, metadata, tail_at
from tests.harness.web import SourceBrowser, TusTestSource

# Room for the reserve the desk keeps free (SPACE_RESERVE) plus the uploads the tests send.
DISK_BYTES = SPACE_RESERVE + 64 * MiB
DATABASE_DISK_BYTES = 8 * MiB


# A filesystem whose free space the test sets


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """A small filesystem of the test's own."""
    with small_disk(tmp_path / "disk", DISK_BYTES) as made:
        yield made


@pytest.fixture
def config(disk: Disk) -> Config:
    """conftest's desk configuration, with the data directory on `disk`."""
    return desk_config(disk.path / "data")


@pytest.fixture
def space(disk: Disk, desk: Services) -> Disk:
    """`disk` under the desk, whose free space the test sets."""
    disk.store = desk.store
    return disk


def need_a_real_filesystem(disk: Disk) -> None:
    """Skip a test that the store's hook cannot stand in for."""
    if not disk.mounted:
        pytest.skip("needs a small filesystem of its own, and this test may not mount one")


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


def test_tus_patch_that_runs_out_of_space_keeps_the_acknowledged_parts_and_resumes(
        desk: Services, space: Disk, source: SourceBrowser, journalist: Keypair,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shape, "simulated_part_size", MiB)
    tus = TusTestSource(source)
    data = os.urandom(6 * MiB)
    location = tus.new(len(data), metadata("resumed.mp4", "video/mp4"))
    assert tus.patch(location, 0, data[:2 * MiB]).status_code == 204
    acknowledged = ["part-000000.gpg", "part-000001.gpg"]  # its tail piece used up and gone
    assert upload_files(desk, location) == acknowledged
    before = listed(desk)

    space.fill(leave=1 * MiB)
    refused = tus.patch(location, 2 * MiB, data[2 * MiB:])
    assert refused.status_code == 507
    assert refused.mimetype == "text/plain"  # the protocol's answer, not a page
    assert refused.headers["Tus-Resumable"] == "1.0.0"
    assert tus.offset(location) == 2 * MiB
    assert upload_files(desk, location) == acknowledged
    assert listed(desk) == before
    assert leftovers(desk) == []
    assert_logged_once(caplog)

    space.free()
    resumed = tus.patch(location, 2 * MiB, data[2 * MiB:])
    assert resumed.status_code == 204, resumed.text
    assert resumed.headers["Upload-Offset"] == str(len(data))
    (obj,) = read_objects(desk.config, journalist)
    assert obj.plaintext == data
    assert_parts(obj.record, data)  # six parts of 1 MiB, however the bytes were sent
    assert listed(desk).uploads == []
    assert list(desk.store.uploads.iterdir()) == []


# SQLite on a full disk


@pytest.fixture
def database_disk(tmp_path: Path, journalist: Keypair) -> Iterator[DatabaseDisk]:
    """A desk with its database on its own small filesystem."""
    with small_disk(tmp_path / "database-disk", DATABASE_DISK_BYTES) as made:
        need_a_real_filesystem(made)
        database = made.path / "desk.db"
        services = new_desk(desk_config(tmp_path / "data", database=database))
        add_account(services, "alice", journalist)
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
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shape, "simulated_part_size", 64 * KiB)
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
        # What the first PATCH left: one part cut, and the tail piece that holds the rest.
        assert tus.offset(location) == 100 * KiB
        assert upload_files(desk, location) == [tail_at(0), "part-000000.gpg"]
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


def test_real_server_refuses_a_form_upload_without_room_and_recovers_without_restart(
        desk: Services, space: Disk, server: Server, journalist: Keypair) -> None:
    need_a_real_filesystem(space)
    assert wait_for(lambda: len(server.worker_pids()) == GUNICORN_SETTINGS["workers"], 20)
    workers = server.worker_pids()
    browser = HttpBrowser.with_codename(server.url)
    video = os.urandom(8 * MiB)
    before = listed(desk)

    body = FormBody().field("csrf_token", browser.form_token()).field("message", "at dawn")
    body.file("station.mp4", video)
    # In chunks, without a length: the disk fills while it arrives, and the write fails.
    page = browser.post(filling_chunks(body.encode(), 2 * MiB, space), body.content_type)

    assert_no_space_page(page)
    assert listed(desk) == before
    assert leftovers(desk) == []
    assert len(log_lines(server, NO_SPACE_LOG)) == 1
    assert log_lines(server, "Traceback") == []

    space.free()
    page = browser.post(body)
    assert page.status_code == 200, page.text
    assert server.process.poll() is None
    assert server.worker_pids() == workers  # the same processes, not restarted
    stored = sorted(obj.plaintext for obj in read_objects(desk.config, journalist))
    assert stored == sorted([b"at dawn", video])


def test_real_server_tus_upload_waits_out_a_full_disk_and_resumes(
        desk: Services, space: Disk, server: Server, journalist: Keypair) -> None:
    need_a_real_filesystem(space)
    remote = open_source_session(server.url)
    data = os.urandom(6 * MiB)
    location = remote.new_upload(len(data), metadata("resumed.mp4", "video/mp4"))
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
    # The first body waits in the sealed tail (parts of 64 MiB); the refused one left nothing.
    assert upload_files(desk, location) == [tail_at(0)]
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
