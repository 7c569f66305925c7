"""Export bundles and the chain of custody, end to end: real gpg, real database, Flask test
clients and the `desk` command (crypto/FORMAT.md, "Ciphertext digest", "Chain of custody",
"Bundles")."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from crypto.bundle import Bundle, read_bundle, verify_bundle
from crypto.custody import CustodyEntry, Subject, ciphertext_digest, object_files
from crypto.errors import CustodyBroken, FormatError
from crypto.items import padme
from desk.outbound.replies import ReplyTarget, write_web_reply
from desk.records.custody import custody_records
from desk.records.models import Item, Reply, Source
from desk.services import Services
from tests.harness.desks import files_under, run_desk
from tests.harness.forms import csrf_token
from tests.harness.gpg import Keypair, gpg, make_keypair
from tests.harness.tus import upload_folder, upload_rows
from tests.harness.web import SourceBrowser, TusTestSource

ROOT = "desk-bundle"
HEAD = [f"{ROOT}/VERSION", f"{ROOT}/signing-key.pub", f"{ROOT}/manifest.gpg",
        f"{ROOT}/manifest.sig", f"{ROOT}/custody.gpg"]
MESSAGE = "The train left platform 4 with the prisoners at dawn."
NOTE = b"plate numbers: see second clip\n"


# --- helpers ---------------------------------------------------------------------------------


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _submit(browser: SourceBrowser, big: bytes, message: str = MESSAGE) -> dict[
        tuple[str, str | None], bytes]:
    """Send a message and two files; return what was sent by (kind, filename)."""
    page = browser.send(message, (("station.mp4", big), ("notes.txt", NOTE)))
    assert page.status_code == 200
    return {("message", None): message.encode(), ("file", "station.mp4"): big,
            ("file", "notes.txt"): NOTE}


def _new_source(app: Flask) -> SourceBrowser:
    browser = SourceBrowser(app.test_client())
    browser.get_codename()
    return browser


def _objects_by_source(services: Services) -> dict[str, set[str]]:
    """Object ids by designation, from the database."""
    found: dict[str, set[str]] = {}
    with services.sessions() as session:
        for oid, designation in session.execute(
                select(Item.id, Source.designation).join(Source)):
            found.setdefault(designation, set()).add(oid)
    return found


def _only_source(services: Services) -> tuple[str, str, set[str]]:
    """(source id, designation, object ids) of the one source that has sent anything."""
    with services.sessions() as session:
        sources = list(session.scalars(select(Source)))
        assert len(sources) == 1
        ids = set(session.scalars(select(Item.id)
                                  .where(Item.source_id == sources[0].id)))
    return sources[0].id, sources[0].designation, ids


def _subjects(services: Services) -> dict[str, Subject]:
    """What custody entries carry for each item and reply, by id: taken before a deletion,
    since the deletion takes the custody key with it."""
    with services.sessions() as session:
        rows: list[Item | Reply] = [*session.scalars(select(Item)),
                                    *session.scalars(select(Reply))]
        return {row.id: row.custody for row in rows}


def _by_id(entries: list[CustodyEntry], subjects: dict[str, Subject]) -> dict[str, list[str]]:
    """The events of the entries about each id."""
    named = {about.subject: oid for oid, about in subjects.items()}
    found: dict[str, list[str]] = {}
    for entry in entries:
        found.setdefault(named.get(str(entry.subject), "?"), []).append(entry.event)
    return found


def _entries(services: Services) -> list[CustodyEntry]:
    with services.sessions() as session:
        return [record.entry() for record in custody_records(session)]


def _seen(services: Services) -> dict[str, bool]:
    with services.sessions() as session:
        return {oid: seen for oid, seen in session.execute(
            select(Item.id, Item.seen))}


def _token(client: FlaskClient) -> str:
    return csrf_token(client.get("/").text)


def _web_export(client: FlaskClient, scope: str = "all") -> TestResponse:
    return client.post("/export", data={"csrf_token": _token(client), "scope": scope})


def _members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every member of a tar with its bytes, in order."""
    found = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            assert handle is not None, info.name
            found.append((info, handle.read()))
    return found


def _retar(members: list[tuple[str, bytes]]) -> bytes:
    """A new pax tar of (name, bytes), as an attacker (or a broken copy) would make it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _decrypt(keypair: Keypair, data: bytes, workdir: Path, name: str) -> bytes:
    """Decrypt bytes with stock gpg and `keypair` alone, via a file as a journalist would."""
    path = workdir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return keypair.decrypt(path)


@dataclass
class Opened:
    """A bundle opened with tarfile and stock gpg."""

    names: list[str]
    manifest: dict[str, Any]
    custody: list[dict[str, Any]]
    records: dict[str, dict[str, Any]]
    plaintexts: dict[str, bytes]

    def by_kind_and_name(self, designation: str | None = None
                         ) -> dict[tuple[str, str | None], bytes]:
        """Plaintexts by (kind, original file name), of one source's objects if named."""
        sources = {o["id"]: o["source"] for o in self.manifest["objects"]}
        return {(self.records[oid]["kind"], self.records[oid]["filename"]): plain
                for oid, plain in self.plaintexts.items()
                if designation is None or sources[oid] == designation}


def _open(data: bytes, keypair: Keypair, workdir: Path) -> Opened:
    """Check a bundle's layout and decrypt everything in it with stock gpg."""
    members = _members(data)
    names = [info.name for info, _ in members]
    assert names[:len(HEAD)] == HEAD
    for info, _ in members:
        assert info.isfile(), info.name
        assert (info.mtime, info.mode, info.uname, info.gname) == (0, 0o600, "", ""), info.name
    content = dict((info.name, body) for info, body in members)
    assert content[f"{ROOT}/VERSION"] == b"desk-bundle 2\n"
    assert re.fullmatch(rb"[0-9a-f]{64}\n", content[f"{ROOT}/signing-key.pub"])
    manifest = json.loads(_decrypt(keypair, content[f"{ROOT}/manifest.gpg"], workdir, "m.gpg"))
    custody = [json.loads(line) for line in _decrypt(
        keypair, content[f"{ROOT}/custody.gpg"], workdir, "c.gpg").decode().splitlines()]
    records: dict[str, dict[str, Any]] = {}
    plaintexts: dict[str, bytes] = {}
    object_names = names[len(HEAD):]
    for name in object_names:
        match = re.fullmatch(rf"{ROOT}/objects/([0-9a-f]{{32}})/(meta\.gpg|part-\d{{6}}\.gpg)",
                             name)
        assert match, name
    for oid in sorted({name.split("/")[2] for name in object_names}):
        prefix = f"{ROOT}/objects/{oid}/"
        assert sorted(n for n in object_names if n.startswith(prefix)) == [
            prefix + "meta.gpg", prefix + "part-000000.gpg"]
        records[oid] = json.loads(_decrypt(keypair, content[prefix + "meta.gpg"], workdir,
                                           f"{oid}/meta.gpg"))
        assert records[oid]["id"] == oid
        padded = _decrypt(keypair, content[prefix + "part-000000.gpg"], workdir,
                          f"{oid}/part-000000.gpg")
        # The item is the record's first `size` bytes; zeros pad it to Padmé(size).
        size = records[oid]["size"]
        assert len(padded) == padme(size), oid
        assert padded[size:] == bytes(len(padded) - size), oid
        plaintexts[oid] = padded[:size]
    return Opened(names, manifest, custody, records, plaintexts)


def _take_file(_folder: str, _object_id: str, _name: str, handle: IO[bytes]
               ) -> tuple[int, str]:
    """read_bundle's callback: (size, hex SHA-256) of one ciphertext member, kept nowhere."""
    digest, size = hashlib.sha256(), 0
    while block := handle.read(1 << 16):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


def _read(data: bytes) -> Bundle:
    return read_bundle(io.BytesIO(data), _take_file)


def _verify(services: Services) -> subprocess.CompletedProcess[str]:
    return run_desk("custody", "verify", data_dir=services.config.data_dir)


def _db(services: Services) -> sqlite3.Connection:
    return sqlite3.connect(services.config.data_dir / "desk.db", isolation_level=None)


# --- 1. web export ---------------------------------------------------------------------------


def test_web_export_is_a_tar_of_ciphertext_that_stock_gpg_opens(
        accounts: Services, alice: FlaskClient, source: SourceBrowser, journalist: Keypair,
        tmp_path: Path) -> None:
    sent = _submit(source, os.urandom(1 << 20))
    _, designation, ids = _only_source(accounts)

    response = _web_export(alice)

    assert response.status_code == 200
    assert response.mimetype == "application/x-tar"
    body = response.get_data()
    assert response.headers["Content-Length"] == str(len(body))
    opened = _open(body, journalist, tmp_path / "alice")
    assert set(opened.records) == ids
    assert len(opened.names) == len(HEAD) + 2 * len(ids)
    assert opened.by_kind_and_name() == sent
    manifest = opened.manifest
    assert (manifest["format"], manifest["version"]) == ("desk-bundle-manifest", 2)
    assert (manifest["exported_by"], manifest["exported_on"]) == ("alice", _today())
    listed = {o["id"]: o for o in manifest["objects"]}
    assert set(listed) == ids
    for oid, obj in listed.items():
        assert obj["source"] == designation
        assert obj["ciphertext_sha256"] == ciphertext_digest(
            object_files(accounts.store.path(oid)))
    exports = [e for e in opened.custody if e["event"] == "export"]
    # The manifest's custody key opens each export entry's commitment.
    assert {e["subject"] for e in exports} == {
        Subject(oid, obj["ciphertext_sha256"], bytes.fromhex(obj["custody_key"])).subject
        for oid, obj in listed.items()}
    assert {e["actor"] for e in exports} == {"alice"}

    stranger = make_keypair(tmp_path / "carol", "Carol")
    (tmp_path / "manifest.gpg").write_bytes(_read(body).manifest)
    refused = gpg(stranger.home, "--decrypt", str(tmp_path / "manifest.gpg"), check=False)
    assert refused.returncode != 0
    assert b"desk-bundle-manifest" not in refused.stdout

    for clear in (designation.encode(), _today().encode(), b"alice"):
        assert clear not in body, clear


# --- 2. the same from the command line -------------------------------------------------------


def test_cli_export_all_unseen_and_by_source(
        accounts: Services, alice: FlaskClient, app: Flask, source: SourceBrowser,
        journalist: Keypair, tmp_path: Path) -> None:
    data_dir = accounts.config.data_dir
    first = _submit(source, os.urandom(300_000))
    _, first_name, first_ids = _only_source(accounts)
    assert _web_export(alice).status_code == 200

    nothing = run_desk("export", "--out", str(tmp_path / "none.tar"), "--unseen",
                       data_dir=data_dir)
    assert nothing.returncode != 0
    assert nothing.stderr.strip().splitlines() == ["desk: nothing to export"]
    assert not (tmp_path / "none.tar").exists()

    second = _submit(_new_source(app), os.urandom(200_000), "A second witness writes.")
    (second_name, second_ids), = ((name, oids) for name, oids in
                                  _objects_by_source(accounts).items() if name != first_name)
    assert not any(_seen(accounts)[oid] for oid in second_ids)

    everything = run_desk("export", "--out", str(tmp_path / "all.tar"), "--all",
                          data_dir=data_dir)
    assert everything.returncode == 0, everything.stderr
    assert f"Wrote {len(first_ids | second_ids)} object(s)" in everything.stdout
    opened = _open((tmp_path / "all.tar").read_bytes(), journalist, tmp_path / "all")
    assert set(opened.records) == first_ids | second_ids
    assert opened.by_kind_and_name(first_name) == first
    assert opened.by_kind_and_name(second_name) == second
    assert opened.manifest["exported_by"] == "desk-cli"
    assert all(_seen(accounts).values())
    cli_exports = [e for e in opened.custody if e["actor"] == "desk-cli"]
    subjects = _subjects(accounts)
    assert {e["subject"] for e in cli_exports} == {
        subjects[oid].subject for oid in first_ids | second_ids}
    assert {e["event"] for e in cli_exports} == {"export"}

    one = run_desk("export", "--out", str(tmp_path / "one.tar"), "--source", first_name,
                   data_dir=data_dir)
    assert one.returncode == 0, one.stderr
    only = _open((tmp_path / "one.tar").read_bytes(), journalist, tmp_path / "one")
    assert set(only.records) == first_ids
    assert only.by_kind_and_name() == first
    assert {o["source"] for o in only.manifest["objects"]} == {first_name}


def test_cli_export_marks_items_seen(accounts: Services, source: SourceBrowser,
                                     tmp_path: Path) -> None:
    _submit(source, b"\x00" * 1000)
    assert not any(_seen(accounts).values())
    result = run_desk("export", "--out", str(tmp_path / "b.tar"),
                      data_dir=accounts.config.data_dir)
    assert result.returncode == 0, result.stderr
    seen = _seen(accounts)
    assert len(seen) == 3
    assert all(seen.values())


# --- 3. verifying a bundle with crypto/bundle -------------------------------------------------


def test_bundle_verifies_and_any_flipped_byte_names_the_object(
        accounts: Services, alice: FlaskClient, source: SourceBrowser, journalist: Keypair,
        tmp_path: Path) -> None:
    _submit(source, os.urandom(100_000))
    _, _, ids = _only_source(accounts)
    body = _web_export(alice).get_data()

    bundle = _read(body)
    assert bundle.signing_key == accounts.signing_key.public_hex
    manifest = _decrypt(journalist, bundle.manifest, tmp_path, "manifest.gpg")
    custody = _decrypt(journalist, bundle.custody, tmp_path, "custody.gpg")
    parsed, chain = verify_bundle(bundle, manifest, custody)
    assert {o.object_id for o in parsed.objects} == ids
    assert chain == _entries(accounts)
    assert [e.event for e in chain] == ["ingest"] * 3 + ["export"] * 3

    victim = sorted(ids)[0]
    part = f"{ROOT}/objects/{victim}/part-000000.gpg"
    members = [(info.name, data) for info, data in _members(body)]
    flipped = [(name, data[:50] + bytes([data[50] ^ 1]) + data[51:] if name == part else data)
               for name, data in members]
    damaged = _read(_retar(flipped))
    with pytest.raises(CustodyBroken, match="differs") as broken:
        verify_bundle(damaged, manifest, custody)
    assert broken.value.object_id == victim
    assert victim in str(broken.value)


@pytest.mark.parametrize(("change", "words"), [
    ("version 3", "version"), ("dot-dot member", "unexpected member"),
    ("duplicate part", "duplicate member")])
def test_bundle_of_another_version_or_with_a_stray_path_is_refused(
        accounts: Services, alice: FlaskClient, source: SourceBrowser, change: str,
        words: str) -> None:
    assert source.send("short", ()).status_code == 200
    body = _web_export(alice).get_data()
    members = [(info.name, data) for info, data in _members(body)]
    _read(_retar(members))  # the rebuilt tar itself is acceptable
    if change == "version 3":
        members = [(n, b"desk-bundle 3\n" if n == f"{ROOT}/VERSION" else d) for n, d in members]
    elif change == "dot-dot member":
        members.append((f"{ROOT}/../x", b"escape"))
    else:
        members.append(next((n, b"substitute") for n, _ in members if n.endswith(".gpg")
                            and n.startswith(f"{ROOT}/objects/")))
    with pytest.raises(FormatError, match=words):
        _read(_retar(members))


# --- 4. custody from the moment of receipt ---------------------------------------------------


def test_each_object_gets_a_dated_ingest_entry_on_receipt(
        accounts: Services, source: SourceBrowser) -> None:
    _submit(source, os.urandom(50_000))
    _, _, ids = _only_source(accounts)

    entries = _entries(accounts)

    assert [e.seq for e in entries] == [1, 2, 3]
    assert {e.event for e in entries} == {"ingest"}
    subjects = _subjects(accounts)
    assert sorted(_by_id(entries, subjects)) == sorted(ids)
    for oid in ids:
        entry, = (e for e in entries if e.subject == subjects[oid].subject)
        assert entry.version == 2
        # The entry names the item only through its key: neither its id nor its digest is
        # there in clear.
        assert oid not in entry.to_json()
        assert subjects[oid].ciphertext_sha256 not in entry.to_json()
        stored = Subject(oid, ciphertext_digest(object_files(accounts.store.path(oid))),
                         subjects[oid].custody_key)
        assert stored.matches(entry)
        assert entry.actor is None
        assert type(entry.on) is date
        assert entry.on.isoformat() == _today()
    with _db(accounts) as db:
        days = [row[0] for row in db.execute('SELECT "on" FROM custody_entries')]
    assert days
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) for value in days), days


def test_custody_records_export_download_and_deletion_and_still_verifies(
        accounts: Services, alice: FlaskClient, app: Flask, source: SourceBrowser) -> None:
    _submit(source, os.urandom(20_000))
    first_id, first_name, first_ids = _only_source(accounts)
    _submit(_new_source(app), os.urandom(20_000), "Another witness.")
    by_source = _objects_by_source(accounts)
    (second_name, second_ids), = ((n, o) for n, o in by_source.items() if n != first_name)
    with accounts.sessions() as session:
        second_id = session.scalar(select(Source.id).where(Source.designation == second_name))
    assert second_id is not None

    assert _web_export(alice).status_code == 200
    subjects = _subjects(accounts)
    downloaded = sorted(first_ids)[0]
    download = alice.post(f"/items/{downloaded}/download", data={"csrf_token": _token(alice)})
    assert download.status_code == 200
    assert download.mimetype == "application/x-tar"
    assert {n.split("/")[2] for n in (i.name for i, _ in _members(download.get_data()))
            if n.startswith(f"{ROOT}/objects/")} == {downloaded}
    removed = sorted(first_ids)[1]
    deleted_item = alice.post(f"/sources/{first_id}/items", data={
        "csrf_token": _token(alice), "action": "delete", "confirm": "yes", "item": removed})
    assert deleted_item.status_code == 302
    deleted_source = alice.post(f"/sources/{second_id}/delete",
                                data={"csrf_token": _token(alice), "confirm": "yes"})
    assert deleted_source.status_code == 302

    verified = _verify(accounts)
    assert verified.returncode == 0, verified.stderr
    assert "Custody intact" in verified.stdout
    entries = _entries(accounts)
    named = {about.subject: oid for oid, about in subjects.items()}
    events = {(e.event, named.get(str(e.subject)), e.actor) for e in entries}
    assert {("export", oid, "alice") for oid in first_ids | second_ids} <= events
    assert ("download", downloaded, "alice") in events
    gone = {removed} | second_ids
    deletions = {named[str(e.subject)]: e for e in entries if e.event == "delete"}
    assert set(deletions) == gone
    assert {e.actor for e in deletions.values()} == {"alice"}
    assert all(subjects[oid].matches(deletions[oid]) for oid in gone)
    # Nothing in the log names a deleted item in clear.
    log = "".join(e.to_json() for e in entries)
    assert not any(oid in log or subjects[oid].ciphertext_sha256 in log for oid in gone)
    for oid in gone:
        assert not accounts.store.path(oid).exists()
    for oid in first_ids - {removed}:
        assert accounts.store.path(oid).is_dir()
    assert set(_seen(accounts)) == first_ids - {removed}
    with accounts.sessions() as session:
        assert session.get(Source, second_id) is None


# --- 5. tampering ----------------------------------------------------------------------------


@pytest.fixture
def exported(accounts: Services, alice: FlaskClient, source: SourceBrowser) -> Services:
    """A desk whose log holds 3 ingest entries (1-3) and 3 export entries by alice (4-6)."""
    _submit(source, os.urandom(10_000))
    assert _web_export(alice).status_code == 200
    assert [e.event for e in _entries(accounts)] == ["ingest"] * 3 + ["export"] * 3
    intact = _verify(accounts)
    assert intact.returncode == 0, intact.stderr
    return accounts


def test_verify_names_an_object_whose_stored_byte_was_flipped(exported: Services) -> None:
    _, _, ids = _only_source(exported)
    victim = sorted(ids)[1]
    part = exported.store.path(victim) / "part-000000.gpg"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))

    result = _verify(exported)

    assert result.returncode != 0
    assert victim in result.stderr
    assert "differs" in result.stderr
    assert "Custody intact" not in result.stdout


def test_verify_names_an_entry_altered_after_dropping_the_trigger(exported: Services) -> None:
    with _db(exported) as db:
        db.execute("DROP TRIGGER custody_entries_no_update")
        db.execute("UPDATE custody_entries SET actor = 'mallory' WHERE seq = 5")
    assert _entries(exported)[4].actor == "mallory"

    result = _verify(exported)

    assert result.returncode != 0
    assert "custody entry 5" in result.stderr
    assert "altered" in result.stderr


def test_verify_names_an_entry_deleted_after_dropping_the_trigger(exported: Services) -> None:
    with _db(exported) as db:
        db.execute("DROP TRIGGER custody_entries_no_delete")
        db.execute("DELETE FROM custody_entries WHERE seq = 2")
    assert [e.seq for e in _entries(exported)] == [1, 3, 4, 5, 6]

    result = _verify(exported)

    assert result.returncode != 0
    assert "custody entry 2" in result.stderr
    assert "missing" in result.stderr


REFUSED_CHANGES = (
    "UPDATE custody_entries SET actor = 'mallory' WHERE seq = 4",
    "UPDATE custody_entries SET subject = NULL",
    "DELETE FROM custody_entries WHERE seq = 6",
    "DELETE FROM custody_entries",
)


def test_triggers_refuse_any_change_to_the_log(exported: Services) -> None:
    before = _entries(exported)
    with _db(exported) as db:
        for statement in REFUSED_CHANGES:
            with pytest.raises((sqlite3.IntegrityError, sqlite3.OperationalError),
                               match="append-only"):
                db.execute(statement)
    assert _entries(exported) == before
    assert _verify(exported).returncode == 0


# --- 6. retention ----------------------------------------------------------------------------


def test_purge_deletes_only_expired_objects_and_records_it(
        accounts: Services, source: SourceBrowser) -> None:
    data_dir = accounts.config.data_dir
    settings = run_desk("settings", "--retention-days", "1", data_dir=data_dir)
    assert settings.returncode == 0, settings.stderr
    assert "retention: 1 days" in settings.stdout
    assert source.send("old news", ()).status_code == 200
    _, _, (old,) = _only_source(accounts)
    with accounts.sessions() as session:
        session.execute(update(Item).where(Item.id == old).values(
            received_on=datetime.now(UTC).date() - timedelta(days=3)))
        session.commit()
    assert source.send("fresh news", ()).status_code == 200
    _, _, ids = _only_source(accounts)
    (recent,) = ids - {old}

    with accounts.sessions() as session:
        target = ReplyTarget.of(session.scalars(select(Source)).one())
    old_reply = write_web_reply(accounts, target, "an old question", "alice").id
    recent_reply = write_web_reply(accounts, target, "a recent question", "alice").id
    with accounts.sessions() as session:
        session.execute(update(Reply).where(Reply.id == old_reply).values(
            created_on=datetime.now(UTC).date() - timedelta(days=3)))
        session.commit()

    named = {about.subject: oid for oid, about in _subjects(accounts).items()}
    purged = run_desk("purge", data_dir=data_dir)

    assert purged.returncode == 0, purged.stderr
    assert "Purged 1 expired object(s), 1 expired reply(ies)" in purged.stdout
    assert not accounts.store.reply_path(old_reply).exists()
    assert accounts.store.reply_path(recent_reply).is_dir()
    assert not accounts.store.path(old).exists()
    assert accounts.store.path(recent).is_dir()
    assert set(_seen(accounts)) == {recent}
    deletions = [e for e in _entries(accounts) if e.event == "delete"]
    assert [(named[str(e.subject)], e.actor) for e in deletions] == [
        (old, "retention"), (old_reply, "retention")]
    verified = _verify(accounts)
    assert verified.returncode == 0, verified.stderr


# --- 7. deletion is final --------------------------------------------------------------------


def test_deleting_a_source_leaves_no_ciphertext_and_no_listing(
        accounts: Services, alice: FlaskClient, app: Flask, source: SourceBrowser) -> None:
    _submit(source, os.urandom(30_000))
    source_id, designation, ids = _only_source(accounts)
    _submit(_new_source(app), b"kept", "Keep this one.")
    kept = {n: o for n, o in _objects_by_source(accounts).items() if n != designation}
    assert designation in alice.get("/").text

    refused = alice.post(f"/sources/{source_id}/delete", data={"csrf_token": _token(alice)})
    assert refused.status_code == 302
    assert all(accounts.store.path(oid).is_dir() for oid in ids)

    response = alice.post(f"/sources/{source_id}/delete",
                          data={"csrf_token": _token(alice), "confirm": "yes"})

    assert response.status_code == 302
    left = [str(path) for path in files_under(accounts.store.objects)]
    assert left
    assert not [path for path in left for oid in ids if oid in path]
    ((kept_name, kept_ids),) = kept.items()
    assert all(accounts.store.path(oid).is_dir() for oid in kept_ids)
    assert f"Deleted {designation} and everything it sent." in alice.get("/").text  # flashed
    listing = alice.get("/").text
    assert designation not in listing
    assert kept_name in listing
    assert alice.get(f"/sources/{source_id}").status_code == 404
    assert _objects_by_source(accounts) == kept


def test_deleting_a_source_removes_its_upload_in_progress(
        accounts: Services, alice: FlaskClient, source: SourceBrowser) -> None:
    _submit(source, b"first part of the story")
    source_id, _designation, _ids = _only_source(accounts)
    uploading = TusTestSource(source)
    location = uploading.new(100 * 1024)
    assert uploading.patch(location, 0, b"u" * 4096).status_code == 204
    folder = upload_folder(accounts, location)
    assert folder.is_dir()

    response = alice.post(f"/sources/{source_id}/delete",
                          data={"csrf_token": _token(alice), "confirm": "yes"})

    assert response.status_code == 302
    assert upload_rows(accounts) == []
    assert not folder.exists()
    doctor = run_desk("doctor", data_dir=accounts.config.data_dir)
    assert doctor.returncode == 0, doctor.stdout


# --- product bugs found while writing these tests --------------------------------------------


def test_cli_export_that_cannot_write_its_bundle_records_nothing(
        accounts: Services, source: SourceBrowser, tmp_path: Path) -> None:
    assert source.send("nobody got this", ()).status_code == 200

    result = run_desk("export", "--out", str(tmp_path / "no-such-dir" / "b.tar"), "--all",
                      data_dir=accounts.config.data_dir)

    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("desk: ")
    assert [e.event for e in _entries(accounts)] == ["ingest"]
    assert not any(_seen(accounts).values())


def test_verify_notices_an_object_that_vanished_without_a_delete_entry(
        exported: Services) -> None:
    _, _, ids = _only_source(exported)
    victim = sorted(ids)[0]
    about = _subjects(exported)[victim]
    ingest, = (e for e in _entries(exported)
               if e.event == "ingest" and e.subject == about.subject)
    with _db(exported) as db:
        db.execute("DELETE FROM submissions WHERE id = ?", (victim,))
    shutil.rmtree(exported.store.path(victim))

    result = _verify(exported)

    # Its ingest entry names it only through its custody key, which went with the row: the
    # entry is what the report can point at.
    assert result.returncode != 0
    assert result.stderr == (f"desk: custody entry {ingest.seq}: the object it brought in "
                             "is gone without a delete entry\n")


@pytest.mark.xfail(strict=True, reason=(
    "known limitation (crypto/FORMAT.md, Chain of custody): nothing in the data dir anchors "
    "the newest entry, so cutting entries off the end verifies as intact on the server; "
    "bundles and the console's shorter-log check are where a truncation shows"))
def test_verify_notices_the_newest_entry_deleted(exported: Services) -> None:
    with _db(exported) as db:
        db.execute("DROP TRIGGER custody_entries_no_delete")
        db.execute("DELETE FROM custody_entries WHERE seq = 6")
    assert [e.seq for e in _entries(exported)] == [1, 2, 3, 4, 5]

    result = _verify(exported)

    assert result.returncode != 0
    assert "custody entry 6" in result.stderr
