"""What `desk-review inspect` finds inside the frames of a video, and what `publish-copy`
leaves in a copy (issue 14, finding 3).

Each file is sent by a source through a real desk, exported, imported and run through a real
`desk-review` with real ffmpeg and exiftool, from the real camera samples in tests/fixtures:
Motion-JPEG clips made of a camera's photos (a whole photo, its EXIF included, in every
frame), and photos sent without a name or a type (which once went through the video path and
came out as a one-frame Motion-JPEG with their GPS position).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pillow_heif import register_heif_opener

from desk.app import create_app
from tests.harness.console import by_name, diagnostic, export, listing, ok, review
from tests.harness.desks import add_account, desk_config, new_desk
from tests.harness.forms import FormBody
from tests.harness.gpg import Keypair
from tests.harness.paths import FIXTURES
from tests.harness.web import SourceBrowser

NIKON = "camera-gps-nikon-coolpix.jpg"  # GPS position, NIKON, COOLPIX P6000, maker notes
NOKIA = "phone-gps-nokia.heif"  # GPS position
NIKON_POSITION = "43 deg 28' 2.81\" N, 11 deg 53' 6.46\" E"
FRAMES = 5
OCTETS = "application/octet-stream"

# Motion-JPEG clips: file name -> (the photo every frame is, the content type sent).
MOTION_JPEG = {"dashcam.mov": (NIKON, "video/quicktime"), "bodycam.avi": (NIKON, "video/x-msvideo")}
# Photos sent without a name or a type (application/octet-stream): file name -> photo.
NAMELESS = {"IMG_2087": NIKON, "photo": NOKIA}

# exiftool -a -G1 -s lines that would name a place, a device, its owner or its maker notes.
IDENTIFYING_LINE = re.compile(
    r"^\[(GPS|IFD\d|ExifIFD|MakerNotes|Nikon\w*|Canon\w*|XMP[-\w]*)\]|"
    r"^\[[^]]+\]\s+(GPS\w*|Make|Model|CameraModelName|\w*SerialNumber|OwnerName|Software|"
    r"Encoder|ThumbnailImage)\s*:", re.MULTILINE)


# --- footage ---------------------------------------------------------------------------------


def _tool(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=120)


def _motion_jpeg(folder: Path, photo: str, out: Path) -> None:
    """FRAMES copies of a camera's photo, muxed bit for bit as Motion-JPEG frames."""
    frames = folder / f"frames-{out.stem}"
    frames.mkdir()
    for n in range(1, FRAMES + 1):
        shutil.copyfile(FIXTURES / photo, frames / f"f{n}.jpg")
    _tool("ffmpeg", "-v", "error", "-nostdin", "-framerate", "5", "-i", frames / "f%d.jpg",
          "-c:v", "copy", out)


@dataclass
class Desk:
    """One source's files, sent through a desk and imported into a console workspace."""

    workspace: Path
    home: Path
    items: dict[str, dict[str, Any]]
    originals: dict[str, bytes]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """desk-review with this workspace and GnuPG home."""
        return review(self.workspace, self.home, *args)


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory, journalist: Keypair) -> Desk:
    """Every clip and photo above, sent by one source with the content types a browser gives
    (none for the nameless photos), exported and imported."""
    root = tmp_path_factory.mktemp("publish-clean")
    folder = root / "footage"
    folder.mkdir()
    for name, (photo, _) in MOTION_JPEG.items():
        _motion_jpeg(folder, photo, folder / name)
    files = {name: (folder / name).read_bytes() for name in MOTION_JPEG}
    files |= {name: (FIXTURES / photo).read_bytes() for name, photo in NAMELESS.items()}
    types = {name: kind for name, (_, kind) in MOTION_JPEG.items()} | dict.fromkeys(NAMELESS,
                                                                                   OCTETS)

    services = new_desk(desk_config(root / "data"))
    try:
        add_account(services, "alice", journalist)
        source = SourceBrowser(create_app(services.config, "source", services=services)
                               .test_client())
        source.get_codename()
        body = FormBody().field("csrf_token", source.form_token()).field("message", "")
        for name, data in files.items():
            body.file(name, data, content_type=types[name])
        page = source.submit(body)
        assert page.status_code == 200, page.text
        bundle = export(services, root / "bundle.tar")
    finally:
        services.engine.dispose()
    desk = Desk(root / "ws", journalist.home, {}, files)
    ok(desk.run("import", str(bundle)))
    desk.items = by_name(listing(desk.workspace, desk.home))
    return desk


# --- what the tests read: `inspect --json` and exiftool ----------------------------------------


def exif_lines(*paths: Path) -> str:
    """exiftool's every tag, one `[group] Name : value` a line."""
    done = subprocess.run(["exiftool", "-a", "-G1", "-s", "-ee", *map(str, paths)],
                          capture_output=True, text=True, timeout=60, check=False)
    return done.stdout


def findings(desk: Desk, name: str) -> list[dict[str, str]]:
    """`inspect --json`'s findings for item `name`."""
    report = json.loads(ok(desk.run("inspect", desk.items[name]["id"], "--json")))
    found: list[dict[str, str]] = report["could_identify_the_source"]
    return found


# --- Motion-JPEG -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dashcam.mov", "bodycam.avi"])
def test_inspect_reports_the_camera_found_in_motion_jpeg_frames(sent: Desk, name: str) -> None:
    found = findings(sent, name)
    in_frames = "stream 0 frames 1, 3, 5 of 5 (first, middle, last): "
    by_where = {f["where"]: f for f in found if f["where"].startswith(in_frames)}
    assert by_where[in_frames + "Composite:GPSPosition"] == {
        "category": "location", "where": in_frames + "Composite:GPSPosition",
        "value": NIKON_POSITION}
    assert by_where[in_frames + "IFD0:Make"]["value"] == "NIKON"
    assert by_where[in_frames + "IFD0:Model"]["value"] == "COOLPIX P6000"
    assert by_where[in_frames + "IFD0:Make"]["category"] == "device"
    assert by_where[in_frames + "IFD1:ThumbnailImage"]["category"] == "embedded image"


# --- a photo without a name or a type --------------------------------------------------------


@pytest.mark.parametrize("name", list(NAMELESS))
def test_a_photo_sent_without_name_or_type_is_cleaned_as_a_photo(sent: Desk, name: str,
                                                                tmp_path: Path) -> None:
    item = sent.items[name]
    assert (item["content_type"], Path(name).suffix) == (OCTETS, "")
    assert any(f["category"] == "location" for f in findings(sent, name))

    copy = tmp_path / "for-editors.jpg"
    ok(sent.run("publish-copy", item["id"], "--out", str(copy)))
    tags = exif_lines(copy)
    assert re.search(r"^\[File\]\s+FileType\s+: JPEG$", tags, re.MULTILINE)
    assert IDENTIFYING_LINE.findall(tags) == []
    register_heif_opener()
    with Image.open(copy) as picture, Image.open(FIXTURES / NAMELESS[name]) as original:
        assert picture.format == "JPEG"
        assert picture.size == original.size  # the photo itself, not a frame of a video
        assert dict(picture.getexif()) == {}
    assert b"Exif\x00\x00" not in copy.read_bytes()

    as_video = tmp_path / "for-editors.mp4"
    message, hint = diagnostic(sent.run("publish-copy", item["id"], "--out", str(as_video)))
    assert message == "this item is a still image: cannot write .mp4 copies of it"
    assert hint is not None
    assert ".jpg" in hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["for-editors.jpg"]
