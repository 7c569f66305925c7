"""`desk doctor` (desk/ops/doctor.py): it finds every kind of debris an interrupted write leaves,
removes exactly that with --repair, and reports, but never touches, rows whose files are gone
and files the custody log recorded. Crashes of a real server are in
tests/assurance/test_crash.py."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from crypto.items import new_object_id
from crypto.names import LOCK_NAME, part_name, tail_name
from crypto.sealing import SealedWriter
from desk.ops.doctor import Finding, database_problems, examine, repair, sole_session
from desk.outbound.replies import ReplyTarget, write_web_reply
from desk.records.custody import verify_desk
from desk.records.items import delete_items
from desk.records.models import Item, Reply, Source, Upload
from desk.services import Services
from tests.harness.desks import files_under, read_objects, run_desk
from tests.harness.gpg import Keypair
from tests.harness.tus import held, parts_of
from tests.harness.web import SourceBrowser

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


@contextlib.contextmanager
def alone(desk: Services) -> Iterator[list[Finding]]:
    """What doctor finds, on the database held as --repair holds it."""
    desk.engine.dispose()
    with sole_session(desk.config.database_url) as session:
        yield examine(session, desk.store) + database_problems(session)


def findings(desk: Services) -> list[Finding]:
    """What doctor finds now."""
    with alone(desk) as found:
        return found


def repaired(desk: Services) -> tuple[list[Finding], list[Finding]]:
    """What --repair removes, and what it leaves."""
    desk.engine.dispose()
    with sole_session(desk.config.database_url) as session:
        removed = repair(examine(session, desk.store) + database_problems(session))
        return removed, examine(session, desk.store) + database_problems(session)


def kinds(found: list[Finding]) -> collections.Counter[str]:
    """How many findings of each kind."""
    return collections.Counter(f.kind for f in found)


def where(found: list[Finding]) -> set[Path]:
    """The paths findings name."""
    return {Path(f.where) for f in found}


def custody_intact(desk: Services) -> None:
    """`desk custody verify` would pass."""
    with desk.sessions() as session:
        verify_desk(session, desk.store, desk.signing_key.public_hex)
    desk.engine.dispose()


# The part size the tests' resumable uploads are cut with (the desk's is 64 MiB).
PART = 8192


class Desk:
    """A desk with one of everything a finished write leaves: a form submission, a resumable
    upload with one part recorded (one PATCH of exactly a part, so no tail piece is left), and
    a reply."""

    def __init__(self, desk: Services, source: SourceBrowser) -> None:
        self.services = desk
        self.store = desk.store
        assert source.send("hello", (("clip.mp4", os.urandom(50_000)),)).status_code == 200
        client: FlaskClient = source.client
        token = source.form_token()
        self.headers = {**TUS, "X-CSRFToken": token}
        self.client = client
        created = client.post("/uploads/", headers={**self.headers, "Upload-Length": "30000"})
        assert created.status_code == 201
        self.location = created.headers["Location"]
        self.sent = os.urandom(PART)
        assert self.patch(0, self.sent).status_code == 204
        self.upload_id = self.location.rsplit("/", 1)[-1]
        assert held(self.upload_folder) == [part_name(0)]
        with desk.sessions() as session:
            row = session.scalars(select(Source)).one()
            self.object_ids = sorted(session.scalars(select(Item.id)))
        self.reply_id = write_web_reply(desk, ReplyTarget.of(row), "a question", "alice").id
        desk.engine.dispose()

    def patch(self, offset: int, body: bytes) -> TestResponse:
        """PATCH `body` onto the resumable upload at `offset`, parts cut every PART bytes."""
        with parts_of(PART):
            return self.client.patch(self.location, data=body, content_type=OCTETS,
                                     headers={**self.headers, "Upload-Offset": str(offset)})

    @property
    def upload_folder(self) -> Path:
        """The resumable upload's folder."""
        return self.store.uploads / self.upload_id

    def snapshot(self) -> dict[Path, bytes]:
        """Every file of the finished writes, with its content."""
        roots = [self.store.objects / oid for oid in self.object_ids]
        roots += [self.store.replies / self.reply_id, self.upload_folder]
        return {path: path.read_bytes() for path in files_under(*roots)}


@pytest.fixture
def full(desk: Services, source: SourceBrowser) -> Desk:
    """`desk` after a source sent a message and a file, started a resumable upload, and got a
    reply."""
    return Desk(desk, source)


def test_finished_writes_leave_nothing_to_find(full: Desk) -> None:
    assert findings(full.services) == []
    result = run_desk("doctor", data_dir=full.services.config.data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Nothing found")


def test_every_kind_of_debris_is_found_and_repair_removes_only_it(full: Desk) -> None:
    store = full.store
    staging = store.staging_root / ("0f" * 16)
    staging.mkdir()
    (staging / ".tmp-part-000000.gpg").write_bytes(b"half a part")
    orphan_object = store.objects / new_object_id()
    orphan_object.mkdir()
    (orphan_object / "part-000000.gpg").write_bytes(b"ciphertext")
    (orphan_object / "meta.gpg").write_bytes(b"ciphertext")
    orphan_upload = store.uploads / new_object_id()
    orphan_upload.mkdir()
    (orphan_upload / ".tmp-part-000000.gpg").write_bytes(b"inside a removable folder")
    unrecorded = full.upload_folder / part_name(1)
    unrecorded.write_bytes(b"a part never recorded")
    record = full.upload_folder / "meta.gpg"
    record.write_bytes(b"a record never published")
    temp_part = full.upload_folder / f".tmp-{part_name(2)}"
    temp_part.write_bytes(b"a part being written")
    temp_in_object = store.objects / full.object_ids[0] / ".tmp-meta.gpg"
    temp_in_object.write_bytes(b"stray")
    orphan_reply = store.replies / new_object_id()
    orphan_reply.mkdir()
    (orphan_reply / "copy.gpg").write_bytes(b"ciphertext")
    before = full.snapshot()

    found = findings(full.services)
    assert kinds(found) == {"staging": 1, "object-without-row": 1, "upload-without-row": 1,
                            "unrecorded-part": 1, "unrecorded-metadata": 1,
                            "reply-without-row": 1, "temp-file": 2}
    assert where(found) == {staging, orphan_object, orphan_upload, unrecorded, record,
                            temp_part, temp_in_object, orphan_reply}
    assert all(f.removable for f in found)
    assert all(f.line().count("\t") == 2 for f in found)  # one line each

    removed, left = repaired(full.services)
    assert removed == found
    assert left == []
    assert not any(path.exists() for path in where(found))
    debris = {unrecorded, record, temp_part, temp_in_object}
    assert {p: d for p, d in full.snapshot().items()} == \
        {p: d for p, d in before.items() if p not in debris}
    custody_intact(full.services)


def test_cli_reports_one_line_each_and_repair_prints_what_it_removed(full: Desk) -> None:
    data_dir = full.services.config.data_dir
    stray = full.store.staging_root / "abc"
    stray.mkdir()
    unrecorded = full.upload_folder / part_name(1)
    unrecorded.write_bytes(b"x")
    full.services.engine.dispose()

    report = run_desk("doctor", data_dir=data_dir)
    assert report.returncode == 1
    lines = report.stdout.splitlines()
    assert sorted(lines[:2]) == sorted([
        f"staging\t{stray}\tan object or reply was being written here when the desk stopped; "
        "it was never acknowledged (--repair removes it)",
        f"unrecorded-part\t{unrecorded}\ta part written but never recorded (the row counts 1); "
        "the source resends it (--repair removes it)"])
    assert lines[2:] == ["2 finding(s); `desk doctor --repair` removes 2 of them."]
    assert report.stderr == ""  # no server has the database open

    repair_run = run_desk("doctor", "--repair", data_dir=data_dir)
    assert repair_run.returncode == 0, repair_run.stdout + repair_run.stderr
    assert sorted(repair_run.stdout.splitlines()) == sorted([
        f"removed\tstaging\t{stray}", f"removed\tunrecorded-part\t{unrecorded}",
        "Removed 2 thing(s) interrupted writes left; nothing else found."])
    assert not stray.exists()
    assert not unrecorded.exists()
    assert run_desk("doctor", data_dir=data_dir).returncode == 0


def test_rows_whose_files_are_gone_are_reported_and_never_repaired(full: Desk) -> None:
    store = full.store
    shutil.rmtree(store.objects / full.object_ids[0])
    (full.upload_folder / part_name(0)).unlink()
    (store.replies / full.reply_id / "copy.gpg").unlink()

    found = findings(full.services)
    assert kinds(found) == {"row-without-object": 1, "missing-part": 1, "row-without-reply": 1}
    assert not any(f.removable for f in found)
    shutil.rmtree(full.upload_folder)
    found = findings(full.services)
    assert kinds(found) == {"row-without-object": 1, "row-without-upload": 1,
                            "row-without-reply": 1}

    removed, left = repaired(full.services)
    assert removed == []
    assert left == found
    with full.services.sessions() as session:  # not a row went
        assert sorted(session.scalars(select(Item.id))) == full.object_ids
        assert list(session.scalars(select(Upload.id))) == [full.upload_id]
        assert list(session.scalars(select(Reply.id))) == [full.reply_id]
    full.services.engine.dispose()
    result = run_desk("doctor", "--repair", data_dir=full.services.config.data_dir)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == \
        "Removed 0 thing(s) interrupted writes left; 3 finding(s) need a person."


def test_files_of_a_committed_deletion_are_removed(
        full: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    services = full.services
    # A crash between committing the deletion and removing the files. The custody log's
    # delete entry no longer says which item it was (its key went with the row), so the
    # folder is what the deletion meant to remove.
    monkeypatch.setattr(type(services.store), "remove", lambda self, object_id: None)
    assert delete_items(services.writers, services.store, services.signing_key,
                        [full.object_ids[0]], "alice") == 1
    folder = services.store.objects / full.object_ids[0]
    assert folder.is_dir()

    found = findings(services)
    assert kinds(found) == {"object-without-row": 1}
    assert found[0].removable
    assert "deleted before its files were removed" in found[0].detail
    removed, left = repaired(services)
    assert removed == found
    assert left == []
    assert not folder.exists()
    custody_intact(services)


def test_files_whose_row_vanished_without_a_deletion_are_left_to_a_person(full: Desk) -> None:
    # Someone with the database file drops an item's row: custody still holds its ingest
    # entry, which no row explains and no delete entry closes.
    full.services.engine.dispose()
    connection = sqlite3.connect(full.services.config.data_dir / "desk.db")
    try:
        connection.execute("DELETE FROM submissions WHERE id = ?", (full.object_ids[0],))
        connection.commit()
    finally:
        connection.close()
    folder = full.store.objects / full.object_ids[0]

    found = findings(full.services)
    assert kinds(found) == {"object-without-row": 1}
    assert not found[0].removable
    assert "custody recorded it (ingest #" in found[0].detail
    removed, _ = repaired(full.services)
    assert removed == []
    assert folder.is_dir()


def test_a_box_the_source_deleted_is_removed_and_the_copy_kept(full: Desk) -> None:
    services = full.services
    with services.sessions() as session:
        reply = session.get(Reply, full.reply_id)
        assert reply is not None
        reply.source_deleted = True  # committed; the desk stopped before unlinking the box
        session.commit()
    box = services.store.replies / full.reply_id / "box"

    found = findings(services)
    assert kinds(found) == {"deleted-box": 1}
    assert where(found) == {box}
    removed, left = repaired(services)
    assert removed == found
    assert left == []
    assert not box.exists()
    assert (services.store.replies / full.reply_id / "copy.gpg").is_file()
    custody_intact(services)


def test_an_upload_folder_published_without_its_row_is_kept(full: Desk) -> None:
    # What desk/intake/tus.py did before it published hard links: the upload's own folder, lock file
    # and all, renamed into objects/ before the commit; a crash then leaves the upload's row
    # without its folder, and the folder (holding the acknowledged parts) without a row.
    (full.upload_folder / part_name(1)).write_bytes(b"the last part")
    (full.upload_folder / "meta.gpg").write_bytes(b"its record")
    (full.upload_folder / LOCK_NAME).touch()
    published = full.store.objects / new_object_id()
    full.upload_folder.rename(published)

    found = findings(full.services)
    assert kinds(found) == {"object-without-row": 1, "row-without-upload": 1}
    assert not any(f.removable for f in found)
    assert "acknowledged parts" in next(f.detail for f in found if f.kind == "object-without-row")
    removed, _ = repaired(full.services)
    assert removed == []
    assert (published / part_name(0)).is_file()


def sealed_piece(path: Path, upload_id: str, start: int, size: int) -> None:
    """A whole sealed tail piece of `size` bytes starting at `start`, as a PATCH writes one
    (under a key doctor has no need of: the framing tells a piece's length)."""
    aad = upload_id.encode("ascii") + start.to_bytes(8, "big")
    with path.open("xb") as out:
        writer = SealedWriter(os.urandom(32), aad, out)
        writer.write(os.urandom(size))
        writer.close()


def test_tail_pieces_still_needed_are_kept_and_leftover_ones_removed(
        full: Desk, journalist: Keypair) -> None:
    folder = full.upload_folder
    second, third = os.urandom(4000), os.urandom(6000)
    assert full.patch(PART, second).status_code == 204
    assert held(folder) == [tail_name(PART), part_name(0)]
    used_up = (folder / tail_name(PART)).read_bytes()
    assert full.patch(PART + 4000, third).status_code == 204
    # Part 1 (bytes 8192-16383) was cut: the piece at 8192 went into it and was deleted; the
    # piece at 12192 is partly in it and holds the acknowledged bytes 16384-18191.
    live = folder / tail_name(PART + 4000)
    assert held(folder) == [live.name, part_name(0), part_name(1)]
    with parts_of(PART):
        assert findings(full.services) == []
    before = full.snapshot()

    # A crash between recording part 1 and deleting the piece it used up:
    used = folder / tail_name(PART)
    used.write_bytes(used_up)
    # a PATCH at the recorded offset whose row never committed:
    past = folder / tail_name(PART + 10_000)
    sealed_piece(past, full.upload_id, PART + 10_000, 3000)
    # and a piece that is not whole (cut short by damage; the desk only renames whole ones).
    broken = folder / tail_name(PART + 13_000)
    broken.write_bytes(live.read_bytes()[:-20])
    with parts_of(PART):
        found = findings(full.services)
    assert kinds(found) == {"unrecorded-tail-piece": 3}
    assert where(found) == {used, past, broken}
    assert all(f.removable for f in found)
    assert all(f.line().count("\t") == 2 for f in found)
    reasons = {Path(f.where): f.detail for f in found}
    assert "already cut into recorded parts" in reasons[used]
    assert "past the recorded offset" in reasons[past]
    assert "not whole" in reasons[broken]

    with parts_of(PART):
        removed, left = repaired(full.services)
    assert removed == found
    assert left == []
    assert full.snapshot() == before  # the live piece and the parts untouched

    # The upload resumes from the recorded offset and its object holds every byte sent.
    rest = os.urandom(30_000 - PART - 10_000)
    assert full.patch(PART + 10_000, rest).status_code == 204
    assert not folder.exists()
    stored = {len(o.plaintext): o.plaintext for o in read_objects(full.services.config,
                                                                   journalist)}
    assert stored[30_000] == full.sent + second + third + rest
    assert findings(full.services) == []


def test_repair_refuses_while_another_process_has_the_database_open(full: Desk) -> None:
    data_dir = full.services.config.data_dir
    stray = full.store.staging_root / "abc"
    stray.mkdir()
    full.services.engine.dispose()
    connection = sqlite3.connect(data_dir / "desk.db")  # a server's pooled connection
    try:
        connection.execute("SELECT count(*) FROM sources").fetchall()
        result = run_desk("doctor", "--repair", data_dir=data_dir)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith("desk: the desk's database is open in another process")
        assert stray.is_dir()
        report = run_desk("doctor", data_dir=data_dir)
        assert report.returncode == 1
        assert "a server has the database open" in report.stderr
    finally:
        connection.close()
    assert run_desk("doctor", "--repair", data_dir=data_dir).returncode == 0
    assert not stray.exists()


def test_a_broken_reference_in_the_database_is_reported(full: Desk) -> None:
    full.services.engine.dispose()
    connection = sqlite3.connect(full.services.config.data_dir / "desk.db")
    try:
        connection.execute("PRAGMA foreign_keys=OFF")
        connection.execute("UPDATE submissions SET source_id = 'gone' WHERE id = ?",
                           (full.object_ids[0],))
        connection.commit()
    finally:
        connection.close()
    found = findings(full.services)
    assert kinds(found) == {"database": 1}
    assert "foreign_key_check" in found[0].detail
    assert not found[0].removable


def test_doctor_needs_an_initialised_desk(tmp_path: Path) -> None:
    result = run_desk("doctor", data_dir=tmp_path / "nothing")
    assert result.returncode == 1
    assert result.stderr.startswith("desk: ")
    assert "desk init" in result.stderr
