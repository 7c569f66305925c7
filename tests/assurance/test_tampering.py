"""Tampering, systematically: damage anywhere the desk's evidence lives is caught, and the tool
that catches it names the first bad entry, object, member or item.

Places: stored objects (`meta.gpg`, `part-NNNNNN.gpg`) checked by `desk custody verify`;
custody rows changed in the SQLite file by someone who dropped the append-only triggers;
bundle members checked by `desk-review import`; and ciphertext in the console's workspace,
changed after import, checked by `desk-review open`. Damage: a bit flipped in the first,
middle or last byte, a file cut by one byte or to half, one byte appended. Every kind is
applied to one file per check and to every bundle member outside `objects/`; other places of
the same check get a sample, since the check does not depend on where the file sits.

One desk per module holds three objects (a message, a one-part file, a three-part resumable
upload) and one export; each test damages its own copy of the data directory, the bundle or
the workspace. Single cases already tested elsewhere (web/test_export_custody.py,
e2e/test_review.py, e2e/test_reply_files.py) are the seed of this matrix; reply copies are left
to e2e/test_reply_files.py.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import update

from crypto.custody import SigningKey, Subject, ciphertext_digest, entry_body, object_files
from desk.records.custody import append_entry
from desk.records.models import Item
from desk.services import open_services
from tests.harness.console import diagnostic, listing, ok, review, tar_members, write_tar
from tests.harness.desks import desk_config, files_under, find_markers, run_desk
from tests.harness.gpg import Keypair
from tests.harness.tampering import (
    HEAD_MARK,
    KINDS,
    MARKERS,
    UPLOAD_PART,
    Evidence,
    assert_workspace_empty,
    copy_desk,
    copy_workspace,
    damage_file,
    damaged,
    database,
    index_rows,
    make_evidence,
    resign_from,
)

ROOT = "desk-bundle"
REFUSED_HINT = "nothing was imported"
DIFFERS = "ciphertext differs from what the desk received"


# --- one desk, one export, one workspace ------------------------------------------------------


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory, journalist: Keypair) -> Evidence:
    """A desk after one export, its bundle, and a workspace that imported it (make_evidence)."""
    return make_evidence(tmp_path_factory.mktemp("tampering"), journalist)


def verify(data_dir: Path) -> str:
    """The one line `desk custody verify` prints when it refuses a damaged desk."""
    result = run_desk("custody", "verify", data_dir=data_dir)
    assert result.returncode != 0, result.stdout
    assert "Custody intact" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- 1. stored objects: desk custody verify -----------------------------------------------------


STORED = ["meta.gpg of the message", "part of the message", "meta.gpg of the file",
          "part of the file", "middle part of the upload", "last part of the upload"]


def stored_file(evidence: Evidence, data_dir: Path, where: str) -> tuple[str, Path]:
    """(object id, path) of one stored ciphertext file, by description."""
    oid, name = {
        "meta.gpg of the message": (evidence.message_id, "meta.gpg"),
        "part of the message": (evidence.message_id, "part-000000.gpg"),
        "meta.gpg of the file": (evidence.file_id, "meta.gpg"),
        "part of the file": (evidence.file_id, "part-000000.gpg"),
        "middle part of the upload": (evidence.multi_id, "part-000001.gpg"),
        "last part of the upload": (evidence.multi_id, "part-000002.gpg"),
    }[where]
    return oid, data_dir / "store" / "objects" / oid / name


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", [STORED[2], STORED[4]])
def test_verify_names_the_object_whose_stored_file_was_damaged(
        evidence: Evidence, where: str, kind: str, tmp_path: Path) -> None:
    data_dir = copy_desk(evidence, tmp_path)
    oid, path = stored_file(evidence, data_dir, where)
    damage_file(path, kind)

    assert verify(data_dir) == f"desk: object {oid}: stored ciphertext differs from what was " \
                               "received"


@pytest.mark.parametrize("where", [STORED[0], STORED[1], STORED[3], STORED[5]])
def test_verify_names_the_object_whose_file_was_replaced_by_another(
        evidence: Evidence, where: str, tmp_path: Path) -> None:
    # A whole, valid OpenPGP message swapped in (another object's): it decrypts, but it is not
    # what the desk received.
    data_dir = copy_desk(evidence, tmp_path)
    oid, path = stored_file(evidence, data_dir, where)
    donor = evidence.file_id if oid != evidence.file_id else evidence.message_id
    donor_name = path.name if path.name == "meta.gpg" else "part-000000.gpg"
    shutil.copyfile(data_dir / "store" / "objects" / donor / donor_name, path)

    assert verify(data_dir) == f"desk: object {oid}: stored ciphertext differs from what was " \
                               "received"


def test_verify_names_the_first_of_two_damaged_objects(evidence: Evidence,
                                                       tmp_path: Path) -> None:
    data_dir = copy_desk(evidence, tmp_path)
    first, second = evidence.object_ids[0], evidence.object_ids[2]
    damage_file(data_dir / "store" / "objects" / second / "meta.gpg", "middle byte flipped")
    damage_file(data_dir / "store" / "objects" / first / "part-000000.gpg", "cut to half")

    line = verify(data_dir)

    assert line.startswith(f"desk: object {first}: ")
    assert second not in line


def test_verify_names_a_bad_entry_before_a_damaged_object(evidence: Evidence,
                                                          tmp_path: Path) -> None:
    data_dir = copy_desk(evidence, tmp_path)
    damage_file(data_dir / "store" / "objects" / evidence.object_ids[0] / "part-000000.gpg",
                "last byte flipped")
    with database(data_dir) as db:
        db.execute("UPDATE custody_entries SET actor = 'mallory' WHERE seq = 6")

    assert verify(data_dir) == "desk: custody entry 6: its contents do not match its hash " \
                               "(altered)"


# --- 2. custody rows changed in the database file ---------------------------------------------


ALTERED = "its contents do not match its hash (altered)"
NOT_SIGNED = "its signature is not the desk's"
UNLINKED = "does not link to the entry before it"

# (statement run with :seq, the reason verify must give); entry 1 ingested another object
FIELD_CHANGES = {
    "day moved": ("UPDATE custody_entries SET \"on\" = '2001-01-01' WHERE seq = :seq",
                  ALTERED),
    "event changed": ("UPDATE custody_entries SET event = 'download' WHERE seq = :seq",
                      ALTERED),
    "object swapped": ("UPDATE custody_entries SET subject = "
                       "(SELECT subject FROM custody_entries WHERE seq = 1) WHERE seq = :seq",
                       ALTERED),
    "digest changed": ("UPDATE custody_entries SET digest = "
                       "'0000000000000000000000000000000000000000000000000000000000000000' "
                       "WHERE seq = :seq", ALTERED),
    "actor set": ("UPDATE custody_entries SET actor = 'mallory' WHERE seq = :seq", ALTERED),
    "link changed": ("UPDATE custody_entries SET prev_hash = "
                     "'1111111111111111111111111111111111111111111111111111111111111111' "
                     "WHERE seq = :seq", UNLINKED),
    "hash changed": ("UPDATE custody_entries SET entry_hash = "
                     "'2222222222222222222222222222222222222222222222222222222222222222' "
                     "WHERE seq = :seq", ALTERED),
    "signature changed": ("UPDATE custody_entries SET signature = "
                          "substr(signature, 1, 10) || "
                          "(CASE substr(signature, 11, 1) WHEN '0' THEN '1' ELSE '0' END) || "
                          "substr(signature, 12) WHERE seq = :seq", NOT_SIGNED),
    "unknown event": ("UPDATE custody_entries SET event = 'seized' WHERE seq = :seq",
                      "unknown event 'seized'"),
    "malformed subject": ("UPDATE custody_entries SET subject = 'not-an-id' "
                          "WHERE seq = :seq", "bad subject"),
}


@pytest.mark.parametrize("change", list(FIELD_CHANGES))
def test_verify_names_a_custody_entry_whose_field_was_changed(
        evidence: Evidence, change: str, tmp_path: Path) -> None:
    data_dir = copy_desk(evidence, tmp_path)
    statement, reason = FIELD_CHANGES[change]
    with database(data_dir) as db:
        db.execute(statement, {"seq": 3})
        assert db.total_changes == 1

    assert verify(data_dir) == f"desk: custody entry 3: {reason}"


@pytest.mark.parametrize("seq", [1, 6])
def test_verify_names_the_first_or_last_entry_when_it_was_changed(
        evidence: Evidence, seq: int, tmp_path: Path) -> None:
    data_dir = copy_desk(evidence, tmp_path)
    with database(data_dir) as db:
        db.execute("UPDATE custody_entries SET \"on\" = '2001-01-01' WHERE seq = ?", (seq,))

    assert verify(data_dir) == f"desk: custody entry {seq}: {ALTERED}"


def test_verify_names_an_entry_changed_and_hashed_again(evidence: Evidence,
                                                        tmp_path: Path) -> None:
    # Someone who knows the format recomputes the hash, and the next entry's link to it; only
    # the desk's signing key could sign the result.
    data_dir = copy_desk(evidence, tmp_path)
    with database(data_dir) as db:
        seq, on, event, subject, digest, prev, version = db.execute(
            'SELECT seq, "on", event, subject, digest, prev_hash, version '
            "FROM custody_entries WHERE seq = 4").fetchone()
        body = entry_body(seq, date.fromisoformat(on), event, subject, digest, "mallory", prev,
                          version)
        rehashed = hashlib.sha256(body).hexdigest()
        db.execute("UPDATE custody_entries SET actor = 'mallory', entry_hash = ? WHERE seq = 4",
                   (rehashed,))
        db.execute("UPDATE custody_entries SET prev_hash = ? WHERE seq = 5", (rehashed,))

    assert verify(data_dir) == f"desk: custody entry 4: {NOT_SIGNED}"


def test_verify_names_an_entry_whose_day_is_not_a_date(evidence: Evidence,
                                                       tmp_path: Path) -> None:
    data_dir = copy_desk(evidence, tmp_path)
    with database(data_dir) as db:
        db.execute("UPDATE custody_entries SET \"on\" = 'yesterday' WHERE seq = 3")

    assert verify(data_dir).startswith("desk: custody entry 3: ")


@pytest.mark.parametrize(("removal", "seq", "reason"), [
    ("first entry deleted", 1, "expected entry 1, found 2 (an entry is missing or out of "
                               "order)"),
    ("middle entry deleted", 3, "expected entry 3, found 4 (an entry is missing or out of "
                                "order)"),
    ("middle entry deleted, later ones renumbered", 3, UNLINKED),
    ("two entries swapped", 2, UNLINKED),
])
def test_verify_names_where_an_entry_went_missing_or_moved(
        evidence: Evidence, removal: str, seq: int, reason: str, tmp_path: Path) -> None:
    data_dir = copy_desk(evidence, tmp_path)
    with database(data_dir) as db:
        if removal == "first entry deleted":
            db.execute("DELETE FROM custody_entries WHERE seq = 1")
        elif removal.startswith("middle entry deleted"):
            db.execute("DELETE FROM custody_entries WHERE seq = 3")
            if removal.endswith("renumbered"):
                for later in range(4, evidence.entries + 1):
                    db.execute("UPDATE custody_entries SET seq = ? WHERE seq = ?",
                               (later - 1, later))
        else:
            db.execute("UPDATE custody_entries SET seq = -1 WHERE seq = 2")
            db.execute("UPDATE custody_entries SET seq = 2 WHERE seq = 3")
            db.execute("UPDATE custody_entries SET seq = 3 WHERE seq = -1")

    assert verify(data_dir) == f"desk: custody entry {seq}: {reason}"


def test_verify_names_the_first_of_two_changed_entries(evidence: Evidence,
                                                       tmp_path: Path) -> None:
    data_dir = copy_desk(evidence, tmp_path)
    with database(data_dir) as db:
        db.execute("UPDATE custody_entries SET actor = 'mallory' WHERE seq = 5")
        db.execute("DELETE FROM custody_entries WHERE seq = 2")

    assert verify(data_dir) == "desk: custody entry 2: expected entry 2, found 3 (an entry " \
                               "is missing or out of order)"


# --- 3. bundle members: desk-review import ------------------------------------------------------


MEMBERS = ["VERSION", "signing-key.pub", "manifest.gpg", "manifest.sig", "custody.gpg",
           "upload middle part"]
# Every object member is checked the same way (its object's ciphertext digest): the upload's
# middle part gets every kind of damage, these two a sample.
OBJECT_SAMPLES = [("message meta.gpg", "first byte flipped"), ("file part", "1 byte appended")]


def member_name(evidence: Evidence, member: str) -> tuple[str, str | None]:
    """(tar member name, object id or None) of a bundle member, by description."""
    objects = {"message meta.gpg": (evidence.message_id, "meta.gpg"),
               "file part": (evidence.file_id, "part-000000.gpg"),
               "upload middle part": (evidence.multi_id, "part-000001.gpg")}
    if member in objects:
        oid, name = objects[member]
        return f"{ROOT}/objects/{oid}/{name}", oid
    return f"{ROOT}/{member}", None


def expected_refusal(member: str, oid: str | None) -> re.Pattern[str]:
    """What import must say when `member` is damaged."""
    if oid is not None:
        return re.compile(re.escape(f"bundle refused: object {oid}: {DIFFERS}") + "$")
    return re.compile({
        "VERSION": r"bundle refused: not a desk bundle of version 2$",
        # A hex digit flipped into another makes another valid key, which did not sign the
        # manifest; anything else makes no key at all.
        "signing-key.pub": r"bundle refused: (the bundle has no valid desk signing key|"
                           r"the manifest is not signed by the desk's signing key)$",
        "manifest.sig": r"bundle refused: (the manifest's signature is malformed|"
                        r"the manifest is not signed by the desk's signing key)$",
        "manifest.gpg": r"bundle refused: its manifest does not decrypt: ",
        "custody.gpg": r"bundle refused: its custody log does not decrypt: ",
    }[member])


def import_damaged(evidence: Evidence, changes: dict[str, str], tmp_path: Path
                   ) -> tuple[str, str | None, Path]:
    """Import the bundle with members damaged ({member name: kind}) into a fresh workspace;
    return the diagnostic and the workspace, after checking nothing was imported."""
    members = tar_members(evidence.bundle)
    names = [name for name, _ in members]
    assert set(changes) <= set(names)
    bundle = write_tar([(name, damaged(data, changes[name]) if name in changes else data)
                        for name, data in members], tmp_path / "damaged.tar")
    workspace = tmp_path / "ws"
    message, hint = diagnostic(review(workspace, evidence.home, "import", str(bundle)))
    assert_workspace_empty(workspace)
    assert find_markers(MARKERS, workspace) == []
    return message, hint, workspace


MEMBER_CASES = [
    pytest.param(member, kind, id=f"{member}-{kind}")
    for member in MEMBERS for kind in KINDS] + [
    pytest.param(member, kind, id=f"{member}-{kind}") for member, kind in OBJECT_SAMPLES]


@pytest.mark.parametrize(("member", "kind"), MEMBER_CASES)
def test_import_refuses_a_bundle_with_a_damaged_member_and_names_it(
        evidence: Evidence, member: str, kind: str, tmp_path: Path) -> None:
    name, oid = member_name(evidence, member)

    message, hint, _ = import_damaged(evidence, {name: kind}, tmp_path)

    assert expected_refusal(member, oid).match(message), message
    assert hint is not None
    if member not in ("manifest.gpg", "custody.gpg"):
        assert REFUSED_HINT in hint


@pytest.mark.parametrize("member", ["manifest.gpg", "custody.gpg"])
def test_import_of_a_damaged_manifest_or_log_says_it_is_damaged(
        evidence: Evidence, member: str, tmp_path: Path) -> None:
    message, hint, _ = import_damaged(evidence, {f"{ROOT}/{member}": "middle byte flipped"},
                                      tmp_path)

    assert re.search(r"modified|damaged|truncated", message), message
    assert hint is not None
    assert REFUSED_HINT in hint
    assert "--gnupghome" not in hint


@pytest.mark.parametrize(("first", "second"), [
    ("first object's part", "last object's meta.gpg"),
    ("manifest.gpg", "first object's part"),
    ("custody.gpg", "first object's part"),
    ("VERSION", "custody.gpg"),
])
def test_import_names_the_first_of_two_damaged_members(
        evidence: Evidence, first: str, second: str, tmp_path: Path) -> None:
    oids = evidence.object_ids
    where = {"first object's part": (f"{ROOT}/objects/{oids[0]}/part-000000.gpg", oids[0]),
             "last object's meta.gpg": (f"{ROOT}/objects/{oids[2]}/meta.gpg", oids[2])}
    names = [where.get(m, (f"{ROOT}/{m}", None)) for m in (first, second)]

    message, _, _ = import_damaged(evidence, {names[0][0]: "cut by 1 byte",
                                              names[1][0]: "middle byte flipped"}, tmp_path)

    assert expected_refusal(first, names[0][1]).match(message), message
    if names[1][1] is not None:
        assert names[1][1] not in message


# --- 4. custody rows changed on the desk, then exported ---------------------------------------


@pytest.mark.parametrize(("change", "seq", "reason"), [
    ("UPDATE custody_entries SET digest = "
     "'0000000000000000000000000000000000000000000000000000000000000000' WHERE seq = 3",
     3, ALTERED),
    ("DELETE FROM custody_entries WHERE seq = 3", 3,
     "expected entry 3, found 4 (an entry is missing or out of order)"),
    ("UPDATE custody_entries SET seq = -seq WHERE seq IN (2, 3); "
     "UPDATE custody_entries SET seq = 3 WHERE seq = -2; "
     "UPDATE custody_entries SET seq = 2 WHERE seq = -3", 2, UNLINKED),
], ids=["digest changed", "entry deleted", "entries swapped"])
def test_import_names_a_custody_entry_changed_on_the_desk(
        evidence: Evidence, change: str, seq: int, reason: str, tmp_path: Path) -> None:
    data_dir = copy_desk(evidence, tmp_path)
    with database(data_dir) as db:
        db.executescript(change)
    bundle = tmp_path / "after.tar"
    exported = run_desk("export", "--out", str(bundle), "--all", data_dir=data_dir)
    assert exported.returncode == 0, exported.stderr
    workspace = tmp_path / "ws"

    message, hint = diagnostic(review(workspace, evidence.home, "import", str(bundle)))

    assert message == f"bundle refused: custody entry {seq}: {reason}"
    assert hint is not None
    assert REFUSED_HINT in hint
    assert_workspace_empty(workspace)


def test_console_refuses_a_log_rewritten_with_the_desks_own_key(evidence: Evidence,
                                                                 tmp_path: Path) -> None:
    # The signing key lives in the data directory: whoever holds it can make a chain that
    # verifies on the desk. The console remembers the entries it imported before.
    data_dir = copy_desk(evidence, tmp_path)
    workspace = copy_workspace(evidence, tmp_path)
    before = listing(workspace, evidence.home)

    def set_actor(row: dict[str, object]) -> None:
        row["actor"] = "mallory"

    resign_from(data_dir, 4, set_actor)
    rewritten = run_desk("custody", "verify", data_dir=data_dir)
    assert rewritten.returncode == 0, rewritten.stderr
    bundle = tmp_path / "rewritten.tar"
    assert run_desk("export", "--out", str(bundle), "--all",
                    data_dir=data_dir).returncode == 0

    message, hint = diagnostic(review(workspace, evidence.home, "import", str(bundle)))

    assert message == ("bundle refused: custody entry 4 differs from the one imported before: "
                       "the desk's log was rewritten")
    assert hint is not None
    assert REFUSED_HINT in hint
    assert listing(workspace, evidence.home) == before


def test_console_refuses_a_log_cut_short_on_the_desk(evidence: Evidence,
                                                     tmp_path: Path) -> None:
    data_dir = copy_desk(evidence, tmp_path)
    workspace = copy_workspace(evidence, tmp_path)
    before = listing(workspace, evidence.home)
    with database(data_dir) as db:
        db.execute("DELETE FROM custody_entries WHERE seq > 3")  # the three export entries
        db.execute("UPDATE submissions SET seen = 0 WHERE id = ?", (evidence.file_id,))
    bundle = tmp_path / "short.tar"
    assert run_desk("export", "--out", str(bundle), "--unseen",
                    data_dir=data_dir).returncode == 0  # entries 1-4

    message, hint = diagnostic(review(workspace, evidence.home, "import", str(bundle)))

    assert message == ("bundle refused: its custody log ends at entry 4, but a bundle imported "
                       "before had entries up to 6: the desk's log lost entries")
    assert hint is not None
    assert REFUSED_HINT in hint
    assert listing(workspace, evidence.home) == before


# --- 5. ciphertext damaged in the workspace: desk-review open ----------------------------------


def leftovers(*roots: Path) -> list[Path]:
    """Files under `roots` holding any plaintext marker, and partial outputs."""
    hits = {path for path, _ in find_markers(MARKERS, *roots)}
    return sorted(hits | {p for p in files_under(*roots) if ".partial" in p.name})


OPENED = {
    "the message's part": ("message_id", "part-000000.gpg"),
    "the file's part": ("file_id", "part-000000.gpg"),
    "the upload's last part": ("multi_id", "part-000002.gpg"),
}
# The upload's last part gets every kind of damage (its first two parts decrypt cleanly before
# it fails, so their plaintext must go too); the message and the file a sample each.
OPEN_CASES = [("the upload's last part", kind) for kind in KINDS] + [
    ("the message's part", "first byte flipped"), ("the message's part", "cut to half"),
    ("the file's part", "last byte flipped"), ("the file's part", "cut by 1 byte")]


@pytest.mark.parametrize(("where", "kind"), OPEN_CASES)
def test_open_refuses_a_part_damaged_after_import_and_keeps_nothing(
        evidence: Evidence, where: str, kind: str, tmp_path: Path) -> None:
    workspace = copy_workspace(evidence, tmp_path)
    attribute, name = OPENED[where]
    oid: str = getattr(evidence, attribute)
    damage_file(workspace / "objects" / oid / name, kind)
    out = tmp_path / "case"
    # The message is shown in the terminal, the upload opened into the workspace, the file
    # into a folder of the journalist's choosing.
    args = ("--out", str(out)) if attribute == "file_id" else ()

    message, _ = diagnostic(review(workspace, evidence.home, "open", oid, *args))

    assert message.startswith(f"cannot decrypt item {oid} ({name}): ")
    assert message.endswith("nothing was kept")
    assert leftovers(workspace, out) == []
    assert index_rows(workspace, "SELECT decrypted_path FROM items WHERE id = ?", oid) \
        == [(None,)]


def test_open_names_the_first_of_two_damaged_parts(evidence: Evidence, tmp_path: Path) -> None:
    workspace = copy_workspace(evidence, tmp_path)
    folder = workspace / "objects" / evidence.multi_id
    damage_file(folder / "part-000002.gpg", "first byte flipped")
    damage_file(folder / "part-000001.gpg", "1 byte appended")

    message, _ = diagnostic(review(workspace, evidence.home, "open", evidence.multi_id))

    # part-000000 decrypted cleanly before the damage showed: none of it may stay.
    assert message.startswith(f"cannot decrypt item {evidence.multi_id} (part-000001.gpg): ")
    assert "part-000002" not in message
    assert leftovers(workspace) == []


def test_open_of_a_part_swapped_for_another_item_keeps_nothing(evidence: Evidence,
                                                               tmp_path: Path) -> None:
    # A whole, valid ciphertext in the wrong place decrypts cleanly: only the part's recorded
    # SHA-256 can tell, and the plaintext must go.
    workspace = copy_workspace(evidence, tmp_path)
    objects = workspace / "objects"
    shutil.copyfile(objects / evidence.message_id / "part-000000.gpg",
                    objects / evidence.multi_id / "part-000001.gpg")

    message, hint = diagnostic(review(workspace, evidence.home, "open", evidence.multi_id))

    assert message == (f"item {evidence.multi_id}: part-000001.gpg decrypted to data that does "
                       "not match its recorded SHA-256; nothing was kept")
    assert hint is not None
    assert leftovers(workspace) == []


def test_open_stops_a_swapped_part_longer_than_its_record_and_keeps_nothing(
        evidence: Evidence, tmp_path: Path) -> None:
    # The file's one part (200,032 bytes) in place of the upload's middle one (65,536): its
    # record's size stops it before the hash could.
    workspace = copy_workspace(evidence, tmp_path)
    objects = workspace / "objects"
    shutil.copyfile(objects / evidence.file_id / "part-000000.gpg",
                    objects / evidence.multi_id / "part-000001.gpg")

    message, _ = diagnostic(review(workspace, evidence.home, "open", evidence.multi_id))

    assert message == (f"cannot decrypt item {evidence.multi_id} (part-000001.gpg): it holds "
                       f"more than the {UPLOAD_PART} bytes its record gives it; nothing was kept")
    assert leftovers(workspace) == []


@pytest.mark.parametrize("kind", ["middle byte flipped", "cut by 1 byte"])
def test_open_refuses_an_item_whose_meta_was_damaged_after_import(
        evidence: Evidence, kind: str, tmp_path: Path) -> None:
    workspace = copy_workspace(evidence, tmp_path)
    damage_file(workspace / "objects" / evidence.file_id / "meta.gpg", kind)

    result = review(workspace, evidence.home, "open", evidence.file_id)

    assert result.returncode != 0, result.stdout
    assert evidence.file_id in result.stderr
    assert leftovers(workspace) == []


# --- 6. custody is written once: what a desk's own code could add after receipt ---------------


FABRICATED = b"FABRICATED-7d1e: not what the source sent"
FILE_PART = "part-000000.gpg"


def fabricate(data_dir: Path, object_id: str) -> str:
    """Do what a compromised desk can with its own code: encrypt other content under an item's
    id in place of its stored part, and record its new digest in the item's row. Return the
    digest."""
    services = open_services(desk_config(data_dir))
    try:
        folder = services.store.path(object_id)
        (folder / FILE_PART).unlink()
        services.gpg.encrypt_stream(io.BytesIO(FABRICATED), services.recipients.current(),
                                    folder / FILE_PART)
        digest = ciphertext_digest(object_files(folder))
        with services.transaction() as db:
            db.execute(update(Item).where(Item.id == object_id)
                       .values(ciphertext_sha256=digest))
        return digest
    finally:
        services.engine.dispose()


def append_signed(data_dir: Path, event: str, object_id: str) -> None:
    """Append a signed `event` entry about an item, with the desk's own code and key."""
    services = open_services(desk_config(data_dir))
    try:
        with services.transaction() as db:
            item = db.get(Item, object_id)
            assert item is not None
            append_entry(db, services.signing_key, event, item.custody,
                         None if event == "ingest" else "alice")
    finally:
        services.engine.dispose()


def export_all(data_dir: Path, out: Path) -> Path:
    """`desk export --all`, which must succeed."""
    result = run_desk("export", "--out", str(out), "--all", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    return out


def opened(workspace: Path, home: Path, object_id: str, out: Path) -> bytes:
    """The plaintext `desk-review open` writes for a one-part file item."""
    ok(review(workspace, home, "open", object_id, "--out", str(out)))
    (written,) = out.iterdir()
    return written.read_bytes()


def test_a_second_ingest_of_an_item_is_refused_by_every_verifier(evidence: Evidence,
                                                                 tmp_path: Path) -> None:
    # After receipt, the desk re-encrypts fabricated content under the item's id and signs a
    # second ingest entry for it: the log is properly linked and signed, but not write-once.
    data_dir = copy_desk(evidence, tmp_path)
    fabricate(data_dir, evidence.file_id)
    append_signed(data_dir, "ingest", evidence.file_id)
    refusal = f"custody entry {evidence.entries + 1}: .* entered the log before \\(ingest again\\)"

    assert re.fullmatch(f"desk: {refusal}", verify(data_dir))

    bundle = export_all(data_dir, tmp_path / "rewritten.tar")
    pinned = copy_workspace(evidence, tmp_path)
    before = (pinned / "objects" / evidence.file_id / FILE_PART).read_bytes()
    message, hint = diagnostic(review(pinned, evidence.home, "import", str(bundle)))
    assert re.fullmatch(f"bundle refused: {refusal}", message), message
    assert hint is not None
    assert REFUSED_HINT in hint
    assert (pinned / "objects" / evidence.file_id / FILE_PART).read_bytes() == before
    plaintext = opened(pinned, evidence.home, evidence.file_id, tmp_path / "case")
    assert plaintext.startswith(HEAD_MARK)
    assert FABRICATED not in plaintext

    fresh = tmp_path / "fresh"
    message, _ = diagnostic(review(fresh, evidence.home, "import", str(bundle)))
    assert re.fullmatch(f"bundle refused: {refusal}", message), message
    assert_workspace_empty(fresh)


def test_a_known_item_is_never_replaced_by_another_desks_ciphertext(evidence: Evidence,
                                                                    tmp_path: Path) -> None:
    # A desk the journalist accepted with --accept-new-desk-key (it holds the same data, under
    # a signing key of its own) offers a consistent log in which the item already imported
    # here entered with other ciphertext. The importer must not "restore" the item from it.
    data_dir = copy_desk(evidence, tmp_path)
    with database(data_dir) as db:
        old_digest, custody_key = db.execute(
            "SELECT ciphertext_sha256, custody_key FROM submissions WHERE id = ?",
            (evidence.file_id,)).fetchone()
    digest = fabricate(data_dir, evidence.file_id)
    SigningKey.generate().save(data_dir / "signing_key.new")
    (data_dir / "signing_key.new").replace(data_dir / "signing_key")
    with database(data_dir) as db:
        db.execute("UPDATE custody_entries SET digest = ? WHERE subject = ?",
                   (Subject(evidence.file_id, digest, custody_key).digest,
                    Subject(evidence.file_id, old_digest, custody_key).subject))
    resign_from(data_dir, 1, lambda _row: None)  # every entry hashed and signed again
    assert run_desk("custody", "verify", data_dir=data_dir).returncode == 0
    bundle = export_all(data_dir, tmp_path / "other-desk.tar")
    workspace = copy_workspace(evidence, tmp_path)
    before = (workspace / "objects" / evidence.file_id / FILE_PART).read_bytes()

    message, hint = diagnostic(review(workspace, evidence.home, "import", str(bundle),
                                      "--accept-new-desk-key"))

    assert message == (f"bundle refused: object {evidence.file_id} is not the one imported "
                       "before: its ciphertext differs from the one pinned at its first import")
    assert hint is not None
    assert REFUSED_HINT in hint
    assert (workspace / "objects" / evidence.file_id / FILE_PART).read_bytes() == before
    assert index_rows(workspace, "SELECT count(*) FROM desks") == [(1,)]
    plaintext = opened(workspace, evidence.home, evidence.file_id, tmp_path / "case")
    assert plaintext.startswith(HEAD_MARK)
    assert FABRICATED not in plaintext


def test_an_exported_item_with_a_delete_entry_is_refused_by_the_importer(
        evidence: Evidence, tmp_path: Path) -> None:
    # FORMAT.md, rule bundle.deleted: a desk that records a deletion and still exports the
    # object contradicts its own log.
    data_dir = copy_desk(evidence, tmp_path)
    append_signed(data_dir, "delete", evidence.file_id)
    bundle = export_all(data_dir, tmp_path / "deleted.tar")
    workspace = tmp_path / "fresh"

    message, hint = diagnostic(review(workspace, evidence.home, "import", str(bundle)))

    assert message == (f"bundle refused: object {evidence.file_id}: is recorded as deleted but "
                       "was exported")
    assert hint is not None
    assert REFUSED_HINT in hint
    assert_workspace_empty(workspace)
