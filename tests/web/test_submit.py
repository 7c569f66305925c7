"""A source submits a message and files through the form; journalists read them with stock gpg."""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from desk.intake.ingest import MAX_FORM_FILES
from desk.records.db import BUSY_TIMEOUT_MS
from desk.records.models import Item, Source
from desk.services import Services
from tests.harness.desks import files_under, find_markers, read_objects
from tests.harness.forms import FormBody, csrf_token
from tests.harness.gpg import Keypair, gpg
from tests.harness.web import SourceBrowser


def test_message_and_two_files_decrypt_with_stock_gpg(
        desk: Services, source: SourceBrowser, journalist: Keypair) -> None:
    video = os.urandom(5 * 1024 * 1024)
    note = b"platform 3, 06:40, two buses"
    page = source.send("They were moved at dawn.", (("station.mp4", video), ("notes.txt", note)))

    assert page.status_code == 200
    for data in (video, note):
        assert hashlib.sha256(data).hexdigest() in page.text
    assert str(len(video)) in page.text

    stored = {f"{obj.record['kind']}:{obj.record['filename']}": obj
              for obj in read_objects(desk.config, journalist)}
    assert set(stored) == {"message:None", "file:station.mp4", "file:notes.txt"}
    assert stored["message:None"].plaintext == b"They were moved at dawn."
    for name, data in (("station.mp4", video), ("notes.txt", note)):
        obj = stored[f"file:{name}"]
        assert obj.plaintext == data
        assert obj.record["sha256"] == hashlib.sha256(data).hexdigest()
        assert obj.record["size"] == len(data)
        assert obj.record["content_type"] == "video/mp4"


def test_rows_hold_dates_and_sizes_only(desk: Services, source: SourceBrowser) -> None:
    source.send("hello", (("a.mp4", b"x" * 1000),))
    with desk.sessions() as session:
        rows = session.scalars(select(Item)).all()
        assert sorted(r.kind for r in rows) == ["file", "message"]
        for row in rows:
            assert row.part_count == 1
            path = desk.store.path(row.id)
            assert row.ciphertext_size == sum(p.stat().st_size for p in path.iterdir())
            assert not hasattr(row, "filename")
        assert len(session.scalars(select(Source)).all()) == 1


def test_either_journalist_key_alone_decrypts_every_part(
        desk: Services, source: SourceBrowser, journalist: Keypair,
        second_journalist: Keypair) -> None:
    from desk.records.accounts import add_journalist

    with desk.sessions() as session:
        add_journalist(session, desk.gpg, "bob", second_journalist.public_key.read_bytes())
        session.commit()
    desk.recipients.invalidate()
    data = os.urandom(100_000)
    assert source.send("two keys", (("clip.mov", data),)).status_code == 200

    for keypair in (journalist, second_journalist):
        objects = read_objects(desk.config, keypair)
        assert sorted(o.plaintext for o in objects) == sorted([b"two keys", data])


def test_stored_parts_are_uncompressed_and_carry_no_name(
        desk: Services, source: SourceBrowser, journalist: Keypair) -> None:
    source.send("", (("secret-name.mp4", b"\0" * 200_000),))
    (obj,) = read_objects(desk.config, journalist)
    packets = gpg(journalist.home, "--list-packets", str(obj.path / "part-000000.gpg"))
    listing = packets.stdout.decode()
    assert "compressed packet" not in listing
    assert 'name=""' in listing
    # All-zero data would shrink to almost nothing if compressed.
    assert (obj.path / "part-000000.gpg").stat().st_size > 200_000


@pytest.mark.parametrize("filename", [
    b"../../../../etc/passwd",
    b"/absolute/path/video.mp4",
    "\u0634\u0627\u0647\u062f.mp4".encode(),
    b"latin1-\xe9t\xe9.mov",
    b"\xff\xfe\xfd-not-utf8.mp4",
    b"long-" + b"n" * 5000 + b".mp4",
])
def test_awkward_filenames_are_kept_only_inside_ciphertext(
        desk: Services, source: SourceBrowser, journalist: Keypair, filename: bytes) -> None:
    body = FormBody().field("csrf_token", source.form_token()).file(filename, b"frames")
    assert source.submit(body).status_code == 200

    (obj,) = read_objects(desk.config, journalist)
    if "filename_bytes" in obj.record:
        import base64
        assert base64.b64decode(str(obj.record["filename_bytes"])) == filename
    else:
        assert str(obj.record["filename"]).encode() == filename
    assert obj.plaintext == b"frames"
    names = [p.name.encode() for p in files_under(desk.config.data_dir)]
    assert all(filename not in name for name in names)
    assert not find_markers([filename[-40:]], desk.config.data_dir)


@pytest.mark.parametrize("message", ["", "   \r\n\t  "])
def test_empty_submission_is_refused_and_nothing_stored(
        desk: Services, source: SourceBrowser, message: str) -> None:
    body = FormBody().field("csrf_token", source.form_token()).field("message", message)
    body.file(b"", b"", content_type="application/octet-stream")  # an untouched file input
    page = source.submit(body)

    assert page.status_code == 400
    assert "write a message or choose at least one file" in page.text
    assert files_under(desk.config.store_dir) == []
    with desk.sessions() as session:
        assert session.scalars(select(Item)).all() == []


def test_missing_or_forged_csrf_token_stores_nothing(
        desk: Services, source: SourceBrowser) -> None:
    source.form_token()
    for body in (FormBody().file("a.mp4", b"data"),
                 FormBody().field("csrf_token", "forged").file("a.mp4", b"data"),
                 FormBody().file("a.mp4", b"data").field("csrf_token", source.form_token())):
        page = source.submit(body)
        assert page.status_code == 400
        assert "nothing was kept" in page.text
    assert files_under(desk.config.store_dir) == []


def test_submit_without_a_codename_is_refused(desk: Services, client: FlaskClient) -> None:
    assert client.get("/submit").status_code == 302
    page = client.post("/submit", data=FormBody().field("message", "x").encode(),
                       content_type="multipart/form-data; boundary=x")
    assert page.status_code == 400
    assert files_under(desk.config.store_dir) == []


def test_no_plaintext_marker_or_filename_reaches_the_disk(
        desk: Services, source: SourceBrowser, tmp_path: Path) -> None:
    markers = [secrets.token_hex(16).encode() for _ in range(3)]
    name = f"evidence-{markers[2].decode()}.mp4"
    video = os.urandom(2_000_000) + markers[0] + os.urandom(2_000_000)
    source.send(f"message {markers[1].decode()}", ((name, video),))

    assert len(files_under(desk.config.store_dir / "objects")) == 4
    assert find_markers(markers, desk.config.data_dir) == []


def test_file_parts_posted_elsewhere_are_refused_not_spooled(
        desk: Services, client: FlaskClient, tmp_path: Path) -> None:
    token = csrf_token(client.get("/").text)
    body = FormBody().field("csrf_token", token).file("big.mp4", os.urandom(600_000))
    page = client.post("/generate", data=body.encode(), content_type=body.content_type)
    assert page.status_code == 400
    assert "Traceback" not in page.text


def test_a_form_with_too_many_files_is_refused_calmly_and_keeps_nothing(
        desk: Services, source: SourceBrowser) -> None:
    """Review 2, finding 4b: one 91 KB post of 999 one-byte files made 999 items (2,000 gpg
    runs, 13.7 s of server time). One file past the cap is enough to show the refusal."""
    body = FormBody().field("csrf_token", source.form_token()).field("message", "and these")
    for number in range(MAX_FORM_FILES + 1):
        body.file(f"{number}.txt", b"x", content_type="text/plain")
    page = source.submit(body)
    assert page.status_code == 413
    assert "more than this desk accepts at once, so nothing was kept" in page.text
    with desk.sessions() as session:
        assert session.scalars(select(Item)).all() == []
    assert files_under(desk.store.staging_root) == []

    # The cap itself is a sending that goes through.
    body = FormBody().field("csrf_token", source.form_token())
    for number in range(MAX_FORM_FILES):
        body.file(f"{number}.txt", b"x", content_type="text/plain")
    assert source.submit(body).status_code == 200
    with desk.sessions() as session:
        assert len(session.scalars(select(Item)).all()) == MAX_FORM_FILES


def test_a_form_post_waits_out_a_writer_that_holds_the_lock_past_the_busy_timeout(
        desk: Services, source: SourceBrowser) -> None:
    """A post that took hours must not be lost because another writer held SQLite's write
    lock for longer than the busy timeout: before, it got a 500 and nothing was kept."""
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        db = sqlite3.connect(desk.config.data_dir / "desk.db", isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            held.set()
            release.wait(60)
            db.execute("ROLLBACK")
        finally:
            db.close()

    token = source.form_token()
    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert held.wait(60)
        # One busy timeout and a little more: the first wait for the lock runs out.
        timer = threading.Timer(BUSY_TIMEOUT_MS / 1000 + 1, release.set)
        timer.start()
        page = source.submit(FormBody().field("csrf_token", token)
                             .field("message", "sent over a slow circuit"))
    finally:
        release.set()
        holder.join(60)
    assert page.status_code == 200, page.text[:300]
    with desk.sessions() as session:
        assert [item.kind for item in session.scalars(select(Item))] == ["message"]
    assert files_under(desk.store.staging_root) == []
