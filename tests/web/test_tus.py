"""Resumable uploads: the tus 1.0.0 endpoint at /uploads/ (desk/web/source/tus_views.py and
desk/intake/tus.py), through the Flask test client: protocol answers, checksums, the upload's
lock, expiry, a full disk, and the finished upload as a normal object. What depends on real
network behaviour (an independent tus client, connections that die mid-body, two PATCHes at
once) is in tests/e2e/test_tus_server.py.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func
from sqlalchemy import select as sql_select

from desk.app import create_app
from desk.intake import shape, tus
from desk.intake.ingest import ItemWriter
from desk.records.models import CustodyRecord, Item, Upload
from desk.services import Services
from desk.storage.store import Staging
from tests.harness.data import KiB, MiB, sha256
from tests.harness.desks import run_desk
from tests.harness.forms import csrf_token
from tests.harness.gpg import Keypair
from tests.harness.tus import (
    OCTETS,
    TUS,
    assert_parts,
    b64,
    checksum,
    held,
    metadata,
    only_object,
    tail_at,
    upload_folder,
    upload_id,
    upload_rows,
    uploads_left,
)
from tests.harness.web import SourceBrowser, TusTestSource, source_log_in, source_log_out


@pytest.fixture
def tus_source(source: SourceBrowser) -> TusTestSource:
    """A source with a codename and its submit page's CSRF token."""
    return TusTestSource(source)


def second_source(app: Flask) -> TusTestSource:
    """Another browser with its own, new codename."""
    browser = SourceBrowser(app.test_client())
    browser.get_codename()
    return TusTestSource(browser)


# 1. Protocol answers


def test_options_advertises_version_extensions_and_checksums(client: FlaskClient) -> None:
    response = client.options("/uploads/")
    assert response.status_code in (200, 204)
    assert "1.0.0" in response.headers["Tus-Version"].split(",")
    extensions = set(response.headers["Tus-Extension"].split(","))
    assert {"creation", "expiration", "termination", "checksum"} <= extensions
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256"}
    assert int(response.headers["Tus-Max-Size"]) == 64 * MiB


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0"])
def test_missing_or_other_tus_resumable_is_412(
        desk: Services, tus_source: TusTestSource, version: str | None) -> None:
    location = tus_source.new(10)
    headers = {"X-CSRFToken": tus_source.token, "Upload-Length": "10", "Upload-Offset": "0"}
    if version is not None:
        headers["Tus-Resumable"] = version
    client = tus_source.client
    answers = [client.post("/uploads/", headers=headers),
               client.head(location, headers=headers),
               client.patch(location, data=b"0123456789", content_type=OCTETS,
                            headers=headers),
               client.delete(location, headers=headers)]
    assert [a.status_code for a in answers] == [412] * 4
    assert all(a.headers["Tus-Version"] == "1.0.0" for a in answers)
    assert len(upload_rows(desk)) == 1
    assert tus_source.offset(location) == 0


@pytest.mark.parametrize("content_type", [
    "application/octet-stream", "text/plain", "multipart/form-data; boundary=x"])
def test_patch_with_another_content_type_is_415(
        tus_source: TusTestSource, content_type: str) -> None:
    location = tus_source.new(10)
    response = tus_source.patch(location, 0, b"0123456789", content_type=content_type)
    assert response.status_code == 415
    assert tus_source.offset(location) == 0


def test_patch_at_the_wrong_offset_is_409(desk: Services, tus_source: TusTestSource) -> None:
    location = tus_source.new(20)
    assert tus_source.patch(location, 5, b"x" * 5).status_code == 409
    assert tus_source.patch(location, 0, b"a" * 10).status_code == 204
    for stale in (0, 5, 15):
        response = tus_source.patch(location, stale, b"b" * 5)
        assert response.status_code == 409, stale
    assert tus_source.offset(location) == 10
    # The body waits, sealed, in the tail: a part is cut only from a whole part's bytes.
    assert held(upload_folder(desk, location)) == [tail_at(0)]


def test_upload_length_over_the_limit_is_413(
        desk: Services, tus_source: TusTestSource) -> None:
    assert desk.config.max_upload_bytes == 64 * MiB
    assert tus_source.create(64 * MiB + 1).status_code == 413
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []
    assert tus_source.create(64 * MiB).status_code == 201  # exactly the limit is fine


@pytest.mark.parametrize("header", ["", "-1", "ten", "1e3"])
def test_missing_or_bad_upload_length_is_400(
        desk: Services, tus_source: TusTestSource, header: str) -> None:
    response = tus_source.client.post("/uploads/", headers=tus_source.headers(
        **({"Upload-Length": header} if header else {})))
    assert response.status_code == 400
    assert upload_rows(desk) == []


@pytest.mark.parametrize("meta", ["filename !!notbase64", "filename", "a b,a b", "é YQ=="])
def test_bad_upload_metadata_is_400(
        desk: Services, tus_source: TusTestSource, meta: str) -> None:
    response = tus_source.create(10, meta)
    if meta == "filename":  # a key without a value is legal tus
        assert response.status_code == 201
        return
    assert response.status_code == 400
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []


def test_patch_body_past_upload_length_is_400(
        desk: Services, tus_source: TusTestSource) -> None:
    location = tus_source.new(10)
    assert tus_source.patch(location, 0, b"x" * 11).status_code == 400
    assert tus_source.patch(location, 0, b"x" * 4).status_code == 204
    assert tus_source.patch(location, 4, b"y" * 7).status_code == 400
    assert tus_source.offset(location) == 4
    assert held(upload_folder(desk, location)) == [tail_at(0)]


def test_head_reports_offset_length_and_expiry_uncached(tus_source: TusTestSource) -> None:
    location = tus_source.new(100, metadata("a.mp4"))
    assert tus_source.patch(location, 0, b"z" * 30).status_code == 204
    response = tus_source.head(location)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == "30"
    assert response.headers["Upload-Length"] == "100"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "no-store" in response.headers["Cache-Control"]
    assert response.data == b""
    expires = parsedate_to_datetime(response.headers["Upload-Expires"])
    now = datetime.now(UTC)
    assert now + timedelta(days=tus.UPLOAD_DAYS) <= expires \
        <= now + timedelta(days=tus.UPLOAD_DAYS + 1)
    # Creation and PATCH announce the same expiry.
    patched = tus_source.patch(location, 30, b"z")
    assert patched.headers["Upload-Expires"] == response.headers["Upload-Expires"]


def test_delete_terminates_the_upload_and_its_parts(
        desk: Services, tus_source: TusTestSource) -> None:
    location = tus_source.new(100)
    assert tus_source.patch(location, 0, b"q" * 40).status_code == 204
    folder = upload_folder(desk, location)
    assert held(folder) == [tail_at(0)]
    assert tus_source.delete(location).status_code == 204
    assert tus_source.head(location).status_code == 404
    assert tus_source.patch(location, 40, b"q").status_code == 404
    assert tus_source.delete(location).status_code == 404
    assert not folder.exists()
    assert upload_rows(desk) == []
    assert list((desk.config.store_dir / "objects").iterdir()) == []


def test_another_session_cannot_see_or_touch_an_upload(
        desk: Services, app: Flask, tus_source: TusTestSource) -> None:
    location = tus_source.new(100, metadata("mine.mp4"))
    assert tus_source.patch(location, 0, b"m" * 10).status_code == 204
    other = second_source(app)
    assert other.head(location).status_code == 404
    assert other.patch(location, 10, b"o" * 10).status_code == 404
    assert other.delete(location).status_code == 404
    # The owner's upload is untouched.
    assert tus_source.offset(location) == 10
    assert held(upload_folder(desk, location)) == [tail_at(0)]
    # A made-up id is the same 404.
    assert tus_source.head("/uploads/" + secrets.token_hex(16)).status_code == 404


def test_without_the_csrf_header_nothing_is_stored(
        desk: Services, tus_source: TusTestSource) -> None:
    client = tus_source.client
    created = client.post("/uploads/", headers={**TUS, "Upload-Length": "10"})
    assert created.status_code == 400
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []
    location = tus_source.new(10)
    patched = client.patch(location, data=b"0123456789", content_type=OCTETS,
                           headers={**TUS, "Upload-Offset": "0"})
    assert patched.status_code == 400
    forged = client.patch(location, data=b"0123456789", content_type=OCTETS,
                          headers={**TUS, "Upload-Offset": "0", "X-CSRFToken": "forged"})
    assert forged.status_code == 400
    assert client.delete(location, headers=TUS).status_code == 400
    assert tus_source.offset(location) == 0
    assert list(upload_folder(desk, location).glob("part-*")) == []
    assert list((desk.config.store_dir / "objects").iterdir()) == []


def test_without_a_codename_creation_is_403(desk: Services, client: FlaskClient) -> None:
    token = csrf_token(client.get("/").text)  # a session, but no codename yet
    response = client.post("/uploads/", headers={**TUS, "X-CSRFToken": token,
                                                 "Upload-Length": "10"})
    assert response.status_code == 403
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []




def test_zero_length_upload_is_published_at_creation(
        desk: Services, tus_source: TusTestSource, journalist: Keypair) -> None:
    response = tus_source.create(0, metadata("empty.txt", "text/plain"))
    assert response.status_code == 201
    assert response.headers[tus.SHA256_HEADER] == sha256(b"")
    assert upload_rows(desk) == []
    obj = only_object(desk, journalist)
    assert obj.plaintext == b""
    assert obj.record["filename"] == "empty.txt"


# 2. Checksums


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_final_patch_checksum_is_checked_and_a_mismatch_is_discarded(
        desk: Services, tus_source: TusTestSource, journalist: Keypair, algorithm: str) -> None:
    data = os.urandom(300 * KiB)
    location = tus_source.new(len(data), metadata("checked.bin"))
    folder = upload_folder(desk, location)
    assert tus_source.patch(location, 0, data[:100 * KiB]).status_code == 204
    rest = data[100 * KiB:]
    wrong = rest[:-1] + bytes([rest[-1] ^ 1])
    refused = tus_source.patch(location, 100 * KiB, rest,
                               **{"Upload-Checksum": checksum(algorithm, wrong)})
    assert refused.status_code == 460, refused.text
    assert tus_source.offset(location) == 100 * KiB
    assert held(folder) == [tail_at(0)]
    unknown = tus_source.patch(location, 100 * KiB, rest,
                               **{"Upload-Checksum": "md5 " + b64(bytes(16))})
    assert unknown.status_code == 400
    accepted = tus_source.patch(location, 100 * KiB, rest,
                                **{"Upload-Checksum": checksum(algorithm, rest)})
    assert accepted.status_code == 204, accepted.text
    assert accepted.headers["Upload-Offset"] == str(len(data))
    assert accepted.headers[tus.SHA256_HEADER] == sha256(data)
    obj = only_object(desk, journalist)
    assert obj.plaintext == data
    assert_parts(obj.record, data)
    assert not folder.exists()




@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_non_final_patch_with_a_correct_checksum_advances(
        desk: Services, tus_source: TusTestSource, algorithm: str) -> None:
    data = os.urandom(300 * KiB)
    location = tus_source.new(len(data))
    first = tus_source.patch(location, 0, data[:100 * KiB],
                             **{"Upload-Checksum": checksum(algorithm, data[:100 * KiB])})
    assert first.status_code == 204
    assert first.headers["Upload-Offset"] == str(100 * KiB)
    assert tus_source.offset(location) == 100 * KiB
    assert held(upload_folder(desk, location)) == [tail_at(0)]


def test_non_final_patch_with_a_wrong_checksum_is_460(
        desk: Services, tus_source: TusTestSource) -> None:
    data = os.urandom(300 * KiB)
    location = tus_source.new(len(data))
    refused = tus_source.patch(location, 0, data[:100 * KiB],
                               **{"Upload-Checksum": checksum("sha256", data[:99 * KiB])})
    assert tus_source.offset(location) == 0
    assert list(upload_folder(desk, location).glob("part-*")) == []
    assert refused.status_code == 460


# 3. The lock


def test_upload_stays_locked_while_its_last_part_is_published(
        desk: Services, tus_source: TusTestSource, monkeypatch: pytest.MonkeyPatch) -> None:
    location = tus_source.new(20)
    assert tus_source.patch(location, 0, b"a" * 10).status_code == 204
    answers: list[int | None] = []
    finish = ItemWriter.finish

    def finish_and_try_the_lock(self: ItemWriter, staging: Staging, *args: object,
                                **kwargs: object) -> object:
        # What a second PATCH does on arrival, while this one is publishing.
        try:
            with tus.locked(desk.store, upload_id(location)):
                answers.append(None)
        except tus.TusError as exc:
            answers.append(exc.status)
        return finish(self, staging, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ItemWriter, "finish", finish_and_try_the_lock)
    assert tus_source.patch(location, 10, b"b" * 10).status_code == 204
    assert answers == [423]


# 4. Expiry


def expire(desk: Services, location: str) -> None:
    """Move an upload's expiry date into the past."""
    with desk.sessions() as session:
        upload = session.get(Upload, upload_id(location))
        assert upload is not None
        upload.expires_on = datetime.now(UTC).date() - timedelta(days=1)
        session.commit()


def test_expired_upload_is_gone_and_purge_drops_its_row(
        desk: Services, tus_source: TusTestSource) -> None:
    kept = tus_source.new(100)
    location = tus_source.new(100)
    assert tus_source.patch(location, 0, b"e" * 10).status_code == 204
    expire(desk, location)
    assert tus_source.head(location).status_code in (404, 410)
    assert tus_source.patch(location, 10, b"e" * 10).status_code in (404, 410)
    assert tus_source.offset(kept) == 0
    result = run_desk("purge", data_dir=desk.config.data_dir)
    assert result.returncode == 0, result.stderr
    assert [row.id for row in upload_rows(desk)] == [upload_id(kept)]
    assert tus_source.head(location).status_code == 404
    assert upload_folder(desk, kept).is_dir()




def test_purge_removes_an_expired_uploads_folder(
        desk: Services, tus_source: TusTestSource) -> None:
    location = tus_source.new(100)
    assert tus_source.patch(location, 0, b"e" * 10).status_code == 204
    expire(desk, location)
    result = run_desk("purge", data_dir=desk.config.data_dir)
    assert result.returncode == 0, result.stderr
    assert upload_rows(desk) == []
    assert not upload_folder(desk, location).exists()


def test_whole_parts_are_cut_from_the_sealed_tail_as_they_fill(
        desk: Services, tus_source: TusTestSource, journalist: Keypair,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shape, "simulated_part_size", 64 * KiB)
    data = os.urandom(200 * KiB + 7)
    location = tus_source.new(len(data), metadata("cut.bin"))
    folder = upload_folder(desk, location)
    assert tus_source.patch(location, 0, data[:40 * KiB]).status_code == 204
    assert held(folder) == [tail_at(0)]
    # 100 KiB in all: one whole part is cut; the piece it came from still holds the rest.
    assert tus_source.patch(location, 40 * KiB, data[40 * KiB:100 * KiB]).status_code == 204
    assert held(folder) == [tail_at(40 * KiB), "part-000000.gpg"]
    assert upload_rows(desk)[0].part_count == 1
    # 190 KiB: two more parts; every piece before 192 KiB is consumed and gone.
    assert tus_source.patch(location, 100 * KiB, data[100 * KiB:190 * KiB]).status_code == 204
    assert held(folder) == [tail_at(100 * KiB), "part-000000.gpg", "part-000001.gpg"]
    last = tus_source.patch(location, 190 * KiB, data[190 * KiB:])
    assert last.status_code == 204
    obj = only_object(desk, journalist)
    assert obj.plaintext == data
    assert_parts(obj.record, data)
    assert len(obj.record["parts"]) == 4  # type: ignore[arg-type]
    # The whole file never passed in one request, yet the desk hashed it on the way: the
    # record and the last answer, the source's receipt, both have it.
    assert obj.record["sha256"] == sha256(data)
    assert last.headers[tus.SHA256_HEADER] == sha256(data)
    assert not folder.exists()


def test_the_whole_files_sha256_carries_over_sessions_and_skips_discarded_bodies(
        desk: Services, app: Flask, source: SourceBrowser, journalist: Keypair,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The receipt's SHA-256 of a file sent in many PATCHes, with parts cut between them, a
    body refused on the way and the rest sent from a new session of the same codename."""
    monkeypatch.setattr(shape, "simulated_part_size", 64 * KiB)
    data = os.urandom(300 * KiB + 5)
    sender = TusTestSource(source)
    location = sender.new(len(data), metadata("two sittings.mp4"))
    assert sender.patch(location, 0, data[:100 * KiB]).status_code == 204
    assert sender.patch(location, 100 * KiB, data[100 * KiB:150 * KiB]).headers.get(
        tus.SHA256_HEADER) is None  # not finished: no digest yet
    refused = sender.patch(location, 150 * KiB, b"x" * (50 * KiB),
                           **{"Upload-Checksum": checksum("sha256", b"y")})
    assert refused.status_code == 460
    assert source.codename is not None
    source_log_out(source.client)
    assert source_log_in(source.client, source.codename).status_code == 302
    again = TusTestSource(source)
    assert again.offset(location) == 150 * KiB
    last = again.patch(location, 150 * KiB, data[150 * KiB:])
    assert last.status_code == 204
    assert last.headers[tus.SHA256_HEADER] == sha256(data)
    obj = only_object(desk, journalist)
    assert obj.plaintext == data
    assert obj.record["sha256"] == sha256(data)


def test_pieces_that_end_where_a_part_ends_are_deleted_once_it_is_cut(
        desk: Services, tus_source: TusTestSource, journalist: Keypair,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shape, "simulated_part_size", 64 * KiB)
    data = os.urandom(200 * KiB)
    location = tus_source.new(len(data), metadata("even.bin"))
    folder = upload_folder(desk, location)
    # A body of exactly one part: the part is cut and its piece, all used, goes at once.
    assert tus_source.patch(location, 0, data[:64 * KiB]).status_code == 204
    assert held(folder) == ["part-000000.gpg"]
    assert tus_source.patch(location, 64 * KiB, data[64 * KiB:100 * KiB]).status_code == 204
    assert held(folder) == [tail_at(64 * KiB), "part-000000.gpg"]
    # Two pieces that together end exactly at the end of the second part.
    assert tus_source.patch(location, 100 * KiB, data[100 * KiB:128 * KiB]).status_code == 204
    assert held(folder) == ["part-000000.gpg", "part-000001.gpg"]
    assert tus_source.patch(location, 128 * KiB, data[128 * KiB:]).status_code == 204
    obj = only_object(desk, journalist)
    assert obj.plaintext == data
    assert_parts(obj.record, data)


# 5. Out of disk space


def test_upload_larger_than_the_free_space_is_507(desk: Services) -> None:
    roomy = create_app(replace(desk.config, max_upload_bytes=1 << 60), "source", services=desk)
    browser = SourceBrowser(roomy.test_client())
    browser.get_codename()
    source = TusTestSource(browser)
    free = shutil.disk_usage(desk.config.data_dir).free
    response = source.create(free + 1, metadata("huge.mp4"))
    assert response.status_code == 507
    assert "Location" not in response.headers
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []
    assert source.create(1000).status_code == 201  # the same desk takes what fits


# 6. A finished upload is a normal object


def test_finished_upload_is_listed_recorded_in_custody_and_verifies(
        desk: Services, tus_source: TusTestSource, journalist: Keypair) -> None:
    data = os.urandom(200 * KiB)
    location = tus_source.new(len(data), metadata("normal.mp4", "video/mp4"))
    assert tus_source.patch(location, 0, data[:50 * KiB]).status_code == 204
    with desk.sessions() as session:  # nothing is listed before the last byte
        assert session.scalar(sql_select(func.count()).select_from(Item)) == 0
    assert tus_source.patch(location, 50 * KiB, data[50 * KiB:]).status_code == 204
    obj = only_object(desk, journalist)
    assert obj.plaintext == data
    with desk.sessions() as session:
        submissions = list(session.scalars(sql_select(Item)))
        assert [(s.id, s.kind, s.part_count) for s in submissions] \
            == [(obj.record["id"], "file", 1)]
        ingest = list(session.scalars(sql_select(CustodyRecord).where(
            CustodyRecord.event == "ingest")))
        assert [(e.version, e.subject, e.digest) for e in ingest] \
            == [(2, submissions[0].custody.subject, submissions[0].custody.digest)]
    assert obj.path.name == submissions[0].id
    result = run_desk("custody", "verify", data_dir=desk.config.data_dir)
    assert result.returncode == 0, result.stdout + result.stderr


# 7. Unfinished uploads on the submit page


def listed(client: FlaskClient) -> str:
    """The submit page's list of unfinished uploads (empty when it shows none)."""
    page = client.get("/submit").text
    start = page.find('id="unfinished"')
    return "" if start < 0 else page[start:page.index("</section>", start)]


def test_the_submit_page_lists_only_this_codenames_unfinished_uploads(
        desk: Services, app: Flask, source: SourceBrowser) -> None:
    """The name exists only sealed on the server: the page shows it from the session's owner
    secret, with the size and what arrived, for the browser to match a chosen file to."""
    sender = TusTestSource(source)
    location = sender.new(300 * KiB, metadata("станция 3.mp4", "video/mp4"))
    assert sender.patch(location, 0, b"s" * (100 * KiB)).status_code == 204
    gone = sender.new(100, metadata("old.mp4"))
    expire(desk, gone)
    done = sender.upload([b"d" * 10], metadata("done.txt"))
    assert source.codename is not None
    source_log_out(source.client)
    assert source_log_in(source.client, source.codename).status_code == 302
    shown = listed(source.client)
    assert f'data-upload="{location}"' in shown
    assert 'data-name="станция 3.mp4"' in shown
    assert f'data-size="{300 * KiB}"' in shown
    assert f'data-offset="{100 * KiB}"' in shown
    assert "102.4 kB of 307.2 kB" in shown.replace("\u2068", "").replace("\u2069", "")
    for left in (gone, done):  # expired, or finished
        assert upload_id(left) not in shown
    assert "old.mp4" not in shown
    # Another codename sees none of it.
    other = SourceBrowser(app.test_client())
    other.get_codename()
    assert listed(other.client) == ""
    assert upload_id(location) not in other.client.get("/submit").text
    # Once its last byte arrives it is a normal item, and no longer listed.
    again = TusTestSource(source)
    assert again.patch(location, 100 * KiB, b"s" * (200 * KiB)).status_code == 204
    assert listed(source.client) == ""
