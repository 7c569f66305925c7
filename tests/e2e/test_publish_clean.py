"""What `desk-review inspect` finds inside the frames of a video, and what `publish-copy`
leaves in a copy, for every codec (issue 14, finding 3).

Each file is sent by a source through a real desk, exported, imported and run through a real
`desk-review` with real ffmpeg and exiftool, from the real camera samples in tests/fixtures:
Motion-JPEG clips made of a camera's photos (a whole photo, its EXIF included, in every
frame), photos sent without a name or a type (which once went through the video path and came
out as a one-frame Motion-JPEG with their GPS position), and H.264 and HEVC clips whose SEI
units carry an encoder's settings and a GPS line. Every frame of each copy is taken out, bit
for bit and decoded, and read by exiftool and byte by byte.
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
from desk.review import publish
from desk.review.errors import ReviewError
from desk.review.inspect import inspect_file
from desk.review.publish import OWN_MUXER, VideoPlan, publish_copy, video_plan
from tests.harness.console import by_name, diagnostic, export, listing, ok, review
from tests.harness.data import sha256
from tests.harness.desks import add_account, desk_config, new_desk
from tests.harness.forms import FormBody
from tests.harness.gpg import Keypair
from tests.harness.paths import FIXTURES
from tests.harness.web import SourceBrowser

NIKON = "camera-gps-nikon-coolpix.jpg"  # GPS position, NIKON, COOLPIX P6000, maker notes
CANON = "camera-canon-40d.jpg"  # Canon, Canon EOS 40D, maker notes
NOKIA = "phone-gps-nokia.heif"  # GPS position
NIKON_POSITION = "43 deg 28' 2.81\" N, 11 deg 53' 6.46\" E"
FAKE_GPS = "GPS 43.46745 N 11.88513 E"
SEI_UUID = "a2f5e0c4-1d3b-4c7e-9f10-6b8d2e4a7c31"
FRAMES = 5
OCTETS = "application/octet-stream"

# Motion-JPEG clips: file name -> (the photo every frame is, the content type sent).
MOTION_JPEG = {"dashcam.mov": (NIKON, "video/quicktime"), "bodycam.avi": (NIKON, "video/x-msvideo"),
               "compact.mov": (CANON, "video/quicktime")}
# Photos sent without a name or a type (application/octet-stream): file name -> photo.
NAMELESS = {"IMG_2087": NIKON, "photo": NOKIA}
SEI_CLIPS = ("x264.mp4", "x265-inband.mp4", "x265.mp4")

# exiftool -a -G1 -s lines that would name a place, a device, its owner or its maker notes.
IDENTIFYING_LINE = re.compile(
    r"^\[(GPS|IFD\d|ExifIFD|MakerNotes|Nikon\w*|Canon\w*|XMP[-\w]*)\]|"
    r"^\[[^]]+\]\s+(GPS\w*|Make|Model|CameraModelName|\w*SerialNumber|OwnerName|Software|"
    r"Encoder|ThumbnailImage)\s*:", re.MULTILINE)
# Byte strings none of the copies may hold anywhere.
CAMERA_BYTES = (b"NIKON", b"Nikon\x00", b"COOLPIX", b"Canon EOS", b"Exif\x00\x00",
                FAKE_GPS.encode(), b"x264 - core", b"x265 (build", b"Lavc")


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


def _sei_clips(folder: Path) -> None:
    """H.264 from libx264 (its settings in an SEI) with a GPS line added in another SEI; HEVC
    from libx265 with its SEI in the stream's header (hvcC), and the same with it in-band."""
    picture = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1"]
    _tool("ffmpeg", "-v", "error", "-nostdin", *picture, "-c:v", "libx264", "-preset",
          "ultrafast", "-bsf:v", f"h264_metadata=sei_user_data={SEI_UUID}+{FAKE_GPS}",
          folder / "x264.mp4")
    # No B-frames: a raw stream (below) keeps no presentation times to reorder them by.
    _tool("ffmpeg", "-v", "error", "-nostdin", *picture, "-c:v", "libx265", "-preset",
          "ultrafast", "-x265-params", "log-level=error:bframes=0", folder / "x265.mp4")
    # Through a raw stream: the header is rebuilt from the parameter sets alone, and the SEI
    # stays in the first access unit.
    _tool("ffmpeg", "-v", "error", "-nostdin", "-i", folder / "x265.mp4", "-c", "copy",
          "-bsf:v", "hevc_mp4toannexb", "-f", "hevc", folder / "x265.hevc")
    _tool("ffmpeg", "-v", "error", "-nostdin", "-r", "10", "-i", folder / "x265.hevc",
          "-c", "copy", folder / "x265-inband.mp4")


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
    _sei_clips(folder)
    files = {name: (folder / name).read_bytes() for name in (*MOTION_JPEG, *SEI_CLIPS)}
    files |= {name: (FIXTURES / photo).read_bytes() for name, photo in NAMELESS.items()}
    types = {name: kind for name, (_, kind) in MOTION_JPEG.items()}
    types |= dict.fromkeys(SEI_CLIPS, "video/mp4") | dict.fromkeys(NAMELESS, OCTETS)

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


# --- what the tests read the copies with: ffmpeg, ffprobe, exiftool and bytes ----------------


def exif_lines(*paths: Path) -> str:
    """exiftool's every tag, one `[group] Name : value` a line."""
    done = subprocess.run(["exiftool", "-a", "-G1", "-s", "-ee", *map(str, paths)],
                          capture_output=True, text=True, timeout=60, check=False)
    return done.stdout


def video_streams(path: Path) -> list[dict[str, Any]]:
    """ffprobe's video streams of `path`, with their packets counted."""
    done = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-print_format", "json",
                           "-show_streams", str(path)], capture_output=True, text=True,
                          check=True, timeout=60)
    streams: list[dict[str, Any]] = json.loads(done.stdout)["streams"]
    return [s for s in streams if s["codec_type"] == "video"]


def every_frame(path: Path, folder: Path, bsf: str | None = None) -> tuple[list[Path], list[Path]]:
    """Every frame of `path`'s video, (bit for bit, decoded to PNG), one file each."""
    folder.mkdir()
    filters = ["-bsf:v", bsf] if bsf else []
    _tool("ffmpeg", "-v", "error", "-nostdin", "-i", path, "-map", "0:v", "-c:v", "copy",
          *filters, "-f", "image2", folder / "packet-%03d.bin")
    _tool("ffmpeg", "-v", "error", "-nostdin", "-i", path, "-map", "0:v", "-c:v", "png",
          "-f", "image2", folder / "decoded-%03d.png")
    return sorted(folder.glob("packet-*")), sorted(folder.glob("decoded-*"))


def units(stream: bytes, codec: str) -> list[tuple[int, bytes]]:
    """(type, bytes) of every NAL unit in an Annex B stream, in order."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", stream)]
    found = []
    for start, end in zip(starts, [*starts[1:], len(stream) + 3], strict=True):
        unit = stream[start:end - 3].rstrip(b"\x00")
        kind = unit[0] & 0x1F if codec == "h264" else (unit[0] >> 1) & 0x3F
        found.append((kind, unit))
    return found


def slices(stream: bytes, codec: str) -> list[bytes]:
    """The units that hold the picture: H.264 slices (1, 5), HEVC's VCL units (0-31)."""
    return [u for t, u in units(stream, codec) if (t in (1, 5) if codec == "h264" else t < 32)]


def annex_b(path: Path, codec: str) -> bytes:
    """The first video stream of `path` as Annex B, parameter sets and header SEI in-band."""
    return subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0",
                           "-c:v", "copy", "-bsf:v", f"{codec}_mp4toannexb", "-f", codec, "-"],
                          capture_output=True, check=True, timeout=60).stdout


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


@pytest.mark.parametrize(("name", "out", "codec"), [
    ("dashcam.mov", "for-editors.mp4", "h264"),
    ("bodycam.avi", "for-editors.mov", "h264"),
    ("bodycam.avi", "for-editors.mkv", "h264"),
    ("compact.mov", "for-editors.webm", "vp9"),
])
def test_motion_jpeg_is_encoded_again_and_no_frame_keeps_the_camera(
        sent: Desk, name: str, out: str, codec: str, tmp_path: Path) -> None:
    copy = tmp_path / "copies" / out
    line = ok(sent.run("publish-copy", sent.items[name]["id"], "--out", str(copy)))
    assert line.strip() == f"{sha256(copy.read_bytes())}  {copy}"
    assert [p.name for p in copy.parent.iterdir()] == [out]  # no partial or pass files left

    video, = video_streams(copy)
    assert video["codec_name"] == codec
    assert int(video["nb_read_packets"]) == FRAMES
    raw = copy.read_bytes()
    assert [b for b in CAMERA_BYTES if b in raw] == []

    packets, decoded = every_frame(copy, tmp_path / "frames")
    assert len(packets) == len(decoded) == FRAMES
    for packet in packets:
        assert [b for b in CAMERA_BYTES if b in packet.read_bytes()] == [], packet.name
    assert IDENTIFYING_LINE.findall(exif_lines(copy, *packets, *decoded)) == []
    with Image.open(FIXTURES / MOTION_JPEG[name][0]) as photo:
        size = photo.size
    for frame in decoded:
        with Image.open(frame) as picture:
            assert picture.size == size
            assert dict(picture.getexif()) == {}
    assert [f for f in inspect_file(copy, tmp_path / "scratch").findings
            if f != OWN_MUXER] == []
    assert list((sent.workspace / "staging").iterdir()) == []  # no frame or copy left behind


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


# --- H.264 and HEVC: copied without SEI, or encoded again --------------------------------------


@pytest.mark.parametrize(("name", "codec", "copied"), [
    ("x264.mp4", "h264", True),
    ("x265-inband.mp4", "hevc", True),
    # x265 puts its SEI in the stream's header, which the units filter does not reach.
    ("x265.mp4", "h264", False),
])
def test_h264_and_hevc_copies_carry_no_sei_in_any_frame(sent: Desk, name: str, codec: str,
                                                        copied: bool, tmp_path: Path) -> None:
    source_codec = "h264" if name.startswith("x264") else "hevc"
    sei = {6} if codec == "h264" else {39, 40}
    original = tmp_path / name
    original.write_bytes(sent.originals[name])
    original_stream = annex_b(original, source_codec)
    assert {t for t, _ in units(original_stream, source_codec)} & ({6} | {39, 40})
    if name == "x264.mp4":
        assert FAKE_GPS.encode() in original_stream

    copy = tmp_path / "copies" / "for-editors.mp4"
    ok(sent.run("publish-copy", sent.items[name]["id"], "--out", str(copy)))
    video, = video_streams(copy)
    assert video["codec_name"] == codec
    assert int(video["nb_read_packets"]) == 10
    stream = annex_b(copy, codec)
    assert {t for t, _ in units(stream, codec)} & sei == set()
    # Copied: the very same picture, slice for slice. Encoded again: other slices.
    assert (slices(stream, codec) == slices(original_stream, source_codec)) is copied

    packets, decoded = every_frame(copy, tmp_path / "frames", f"{codec}_mp4toannexb")
    assert len(packets) == len(decoded) == 10
    for packet in packets:
        data = packet.read_bytes()
        assert {t for t, _ in units(data, codec)} & sei == set(), packet.name
        assert [b for b in CAMERA_BYTES if b in data] == [], packet.name
    assert IDENTIFYING_LINE.findall(exif_lines(copy, *decoded)) == []
    assert [b for b in CAMERA_BYTES if b in copy.read_bytes()] == []
    assert inspect_file(copy, tmp_path / "scratch").findings == []


# --- the plan: which codecs may be copied ----------------------------------------------------


@pytest.mark.parametrize(("codec", "container", "plan"), [
    ("mjpeg", "mp4", VideoPlan(copy=False, codec="h264")),
    ("mjpeg", "webm", VideoPlan(copy=False, codec="vp9")),
    ("jpeg2000", "mov", VideoPlan(copy=False, codec="h264")),
    ("prores", "mov", VideoPlan(copy=False, codec="h264")),
    ("dnxhd", "matroska", VideoPlan(copy=False, codec="h264")),
    ("av1", "mp4", VideoPlan(copy=False, codec="h264")),
    ("vp9", "webm", VideoPlan(copy=False, codec="vp9")),
    ("a-codec-nobody-named", "mp4", VideoPlan(copy=False, codec="h264")),
    (None, "mov", VideoPlan(copy=False, codec="h264")),
    ("h264", "webm", VideoPlan(copy=False, codec="vp9")),
    ("h264", "mp4", VideoPlan(copy=True, codec="h264")),
    ("hevc", "matroska", VideoPlan(copy=True, codec="hevc")),
])
def test_only_h264_and_hevc_are_copied(codec: str | None, container: str, plan: VideoPlan
                                       ) -> None:
    assert video_plan(codec, container) == plan


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_a_copied_stream_is_always_filtered(codec: str) -> None:
    args = video_plan(codec, "mp4").args(0)
    assert args[:2] == ["-c:v:0", "copy"]
    bsf = args[args.index("-bsf:v:0") + 1]
    assert bsf.startswith("filter_units=pass_types=")
    passed = {int(t) for t in bsf.removeprefix("filter_units=pass_types=").split("|")}
    assert passed & ({6} if codec == "h264" else {39, 40}) == set()
    assert passed >= ({1, 5, 7, 8} if codec == "h264" else {1, 19, 32, 33, 34})


# --- the check after the copy: a copy that still carries anything is refused -------------------


def _copy_everything(codec: str | None, container: str) -> VideoPlan:
    return VideoPlan(copy=True, codec=codec or "")


def test_frames_still_carrying_exif_refuse_the_copy(sent: Desk, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Were Motion-JPEG copied bit for bit, the frames checked after the copy would find the
    camera: the command fails and writes nothing."""
    original = tmp_path / "dashcam.mov"
    original.write_bytes(sent.originals["dashcam.mov"])
    monkeypatch.setattr(publish, "video_plan", _copy_everything)
    out = tmp_path / "copies" / "for-editors.mov"
    with pytest.raises(ReviewError) as refused:
        publish_copy(original, out, tmp_path / "scratch")
    assert str(refused.value).startswith("refused: the copy still carries ")
    assert "stream 0 frames 1, 3, 5 of 5 (first, middle, last): IFD0:Make" in str(refused.value)
    assert list(out.parent.iterdir()) == []


def test_units_left_in_a_stream_refuse_the_copy(sent: Desk, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Were the units filter to let SEI through, the units check would find it."""
    original = tmp_path / "x264.mp4"
    original.write_bytes(sent.originals["x264.mp4"])
    monkeypatch.setattr(VideoPlan, "args", lambda self, n: [f"-c:v:{n}", "copy"])
    out = tmp_path / "copies" / "for-editors.mp4"
    with pytest.raises(ReviewError) as refused:
        publish_copy(original, out, tmp_path / "scratch")
    assert str(refused.value).startswith("refused: the copy still carries ")
    assert "in-stream metadata: stream 0 (h264)" in str(refused.value)
    assert list(out.parent.iterdir()) == []
