"""Uploads in progress cannot take the desk from other sources, through a real server (review 2,
finding 3).

One codename made 271 empty tus uploads a second, each a row, a folder and a lock file, until
the disk's inodes ran out and every source got 507 on a disk 2% full, for the 7 days uploads
lived. Now: open uploads are capped for each source and for the whole desk, in number and in
bytes declared but not yet sent; every source's write leaves a reserve of bytes and inodes
that only the desk itself may use (journalists keep working); an upload's tail cannot grow an
inode per byte; and `desk purge` drops an upload still empty after a settle, within the hour.
Every refusal is the calm 507 a full disk gets, naming the setting in the server's log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from desk.intake.tus import MIN_PATCH_BYTES, SMALL_PIECES_ALLOWED
from desk.services import Services
from tests.harness.data import KiB, MiB
from tests.harness.desks import (
    PASSWORDS,
    add_account,
    desk_config,
    fresh_code,
    new_desk,
    read_objects,
    run_desk,
)
from tests.harness.disk import assert_no_space_page, log_lines, small_disk
from tests.harness.forms import FormBody
from tests.harness.gpg import Keypair
from tests.harness.http import (
    HttpBrowser,
    SourceSession,
    journalist_session,
    post_journalist_form,
)
from tests.harness.servers import Server, start_server
from tests.harness.tus import metadata, tail_pieces, upload_folder, upload_rows, uploads_left

TUS_NO_ROOM = "not enough space on the desk right now; nothing was kept"
# As fast as one client can, but bounded: ten times the default cap of one source.
ATTEMPTS = 200


def serve(desk: Services, tmp_path: Path, interface: str = "source", **settings: str
          ) -> Iterator[Server]:
    """An interface of `desk` under gunicorn with these DESK_* settings."""
    server = start_server(desk.config.data_dir, interface, log=tmp_path / f"{interface}.log",
                          tmpdir=tmp_path / f"{interface}-tmp", timeout=30, env={
                              "DESK_MAX_UPLOAD_BYTES": str(desk.config.max_upload_bytes),
                              # No settle of the server's own between a test's steps.
                              "DESK_SETTLE_INTERVAL": "24h", **settings})
    yield server
    server.stop(timeout=30)


def create(session: SourceSession, length: int) -> tuple[int, str]:
    """A tus creation of `length` bytes: its status and text."""
    answer = session.request("POST", "/uploads/", **{"Upload-Length": str(length),
                                                     "Upload-Metadata": metadata("clip.mp4")})
    return answer.status_code, answer.text


def flood(session: SourceSession, length: int, attempts: int = ATTEMPTS) -> list[int]:
    """Create uploads one after another, as fast as the server answers: the statuses."""
    return [create(session, length)[0] for _ in range(attempts)]


def send_whole(session: SourceSession, data: bytes) -> int:
    """A tus upload of `data` in one PATCH: the PATCH's status."""
    location = session.new_upload(len(data), metadata("honest.mp4"))
    return session.patch(location, 0, data).status_code


def form(browser: HttpBrowser, name: str, data: bytes) -> FormBody:
    """The submit form with one file and no message."""
    return FormBody().field("csrf_token", browser.form_token()).field("message", "") \
        .file(name, data)


def stored(desk: Services, journalist: Keypair) -> list[bytes]:
    """The plaintext of every stored item, sorted."""
    return sorted(obj.plaintext for obj in read_objects(desk.config, journalist))


@pytest.fixture
def source_server(desk: Services, tmp_path: Path) -> Iterator[Server]:
    """The source interface with the default caps."""
    yield from serve(desk, tmp_path)


@pytest.fixture
def small_desk_caps(desk: Services, tmp_path: Path) -> Iterator[Server]:
    """The source interface with small caps for the whole desk."""
    yield from serve(desk, tmp_path, DESK_UPLOADS_ALL_SOURCES="30",
                     DESK_UNFINISHED_ALL_SOURCES="8MiB")


def test_one_codename_creating_uploads_as_fast_as_it_can_stops_at_its_cap(
        desk: Services, source_server: Server, journalist: Keypair) -> None:
    attacker = HttpBrowser.with_codename(source_server.url).session()

    statuses = flood(attacker, MiB)

    assert statuses == [201] * 20 + [507] * (ATTEMPTS - 20)  # DESK_UPLOADS_PER_SOURCE: 20
    assert create(attacker, MiB) == (507, TUS_NO_ROOM)
    assert len(upload_rows(desk)) == len(uploads_left(desk)) == 20
    assert len(log_lines(source_server, "(DESK_UPLOADS_PER_SOURCE) are at their cap")) == \
        ATTEMPTS - 20 + 1
    # Another source still uploads, by tus and by the form.
    honest = HttpBrowser.with_codename(source_server.url)
    clip = os.urandom(300 * KiB)
    assert send_whole(honest.session(), clip) == 204
    assert honest.post(form(honest, "note.txt", b"a note")).status_code == 200
    assert stored(desk, journalist) == sorted([clip, b"a note"])
    assert log_lines(source_server, "Traceback") == []


def test_the_whole_desk_caps_open_uploads_and_the_bytes_they_still_expect(
        desk: Services, small_desk_caps: Server, journalist: Keypair) -> None:
    first, second = (HttpBrowser.with_codename(small_desk_caps.url).session()
                     for _ in range(2))

    assert flood(first, KiB, 25) == [201] * 20 + [507] * 5  # its own cap
    assert flood(second, KiB, 25) == [201] * 10 + [507] * 15  # the desk's: 30 open

    assert len(upload_rows(desk)) == 30
    assert log_lines(small_desk_caps, "(DESK_UPLOADS_ALL_SOURCES) are at their cap")
    # Room for more uploads, but not for more unfinished bytes than 8 MiB in all.
    third = HttpBrowser.with_codename(small_desk_caps.url)
    tus = third.session()
    for location in [f"/uploads/{row.id}" for row in upload_rows(desk)][:10]:
        assert first.request("DELETE", location).status_code in (204, 404)
        assert second.request("DELETE", location).status_code in (204, 404)
    assert len(upload_rows(desk)) == 20
    big = tus.new_upload(6 * MiB, metadata("big.mp4"))
    assert create(tus, 3 * MiB) == (507, TUS_NO_ROOM)
    assert log_lines(small_desk_caps, "(DESK_UNFINISHED_ALL_SOURCES) are at their cap")
    # What arrives whole is not held to it: a form, and an upload that finishes.
    note = os.urandom(2 * MiB)
    assert third.post(form(third, "note.mp4", note)).status_code == 200
    clip = os.urandom(6 * MiB)
    assert tus.patch(big, 0, clip).status_code == 204
    assert stored(desk, journalist) == sorted([clip, note])


def test_tiny_patches_cannot_each_take_an_inode(
        desk: Services, source_server: Server, journalist: Keypair) -> None:
    tus = HttpBrowser.with_codename(source_server.url).session()
    clip = os.urandom(3 * MiB)
    location = tus.new_upload(len(clip), metadata("clip.mp4"))

    statuses, offset = [], 0
    for _ in range(SMALL_PIECES_ALLOWED + 24):
        answer = tus.patch(location, offset, clip[offset:offset + 1])
        statuses.append(answer.status_code)
        offset = int(answer.headers.get("Upload-Offset", offset))

    assert statuses == [204] * SMALL_PIECES_ALLOWED + [400] * 24
    assert offset == tus.offset(location) == SMALL_PIECES_ALLOWED
    assert len(tail_pieces(upload_folder(desk, location))) == SMALL_PIECES_ALLOWED
    refused = tus.patch(location, offset, clip[offset:offset + 1])
    assert str(MIN_PATCH_BYTES) in refused.text
    # Bodies of at least the minimum still go, and so does a small one that ends the upload.
    end = offset + MIN_PATCH_BYTES
    assert tus.patch(location, offset, clip[offset:end]).status_code == 204
    last = len(clip) - 10
    assert tus.patch(location, end, clip[end:last]).status_code == 204
    assert tus.patch(location, last, clip[last:]).status_code == 204
    assert stored(desk, journalist) == [clip]


def test_an_abandoned_empty_upload_is_purged_after_a_settle(
        desk: Services, source_server: Server, journalist: Keypair) -> None:
    data_dir = desk.config.data_dir
    tus = HttpBrowser.with_codename(source_server.url).session()
    abandoned = tus.new_upload(MiB, metadata("never.mp4"))
    clip = os.urandom(MiB)
    started = tus.new_upload(len(clip), metadata("half.mp4"))
    assert tus.patch(started, 0, clip[:MiB // 2]).status_code == 204

    # Not yet: no settle has seen it, and rows hold only days.
    assert run_desk("purge", data_dir=data_dir, check=True)
    assert upload_folder(desk, abandoned).is_dir()
    # A settle (every 10 minutes on a running desk), then the next hourly purge.
    run_desk("settle", data_dir=data_dir, check=True)
    fresh = tus.new_upload(MiB, metadata("just now.mp4"))
    purged = run_desk("purge", data_dir=data_dir, check=True)

    assert "1 expired upload(s)" in purged.stdout
    assert not upload_folder(desk, abandoned).exists()
    assert tus.request("HEAD", abandoned).status_code == 404
    # One made since the settle, and one with bytes, stay.
    assert tus.offset(fresh) == 0
    assert tus.offset(started) == MiB // 2
    assert tus.patch(started, MiB // 2, clip[MiB // 2:]).status_code == 204
    assert stored(desk, journalist) == [clip]
    assert sorted(row.id for row in upload_rows(desk)) == [upload_folder(desk, fresh).name]


# An inode-starved store


INODES = 1200  # the whole data directory's filesystem: a fresh desk takes a few dozen
RESERVE = 200


@pytest.fixture
def starved(tmp_path: Path, journalist: Keypair) -> Iterator[Services]:
    """A desk whose data lives on a tmpfs of INODES files and folders, with alice able to log
    in as an admin."""
    with small_disk(tmp_path / "disk", 128 * MiB, INODES) as disk:
        if not disk.mounted:
            pytest.skip("needs a small filesystem of its own, and this test may not mount one")
        services = new_desk(desk_config(disk.path / "data"))
        add_account(services, "alice", journalist, admin=True, can_log_in=True)
        try:
            yield services
        finally:
            services.engine.dispose()


def free_inodes(desk: Services) -> int:
    """What the desk's user may still make on its data's filesystem."""
    return os.statvfs(desk.config.data_dir).f_favail


def test_an_inode_starved_store_keeps_its_reserve_for_the_desk(
        starved: Services, tmp_path: Path, journalist: Keypair) -> None:
    # No cap on open uploads here: the reserve alone must hold.
    source_server = next(serve(starved, tmp_path, DESK_UPLOADS_PER_SOURCE="100000",
                               DESK_UPLOADS_ALL_SOURCES="100000",
                               DESK_RESERVE_INODES=str(RESERVE),
                               DESK_RESERVE_BYTES="4MiB"))
    newsroom = next(serve(starved, tmp_path, "journalist"))
    try:
        honest = HttpBrowser.with_codename(source_server.url)
        attacker = HttpBrowser.with_codename(source_server.url).session()

        statuses = flood(attacker, KiB, INODES)

        made = statuses.count(201)  # an empty upload is a folder and a lock file
        assert made > INODES // 4
        assert statuses == [201] * made + [507] * (INODES - made)  # refused from then on
        assert free_inodes(starved) >= RESERVE
        # Sources get the calm 507, by tus and by the form.
        assert create(honest.session(), KiB) == (507, TUS_NO_ROOM)
        assert_no_space_page(honest.post(form(honest, "note.txt", b"a note")))
        # The desk itself still works in the reserve: a journalist logs in and replies,
        # with its custody entry; a settle runs.
        alice = journalist_session(newsroom.url, "alice", PASSWORDS["alice"],
                                   fresh_code(starved, "alice"))
        sources = [row.source_id for row in upload_rows(starved)]
        page = f"/sources/{sources[0]}"
        replied = post_journalist_form(alice, newsroom.url, page, f"{page}/replies",
                                       {"text": "we read you"})
        assert replied.status_code == 302
        assert list(starved.store.replies.iterdir())
        settled = run_desk("settle", data_dir=starved.config.data_dir)
        assert settled.returncode == 0, settled.stdout + settled.stderr
        # The attacker's empty uploads go at the purge after that settle, and sources send
        # again.
        run_desk("purge", data_dir=starved.config.data_dir, check=True)
        assert upload_rows(starved) == []
        clip = os.urandom(300 * KiB)
        assert send_whole(honest.session(), clip) == 204
        assert stored(starved, journalist) == [clip]
        assert log_lines(source_server, "Traceback") == []
    finally:
        source_server.stop(timeout=30)
        newsroom.stop(timeout=30)
