"""The offline review console `desk-review`, run as the journalist runs it: a real process, a
real bundle exported by a real desk, stock gpg keys, and footage made with ffmpeg and exiftool
or taken from real cameras (tests/fixtures, see its README).

Terminal rules checked throughout: requested data on stdout; a failure exits non-zero and
says so on stderr in one line starting `desk-review: ` (lower case, no full stop), optionally
followed by one `hint: ` line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from desk.app import create_app
from desk.records.models import Source
from desk.review.inspect import inspect_file, open_media
from desk.review.publish import publish_copy
from desk.review.server import create_viewer
from desk.review.sheet import contact_sheet, keyframe_times
from desk.review.workspace import Workspace
from desk.services import Services
from tests.harness.console import (
    BUNDLE_ROOT,
    assert_nothing_imported,
    by_name,
    diagnostic,
    export,
    listing,
    ok,
    review,
    tar_members,
    write_tar,
)
from tests.harness.data import sha256
from tests.harness.desks import (
    add_account,
    desk_config,
    files_under,
    find_markers,
    new_desk,
    run_desk,
)
from tests.harness.forms import FormBody
from tests.harness.gpg import Keypair, make_keypair
from tests.harness.paths import FIXTURES
from tests.harness.web import SourceBrowser

MESSAGE = "MSG-4471-marker: they moved the prisoners from platform 4 at dawn."
GPS_LINE = "GPS 31.23040 N 121.47370 E"
SUBTITLES = f"""1
00:00:00,000 --> 00:00:01,000
{GPS_LINE}

2
00:00:01,000 --> 00:00:02,000
GPS 31.23041 N 121.47372 E
"""
LOCATION_ISO6709 = "+31.2304+121.4737/"
HEAD_MARK = b"PLAINTEXT-HEAD-6c1e9d"
TAIL_MARK = b"PLAINTEXT-TAIL-0b77f2"
CONTENT_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".jpg": "image/jpeg",
                 ".heif": "image/heif"}
REAL_SAMPLES = ("camera-gps-nikon-coolpix.jpg", "camera-canon-40d.jpg", "phone-gps-nokia.heif",
                "xmp-bluesquare.jpg")
VIDEOS = ("station.mp4", "platform.mov")
IMAGES = ("witness.jpg", *REAL_SAMPLES)

# What inspect must report for each file, as (category, pattern its value must match); checked
# against what `exiftool -a -G1` shows for each real sample: the Canon has make and model but
# no position, the Nokia HEIF a position but no make or model.
COORDS_31 = r"\+31\.230|31 deg 13' 49\.\d\d\""
EXPECTED_FINDINGS: dict[str, list[tuple[str, str]]] = {
    "station.mp4": [("location", COORDS_31), ("timed metadata track", re.escape(GPS_LINE)),
                    ("encoder string in the stream", r"^x264 - core")],
    "platform.mov": [("location", COORDS_31)],
    "witness.jpg": [("location", COORDS_31), ("device", "^Acme$"),
                    ("device", "^Witness Cam 3$"), ("device", "^SN-0042-7781$")],
    "camera-gps-nikon-coolpix.jpg": [("location", r"43 deg 28' 2\.81\""),
                                     ("location", r"11 deg 53' 6\.46\""),
                                     ("device", "^NIKON$"), ("device", "^COOLPIX P6000$")],
    "camera-canon-40d.jpg": [("device", "^Canon$"), ("device", "^Canon EOS 40D$")],
    "phone-gps-nokia.heif": [("location", r"40 deg 47' 19\.27\""),
                             ("location", r"4 deg 0' 18\.51\"")],
    "xmp-bluesquare.jpg": [("software or encoder", "Adobe Photoshop CS2")],
}
# Tag names (exiftool -s) that would name a place, a device or the software that made a file.
IDENTIFYING_TAG = re.compile(r"^\[[^]]+\]\s+(GPS\w*|\w*Location\w*|\w*Coordinates|Make|Model|"
                             r"\w*SerialNumber|CameraModelName|LensModel|Software|Encoder|"
                             r"CreatorTool)\s*:", re.MULTILINE)


# --- footage ---------------------------------------------------------------------------------


def _tool(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def footage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Generated clips and stills with places, times, devices and a GPS subtitle track, and
    copies of the real camera samples; by the filename the source sends."""
    folder = tmp_path_factory.mktemp("footage")
    (folder / "gps.srt").write_text(SUBTITLES)
    picture = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2"]
    sound = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2"]
    tags = ["-metadata", f"location={LOCATION_ISO6709}",
            "-metadata", "creation_time=2024-03-01T06:15:00Z"]
    h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"]
    _tool("ffmpeg", "-v", "error", "-nostdin", *picture, *sound, "-i", str(folder / "gps.srt"),
          "-map", "0:v", "-map", "1:a", "-map", "2:s", *h264, "-c:s", "mov_text", *tags,
          str(folder / "station.mp4"))
    _tool("ffmpeg", "-v", "error", "-nostdin", *picture, *sound, *h264, *tags,
          str(folder / "platform.mov"))
    _tool("ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i",
          "testsrc=size=160x120:rate=1", "-frames:v", "1", str(folder / "witness.jpg"))
    _tool("exiftool", "-q", "-overwrite_original", "-GPSLatitude=31.2304",
          "-GPSLatitudeRef=N", "-GPSLongitude=121.4737", "-GPSLongitudeRef=E", "-Make=Acme",
          "-Model=Witness Cam 3", "-SerialNumber=SN-0042-7781", str(folder / "witness.jpg"))
    for name in REAL_SAMPLES:
        shutil.copyfile(FIXTURES / name, folder / name)
    return {name: (folder / name).read_bytes() for name in (*VIDEOS, *IMAGES)}


def send(browser: SourceBrowser, message: str, files: dict[str, bytes]) -> None:
    """Submit a message and files as a browser would, each with its usual content type."""
    body = FormBody().field("csrf_token", browser.form_token()).field("message", message)
    for name, data in files.items():
        body.file(name, data, content_type=CONTENT_TYPES.get(Path(name).suffix,
                                                              "application/octet-stream"))
    page = browser.submit(body)
    assert page.status_code == 200, page.text


def designation(services: Services) -> str:
    """The one source's designation."""
    with services.sessions() as session:
        return session.scalars(select(Source.designation)).one()


@pytest.fixture(scope="session")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Keypair:
    """A GnuPG home with a secret key that is not a recipient of anything here."""
    return make_keypair(tmp_path_factory.mktemp("keys") / "mallory", "Mallory")


# --- one desk, one bundle, one workspace shared by the read-only tests ------------------------


@dataclass
class Shared:
    """A second desk's bundle of all footage, imported into one workspace, and a small bundle
    of another source's message and file, for tests that import it afresh."""

    bundle: Path
    workspace: Path
    home: Path
    items: dict[str, dict[str, Any]]
    count: int
    footage: dict[str, bytes]
    small_bundle: Path
    evidence: bytes
    opened: dict[str, Path] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        """The decrypted original of `name`, opened once."""
        if name not in self.opened:
            line = ok(review(self.workspace, self.home, "open", self.items[name]["id"]))
            digest, _, where = line.strip().partition("  ")
            assert digest == sha256(self.footage[name])
            self.opened[name] = Path(where)
        return self.opened[name]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, journalist: Keypair,
           footage: dict[str, bytes]) -> Shared:
    """A desk of its own (so also 'another desk' for the per-test desks), built like conftest's
    `desk` fixture: one source sent every file, another a message and a file with markers."""
    root = tmp_path_factory.mktemp("shared")
    evidence = HEAD_MARK + os.urandom(300_000) + TAIL_MARK
    data = root / "data"
    config = desk_config(data)
    services = new_desk(config)
    try:
        add_account(services, "alice", journalist)
        app = create_app(config, "source", services=services)
        filmer, witness = SourceBrowser(app.test_client()), SourceBrowser(app.test_client())
        filmer.get_codename()
        send(filmer, "the footage, as promised", footage)
        first = designation(services)
        witness.get_codename()
        send(witness, MESSAGE, {"evidence.bin": evidence})
        with services.sessions() as session:
            second, = set(session.scalars(select(Source.designation))) - {first}
        bundle = export(services, root / "bundle.tar")
        small = run_desk("export", "--out", str(root / "small.tar"), "--source", second,
                         data_dir=data)
        assert small.returncode == 0, small.stderr
    finally:
        services.engine.dispose()
    workspace = root / "ws"
    ok(review(workspace, journalist.home, "import", str(bundle)))
    rows = listing(workspace, journalist.home)
    return Shared(bundle, workspace, journalist.home, by_name(rows), len(rows), footage,
                  root / "small.tar", evidence)


# --- 1. import -------------------------------------------------------------------------------


def test_import_lists_every_item_once_and_only_with_the_right_key(
        desk: Services, source: SourceBrowser, journalist: Keypair, stranger: Keypair,
        footage: dict[str, bytes], tmp_path: Path) -> None:
    files = {name: footage[name] for name in ("station.mp4", "platform.mov", "witness.jpg")}
    send(source, MESSAGE, files)
    bundle = export(desk, tmp_path / "bundle.tar")
    workspace = tmp_path / "ws"

    out = ok(review(workspace, journalist.home, "import", str(bundle)))
    assert "imported 4 new item(s)" in out
    rows = listing(workspace, journalist.home)
    assert len(rows) == 4
    assert {r["source"] for r in rows} == {designation(desk)}
    assert sorted(r["kind"] for r in rows) == ["file", "file", "file", "message"]
    named = by_name(rows)
    assert set(named) == set(files)
    for name, data in files.items():
        assert named[name]["size"] == len(data)
        assert named[name]["sha256"] == sha256(data)
        assert named[name]["decrypted"] is False
        assert named[name]["verified"] is True
        assert re.fullmatch(r"[0-9a-z]+", named[name]["id"])
    message, = (r for r in rows if r["kind"] == "message")
    assert message["size"] == len(MESSAGE.encode())
    objects = sorted(p.name for p in (workspace / "objects").iterdir())
    assert objects == sorted(r["id"] for r in rows)

    again = ok(review(workspace, journalist.home, "import", str(bundle)))
    assert "imported 0 new item(s)" in again
    assert "4 already here" in again
    assert listing(workspace, journalist.home) == rows
    assert sorted(p.name for p in (workspace / "objects").iterdir()) == objects

    send(source, "a later message", {})  # the desk's next export: only the new item is added
    later = ok(review(workspace, journalist.home, "import",
                      str(export(desk, tmp_path / "later.tar"))))
    assert "imported 1 new item(s)" in later
    assert "4 already here" in later
    assert len(listing(workspace, journalist.home)) == 5

    elsewhere = tmp_path / "ws-stranger"
    message_line, hint = diagnostic(review(elsewhere, stranger.home, "import", str(bundle)))
    assert message_line.startswith("cannot decrypt the bundle's manifest")
    assert hint is not None
    assert "secret key" in hint
    assert_nothing_imported(elsewhere, stranger.home)


# --- 2. tampered bundles ---------------------------------------------------------------------


def first_part(members: list[tuple[str, bytes]]) -> tuple[str, str]:
    """(member name, object id) of the first part member."""
    name = next(n for n, _ in members if re.search(r"/objects/[^/]+/part-\d{6}\.gpg$", n))
    return name, name.split("/")[2]


@pytest.mark.parametrize(("change", "reason"), [
    ("flip a byte in a part", "bundle refused: object {oid}: ciphertext differs from what "
                              "the desk received"),
    ("drop a part", "bundle refused: object {oid}: ciphertext differs from what the desk "
                    "received"),
    ("change VERSION", "bundle refused: not a desk bundle of version 2"),
    ("add a member outside the layout", "bundle refused: unexpected member "
                                        "'desk-bundle/objects/README.txt'"),
    ("cut the tar short", "bundle refused: unexpected end of data"),
])
def test_tampered_bundle_is_refused_with_its_reason_and_imports_nothing(
        shared: Shared, change: str, reason: str, tmp_path: Path) -> None:
    members = tar_members(shared.small_bundle)
    part, oid = first_part(members)
    if change == "flip a byte in a part":
        # The middle byte: a message's part can be shorter than any fixed offset.
        members = [(n, d[:len(d) // 2] + bytes([d[len(d) // 2] ^ 0x01]) + d[len(d) // 2 + 1:]
                    if n == part else d) for n, d in members]
    elif change == "drop a part":
        members = [(n, d) for n, d in members if n != part]
    elif change == "change VERSION":
        members = [(n, b"desk-bundle 1\n" if n == f"{BUNDLE_ROOT}/VERSION" else d)
                   for n, d in members]
    elif change == "add a member outside the layout":
        members.append((f"{BUNDLE_ROOT}/objects/README.txt", b"read me first"))
    bundle = write_tar(members, tmp_path / "tampered.tar")
    if change == "cut the tar short":  # a copy interrupted in the last object
        bundle.write_bytes(bundle.read_bytes()[: bundle.stat().st_size - 20_000])
    workspace = tmp_path / "ws"

    message, hint = diagnostic(review(workspace, shared.home, "import", str(bundle)))
    assert message == reason.format(oid=oid)
    assert hint is not None
    assert "nothing was imported" in hint
    assert_nothing_imported(workspace, shared.home)


def test_bundle_from_another_desk_needs_accept_new_desk_key(
        desk: Services, source: SourceBrowser, journalist: Keypair, shared: Shared,
        tmp_path: Path) -> None:
    send(source, "first desk's message", {})
    workspace = tmp_path / "ws"
    ok(review(workspace, journalist.home, "import", str(export(desk, tmp_path / "ours.tar"))))
    before = listing(workspace, journalist.home)
    objects = sorted((workspace / "objects").iterdir())
    assert len(before) == 1

    message, hint = diagnostic(review(workspace, journalist.home, "import", str(shared.bundle)))
    assert message.startswith("bundle refused: it is signed by a desk key this workspace has "
                              "not seen (")
    assert hint is not None
    assert "--accept-new-desk-key" in hint
    assert listing(workspace, journalist.home) == before
    assert sorted((workspace / "objects").iterdir()) == objects
    assert list((workspace / "staging").iterdir()) == []

    ok(review(workspace, journalist.home, "import", "--accept-new-desk-key",
              str(shared.bundle)))
    after = listing(workspace, journalist.home)
    assert len(after) == 1 + shared.count
    assert len({r["source"] for r in after}) == 3  # ours, and the other desk's two sources


# --- 3. open, 4. wipe ------------------------------------------------------------------------

@dataclass
class Imported:
    """A workspace holding one message and one file from a per-test desk."""

    workspace: Path
    home: Path
    bundle: Path
    file_id: str
    message_id: str
    data: bytes


@pytest.fixture
def imported(shared: Shared, tmp_path: Path) -> Imported:
    """The small bundle (a message and evidence.bin) imported into a fresh workspace."""
    workspace = tmp_path / "ws"
    ok(review(workspace, shared.home, "import", str(shared.small_bundle)))
    rows = listing(workspace, shared.home)
    assert len(rows) == 2
    file_id = by_name(rows)["evidence.bin"]["id"]
    message_id = next(r["id"] for r in rows if r["kind"] == "message")
    return Imported(workspace, shared.home, shared.small_bundle, file_id, message_id,
                    shared.evidence)


def leftovers(*roots: Path) -> list[Path]:
    """Files under `roots` holding any of the file's plaintext, or partial outputs."""
    hits = {path for path, _ in find_markers([HEAD_MARK, TAIL_MARK, MESSAGE.encode()], *roots)}
    return sorted(hits | {p for p in files_under(*roots) if ".partial" in p.name})


def test_open_decrypts_exactly_what_the_source_sent(imported: Imported, tmp_path: Path
                                                    ) -> None:
    ws, home = imported.workspace, imported.home
    digest, _, where = ok(review(ws, home, "open", imported.file_id)).strip().partition("  ")
    path = Path(where)
    assert path == ws / "decrypted" / imported.file_id / "evidence.bin"
    assert path.read_bytes() == imported.data
    assert digest == sha256(imported.data) == sha256(path.read_bytes())

    out = tmp_path / "case-folder"
    line = ok(review(ws, home, "open", imported.file_id, "--out", str(out))).strip()
    assert line == f"{sha256(imported.data)}  {out / 'evidence.bin'}"
    assert (out / "evidence.bin").read_bytes() == imported.data
    assert [p.name for p in out.iterdir()] == ["evidence.bin"]

    before = sorted(files_under(ws))
    assert ok(review(ws, home, "open", imported.message_id)) == MESSAGE + "\n"
    assert sorted(files_under(ws)) == before
    assert find_markers([MESSAGE.encode()], ws, tmp_path / "case-folder") == []


def test_open_with_a_home_lacking_the_key_keeps_nothing(imported: Imported, stranger: Keypair,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    for args in ((), ("--out", str(out))):
        message, hint = diagnostic(review(imported.workspace, stranger.home, "open",
                                          imported.file_id, *args))
        assert "secret key" in message
        assert hint is not None
    message, _ = diagnostic(review(imported.workspace, stranger.home, "open",
                                   imported.message_id))
    assert "secret key" in message
    assert leftovers(imported.workspace, out) == []

    message, hint = diagnostic(review(imported.workspace, imported.home, "open", "0123abcd"))
    assert "0123abcd" in message
    assert hint is not None
    assert "desk-review list" in hint
    assert by_name(listing(imported.workspace, imported.home))["evidence.bin"][
        "decrypted"] is False


def test_open_of_a_part_damaged_after_import_keeps_nothing(imported: Imported, tmp_path: Path
                                                           ) -> None:
    part = imported.workspace / "objects" / imported.file_id / "part-000000.gpg"
    data = part.read_bytes()
    middle = len(data) // 2
    flipped = data[:middle] + bytes([data[middle] ^ 0x20]) + data[middle + 1:]
    out = tmp_path / "out"
    for damaged, args in ((flipped, ()), (flipped, ("--out", str(out))),
                          (data[: len(data) * 2 // 3], ("--out", str(out)))):
        part.write_bytes(damaged)
        message, _ = diagnostic(review(imported.workspace, imported.home, "open",
                                       imported.file_id, *args))
        assert message.startswith(f"cannot decrypt item {imported.file_id}")
        assert "nothing was kept" in message
        assert leftovers(imported.workspace, out) == []
    # inspect decrypts on its own when the item is not open: it must refuse the same way
    message, _ = diagnostic(review(imported.workspace, imported.home, "inspect",
                                   imported.file_id))
    assert message.startswith(f"cannot decrypt item {imported.file_id}")
    assert leftovers(imported.workspace, out) == []
    rows = by_name(listing(imported.workspace, imported.home))
    assert rows["evidence.bin"]["decrypted"] is False


def test_wipe_removes_the_decrypted_file(imported: Imported, tmp_path: Path) -> None:
    ws, home = imported.workspace, imported.home
    path = Path(ok(review(ws, home, "open", imported.file_id)).strip().partition("  ")[2])
    assert path.is_file()
    assert by_name(listing(ws, home))["evidence.bin"]["decrypted"] is True

    wiped = review(ws, home, "wipe", imported.file_id)
    assert ok(wiped) == ""
    assert "removed 1 decrypted file(s)" in wiped.stderr
    assert not path.exists()
    assert by_name(listing(ws, home))["evidence.bin"]["decrypted"] is False
    assert leftovers(ws) == []

    out = tmp_path / "out"
    ok(review(ws, home, "open", imported.file_id, "--out", str(out)))
    assert (out / "evidence.bin").is_file()
    ok(review(ws, home, "wipe", imported.file_id))
    assert not (out / "evidence.bin").exists()
    assert by_name(listing(ws, home))["evidence.bin"]["decrypted"] is False


def test_wipe_removes_every_copy_open_made(imported: Imported, tmp_path: Path) -> None:
    ws, home, out = imported.workspace, imported.home, tmp_path / "case"
    ok(review(ws, home, "open", imported.file_id, "--out", str(out)))
    ok(review(ws, home, "open", imported.file_id))
    ok(review(ws, home, "wipe", imported.file_id))
    assert leftovers(ws, out) == []


def test_wipe_from_another_folder_removes_only_what_open_wrote(imported: Imported,
                                                              tmp_path: Path) -> None:
    """`open --out .` in one folder, `wipe` run from another that holds an unrelated file of
    the same name: the plaintext goes, the unrelated file stays; a copy changed since open is
    left and named, and wipe does not report success."""
    ws, home = imported.workspace, imported.home
    case, elsewhere = tmp_path / "case", tmp_path / "elsewhere"
    case.mkdir()
    elsewhere.mkdir()
    unrelated = elsewhere / "evidence.bin"
    unrelated.write_bytes(b"the journalist's own notes")
    line = ok(review(ws, home, "open", imported.file_id, "--out", ".", cwd=case)).strip()
    assert line == f"{sha256(imported.data)}  {case / 'evidence.bin'}"

    wiped = review(ws, home, "wipe", imported.file_id, cwd=elsewhere)
    assert ok(wiped) == ""
    assert "removed 1 decrypted file(s)" in wiped.stderr
    assert not (case / "evidence.bin").exists()
    assert unrelated.read_bytes() == b"the journalist's own notes"
    assert leftovers(ws, case) == []

    ok(review(ws, home, "open", imported.file_id, "--out", ".", cwd=case))
    (case / "evidence.bin").write_bytes(b"replaced by another file since")
    message, hint = diagnostic(review(ws, home, "wipe", imported.file_id, cwd=elsewhere))
    assert f"left 1 that open recorded: {case / 'evidence.bin'}" in message
    assert hint is not None
    assert (case / "evidence.bin").read_bytes() == b"replaced by another file since"
    assert unrelated.read_bytes() == b"the journalist's own notes"


def test_same_name_items_opened_into_one_folder_stay_apart(
        desk: Services, source: SourceBrowser, journalist: Keypair, footage: dict[str, bytes],
        tmp_path: Path) -> None:
    witness, canon = footage["witness.jpg"], footage["camera-canon-40d.jpg"]
    send(source, "", {"IMG_0001.jpg": witness})
    send(source, "", {"IMG_0001.jpg": canon})
    ws, home = tmp_path / "ws", journalist.home
    ok(review(ws, home, "import", str(export(desk, tmp_path / "b.tar"))))
    ids = {r["sha256"]: r["id"] for r in listing(ws, home) if r["kind"] == "file"}
    first, second = ids[sha256(witness)], ids[sha256(canon)]
    out = tmp_path / "case"
    first_path = Path(ok(review(ws, home, "open", first, "--out", str(out))).split("  ")[1]
                      .strip())
    second_path = Path(ok(review(ws, home, "open", second, "--out", str(out))).split("  ")[1]
                       .strip())
    assert first_path != second_path
    assert first_path.read_bytes() == witness
    assert second_path.read_bytes() == canon
    assert len(list(out.iterdir())) == 2

    def cameras() -> list[str]:
        report = json.loads(ok(review(ws, home, "inspect", first, "--json")))
        return [f["value"] for f in report["could_identify_the_source"]
                if f["category"] == "device"]

    found = cameras()
    assert "Witness Cam 3" in found  # the first item's own camera, not the second's
    assert "Canon EOS 40D" not in found
    # a decrypted file changed after open is not trusted: inspect decrypts afresh
    first_path.write_bytes(canon)
    assert "Witness Cam 3" in cameras()
    assert first_path.read_bytes() == canon
    assert list((ws / "staging").iterdir()) == []


def test_missing_part_is_restored_by_importing_again(imported: Imported) -> None:
    ws, home, item = imported.workspace, imported.home, imported.file_id
    (ws / "objects" / item / "part-000000.gpg").unlink()
    message, hint = diagnostic(review(ws, home, "open", item))
    assert "missing" in message
    assert hint == "import the bundle again"
    ok(review(ws, home, "import", str(imported.bundle)))
    digest = ok(review(ws, home, "open", item)).split("  ")[0]
    assert digest == sha256(imported.data)


# --- 5. inspect ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*VIDEOS, *IMAGES])
def test_inspect_reports_what_could_identify_the_source(shared: Shared, name: str) -> None:
    original = shared.path(name)
    before = (sha256(original.read_bytes()), original.stat().st_mtime_ns)
    report = json.loads(ok(review(shared.workspace, shared.home, "inspect",
                                  shared.items[name]["id"], "--json")))
    findings = [(f["category"], f["where"], f["value"])
                for f in report["could_identify_the_source"]]
    for category, pattern in EXPECTED_FINDINGS[name]:
        assert any(c == category and re.search(pattern, v) for c, _, v in findings), (
            category, pattern, findings)
    if name == "station.mp4":
        track = [w for c, w, v in findings if c == "timed metadata track" and GPS_LINE in v]
        assert track
        assert "subtitle" in track[0]
        assert {s["type"] for s in report["streams"]} == {"video", "audio", "subtitle"}
    assert (sha256(original.read_bytes()), original.stat().st_mtime_ns) == before
    assert sha256(original.read_bytes()) == sha256(shared.footage[name])
    assert list((shared.workspace / "staging").iterdir()) == []


@pytest.mark.parametrize("name", ["-report", "-report.mp4"])
def test_a_file_named_like_an_option_is_read_as_a_file(footage: dict[str, bytes], name: str,
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A source's file name that starts with '-', given relative as `open --out .` once
    recorded it: ffprobe and ffmpeg must read it, not take it for an option (`-report` writes
    a log file where they run)."""
    case = tmp_path / "case"
    case.mkdir()
    (case / name).write_bytes(footage["station.mp4"])
    monkeypatch.chdir(case)
    video, scratch = Path(name), tmp_path / "scratch"

    report = inspect_file(video, scratch)
    assert {s["type"] for s in report.streams} == {"video", "audio", "subtitle"}
    assert any(f.category == "timed metadata track" and GPS_LINE in f.value
               for f in report.findings)
    assert keyframe_times(open_media(video)) == [0.0]
    frames = contact_sheet(video, Path("-sheet.png"), Path("-frames"), scratch=scratch)
    assert [f.seconds for f in frames] == [0.0]
    publish_copy(video, Path("-clean.mp4"), scratch)
    assert {s["type"] for s in inspect_file(Path("-clean.mp4"), scratch).streams} == {
        "video", "audio"}
    assert sorted(p.name for p in case.iterdir()) == sorted(
        [name, "-sheet.png", "-frames", "-clean.mp4"])


def test_inspect_of_an_item_not_opened_leaves_no_plaintext(shared: Shared) -> None:
    item = shared.items["camera-canon-40d.jpg"]
    ok(review(shared.workspace, shared.home, "wipe", item["id"]))
    shared.opened.pop("camera-canon-40d.jpg", None)
    report = json.loads(ok(review(shared.workspace, shared.home, "inspect", item["id"],
                                  "--json")))
    assert any(f["value"] == "Canon EOS 40D" for f in report["could_identify_the_source"])
    data = shared.footage["camera-canon-40d.jpg"]
    assert [p for p in files_under(shared.workspace) if p.read_bytes() == data] == []
    assert by_name(listing(shared.workspace, shared.home))["camera-canon-40d.jpg"][
        "decrypted"] is False


# --- 5b. sheet and the viewer: scratch stays in the workspace ----------------------------------


def ffmpeg_spy(folder: Path, log: Path, kill_console: bool) -> str:
    """A PATH whose ffmpeg writes its arguments to `log`, runs the real ffmpeg and then, if
    asked, kills the console that ran it (SIGKILL, as a crash or a power cut would)."""
    real = shutil.which("ffmpeg")
    assert real is not None
    folder.mkdir(exist_ok=True)
    spy = folder / "ffmpeg"
    spy.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {shlex.quote(str(log))}\n'
                   f'{shlex.quote(real)} "$@"\nstatus=$?\n'
                   + ('kill -9 "$PPID"\n' if kill_console else "") + 'exit "$status"\n')
    spy.chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


def test_sheet_and_viewer_keep_their_scratch_in_the_workspace(
        shared: Shared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decrypted files are owner-only; keyframes are decoded in the workspace's staging folder,
    never in the system's temporary folder, so what a killed `sheet` leaves is where `wipe`
    clears it."""
    ws, home = (tmp_path / "ws").resolve(), shared.home
    ok(review(ws, home, "import", str(shared.bundle)))
    ids = {r["filename"]: r["id"] for r in listing(ws, home)}
    station, platform = ids["station.mp4"], ids["platform.mov"]
    umask = os.umask(0o022)
    try:
        for args in ((), ("--out", str(tmp_path / "case"))):
            where = Path(ok(review(ws, home, "open", station, *args)).strip().split("  ")[1])
            assert where.stat().st_mode & 0o777 == 0o600, args
    finally:
        os.umask(umask)

    system_temp, log = tmp_path / "tmp", tmp_path / "ffmpeg-args"
    system_temp.mkdir()
    temp_env = {"TMPDIR": str(system_temp)}
    killed = review(ws, home, "sheet", platform, "--out", str(tmp_path / "sheet.png"),
                    path=ffmpeg_spy(tmp_path / "kill", log, kill_console=True),
                    extra_env=temp_env)
    assert killed.returncode == -9, killed.stderr
    assert list(system_temp.iterdir()) == []
    assert {p.name.split("-")[0] for p in (ws / "staging").iterdir()} == {"open", "sheet"}
    ok(review(ws, home, "wipe", platform))
    assert list((ws / "staging").iterdir()) == []

    ok(review(ws, home, "inspect", station, path=ffmpeg_spy(tmp_path / "spy", log, False),
              extra_env=temp_env))
    assert list(system_temp.iterdir()) == []

    log.unlink()
    monkeypatch.setenv("PATH", ffmpeg_spy(tmp_path / "spy", log, kill_console=False))
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    workspace = Workspace.open(ws)
    try:
        viewer = create_viewer(workspace, None, "t").test_client()
        page = viewer.get(f"/t/items/{station}")
        original = viewer.get(f"/t/items/{station}/file")
    finally:
        workspace.engine.dispose()
    assert page.status_code == 200
    assert "data:image/png;base64," in page.text
    assert original.status_code == 200
    assert "Content-Disposition" not in original.headers  # never offered as "station.mp4"
    paths = [Path(a.removeprefix("file:")) for a in log.read_text().splitlines()
             if a.startswith("file:")]
    assert any(p.name.startswith("frame-") for p in paths)
    # the one input is the copy `open --out` made; everything else is in the workspace
    assert all(p.is_relative_to(ws) or p == tmp_path / "case" / "station.mp4" for p in paths), \
        paths
    assert list(system_temp.iterdir()) == []
    assert list((ws / "staging").iterdir()) == []


# --- 6. publish-copy -------------------------------------------------------------------------


def exif_tags(path: Path) -> str:
    done = subprocess.run(["exiftool", "-a", "-G1", "-s", str(path)], capture_output=True,
                          text=True, check=True, timeout=60)
    return done.stdout


def probe_streams(path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams",
                           str(path)], capture_output=True, text=True, check=True, timeout=60)
    streams: list[dict[str, Any]] = json.loads(done.stdout)["streams"]
    return streams


@pytest.mark.parametrize("name", VIDEOS)
def test_publish_copy_of_a_video_is_clean_and_plays(shared: Shared, name: str,
                                                    tmp_path: Path) -> None:
    original = shared.path(name)
    out = tmp_path / f"for-editors{original.suffix}"
    line = ok(review(shared.workspace, shared.home, "publish-copy", shared.items[name]["id"],
                     "--out", str(out)))
    assert line.strip() == f"{sha256(out.read_bytes())}  {out}"

    decode = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(out), "-f", "null",
                             "-"], capture_output=True, text=True, timeout=60, check=False)
    assert decode.returncode == 0
    assert decode.stderr == ""
    streams = probe_streams(out)
    assert sorted(s["codec_type"] for s in streams) == ["audio", "video"]
    video = next(s for s in streams if s["codec_type"] == "video")
    source_video = next(s for s in probe_streams(original) if s["codec_type"] == "video")
    assert video["nb_frames"] == source_video["nb_frames"]
    assert not [s for s in streams if (s.get("tags") or {}).get("creation_time")]

    tags = exif_tags(out)
    assert IDENTIFYING_TAG.findall(tags) == []
    assert "31 deg" not in tags
    assert "Subtitle" not in tags
    assert "Text" not in re.findall(r"HandlerType\s*:\s*(.*)", tags)
    raw = out.read_bytes()
    for needle in (b"x264 - core", b"Lavc", b"Lavf", b"31.2304", GPS_LINE.encode()):
        assert needle not in raw, needle
    assert inspect_file(out, tmp_path / "scratch").findings == []
    assert sha256(original.read_bytes()) == sha256(shared.footage[name])
    assert [p.name for p in tmp_path.iterdir() if p.name != "scratch"] == [out.name]


def test_a_killed_publish_copy_leaves_nothing_beside_out_and_wipe_clears_it(
        shared: Shared, tmp_path: Path) -> None:
    # The copy is made and checked in the workspace; only a copy that passed goes to --out.
    ws, home = (tmp_path / "ws").resolve(), shared.home
    ok(review(ws, home, "import", str(shared.bundle)))
    platform = {r["filename"]: r["id"] for r in listing(ws, home)}["platform.mov"]
    editors = tmp_path / "editors"
    editors.mkdir()

    killed = review(ws, home, "publish-copy", platform, "--out", str(editors / "safe.mp4"),
                    path=ffmpeg_spy(tmp_path / "kill", tmp_path / "log", kill_console=True))

    assert killed.returncode == -9, killed.stderr
    assert list(editors.iterdir()) == []
    assert "publish" in {p.name.split("-")[0] for p in (ws / "staging").iterdir()}
    ok(review(ws, home, "wipe", platform))
    assert list((ws / "staging").iterdir()) == []


@pytest.mark.parametrize("name", IMAGES)
def test_publish_copy_of_an_image_has_no_exif(shared: Shared, name: str, tmp_path: Path
                                              ) -> None:
    original = shared.path(name)
    out = tmp_path / "for-editors.jpg"
    ok(review(shared.workspace, shared.home, "publish-copy", shared.items[name]["id"],
              "--out", str(out)))
    tags = exif_tags(out)
    assert re.findall(r"^\[(IFD\d|ExifIFD|GPS|XMP[-\w]*|MakerNotes|Nikon|Canon)\]", tags,
                      re.MULTILINE) == []
    assert IDENTIFYING_TAG.findall(tags) == []
    with Image.open(out) as image:
        image.load()
        assert image.format == "JPEG"
        assert image.width > 0
        assert dict(image.getexif()) == {}
    assert inspect_file(out, tmp_path / "scratch").findings == []
    assert sha256(original.read_bytes()) == sha256(shared.footage[name])


def test_publish_copy_refuses_an_existing_out(shared: Shared, tmp_path: Path) -> None:
    out = tmp_path / "taken.mp4"
    out.write_bytes(b"someone else's edit")
    message, hint = diagnostic(review(shared.workspace, shared.home, "publish-copy",
                                      shared.items["station.mp4"]["id"], "--out", str(out)))
    assert "already exists" in message
    assert hint is not None
    assert out.read_bytes() == b"someone else's edit"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.mp4"]


# --- 7. tools missing ------------------------------------------------------------------------


@pytest.mark.parametrize(("tool", "package", "present"), [
    ("ffprobe", "ffmpeg", ()),
    ("exiftool", "libimage-exiftool-perl", ("ffprobe", "ffmpeg")),
])
def test_inspect_without_its_tools_names_the_package(
        shared: Shared, tool: str, package: str, present: tuple[str, ...], tmp_path: Path
        ) -> None:
    shared.path("platform.mov")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in present:
        found = shutil.which(program)
        assert found is not None
        (bin_dir / program).symlink_to(found)
    message, hint = diagnostic(review(shared.workspace, shared.home, "inspect",
                                      shared.items["platform.mov"]["id"], path=str(bin_dir)))
    assert tool in message
    assert message == f"{tool} is not installed"
    assert hint is not None
    assert package in hint


def test_the_viewer_says_why_it_could_not_inspect_a_file(
        shared: Shared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tools the console needs are missing: the item page says so instead of failing whole.
    shared.path("platform.mov")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    workspace = Workspace.open(shared.workspace)
    try:
        page = create_viewer(workspace, None, "t").test_client().get(
            f"/t/items/{shared.items['platform.mov']['id']}")
    finally:
        workspace.engine.dispose()
    assert page.status_code == 200
    assert "Not inspected: ffprobe is not installed" in page.text


# --- 8. the console stays offline ------------------------------------------------------------


def test_console_never_imports_the_online_apps() -> None:
    code = ("import json, sys\nimport desk.review.cli\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    modules = json.loads(done.stdout)
    assert "desk.review.cli" in modules
    banned = ("desk.source", "desk.journalist", "desk.app", "flask_wtf")
    assert [m for m in modules if any(m == b or m.startswith(f"{b}.") for b in banned)] == []


# --- the terminal rules when a folder cannot be made ------------------------------------------


@pytest.mark.parametrize("command", ["list", "open", "publish-copy"])
def test_a_folder_that_cannot_be_made_is_one_line(shared: Shared, command: str,
                                                  tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    item = shared.items["platform.mov"]["id"]
    if command == "list":
        result = review(blocker / "ws", shared.home, "list", "--json")
    elif command == "open":
        result = review(shared.workspace, shared.home, "open", item, "--out",
                        str(blocker / "case"))
    else:
        result = review(shared.workspace, shared.home, "publish-copy", item, "--out",
                        str(blocker / "copy.mov"))
    assert "Traceback" not in result.stderr
    message, _ = diagnostic(result)
    assert "a-file" in message
