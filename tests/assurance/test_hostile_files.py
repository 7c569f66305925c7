"""The console on hostile files and bundles, inside a memory cap (issue 21, findings 5, 6, 9
and 10).

A source sends, through a real desk, what the second security review sent: a 96-byte
"clip.mp4" that is an HLS playlist naming another video of this machine; PNGs of a few KB that
claim 20000 x 20000 and 12000 x 12000 pixels; an MP4 whose subtitle track holds 100,000
samples. The bundle is exported and imported, and each console command is run on each file as
a journalist runs it, under RLIMIT_AS of 512 MiB set with resource.setrlimit in the process
that starts it (so the console and every tool it runs have that cap each). A bundle whose
manifest, and a workspace whose file part, is a compressed OpenPGP message expanding to 64 MiB
are run the same way. Each run must end with one clear line naming what was refused (or, for
inspect and report, list it among the findings), make nothing of the other file, and peak
under 512 MiB: the largest resident size of the console and of each tool it ran, from
getrusage(RUSAGE_CHILDREN) of that process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from desk.app import create_app
from tests.harness.console import (
    BUNDLE_ROOT,
    by_name,
    diagnostic,
    export,
    listing,
    ok,
    review,
    tar_members,
    write_tar,
)
from tests.harness.desks import add_account, desk_config, files_under, new_desk
from tests.harness.forms import FormBody
from tests.harness.gpg import Keypair
from tests.harness.paths import REVIEW_COMMAND
from tests.harness.tampering import compressed_bomb
from tests.harness.web import SourceBrowser

MIB = 1024 * 1024
CAP = 512 * MIB
# Run in a process of its own: cap its address space, run the console, report the largest
# resident size among the processes it waited for (in KiB).
CAPPED = """
import resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
status = subprocess.run(sys.argv[3:], check=False).returncode
with open(sys.argv[2], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(status)
"""
SAMPLES = 100_000
HLS = "refused: ffmpeg would read this file as hls, a playlist or list that names other files; " \
      "the console did not open it with ffmpeg"
COMPRESSED = "it is compressed, which the desk never does"


def pixels(count: int) -> str:
    return f"refused: the picture has {count:,} pixels, more than the 50,000,000 the console " \
           "decodes"


@dataclass
class Hostile:
    """A workspace holding the hostile files, their items by name, and the desk's bundle."""

    workspace: Path
    home: Path
    bundle: Path
    items: dict[str, str]
    elsewhere: Path


def _tool(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=120)


def _subtitles(out: Path) -> None:
    """An MP4 with one mov_text track of SAMPLES ten-millisecond samples (1.5 MB)."""
    def stamp(ms: int) -> str:
        return f"00:{ms // 60_000:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    cues = (f"{n + 1}\n{stamp(n * 10)} --> {stamp(n * 10 + 10)}\nGPS {n}\n"
            for n in range(SAMPLES))
    srt = out.with_suffix(".srt")
    srt.write_text("\n".join(cues))
    _tool("ffmpeg", "-v", "error", "-nostdin", "-i", srt, "-c:s", "mov_text", out)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, journalist: Keypair) -> Hostile:
    """The hostile files, sent by one source, exported and imported."""
    root = tmp_path_factory.mktemp("hostile")
    # Another video of this machine: what the playlist points ffmpeg at.
    elsewhere = root / "elsewhere.mp4"
    _tool("ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i",
          "testsrc=duration=1:size=160x120:rate=5", "-c:v", "libx264", elsewhere)
    files = {"clip.mp4": f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXTINF:3.0,\n"
                         f"{elsewhere}\n#EXT-X-ENDLIST\n".encode()}
    for side in (20000, 12000):
        path = root / f"bomb-{side}.png"
        Image.new("1", (side, side)).save(path, optimize=True)
        files[path.name] = path.read_bytes()
    _subtitles(root / "subtitles.mp4")
    files["subtitles.mp4"] = (root / "subtitles.mp4").read_bytes()
    assert all(len(data) < 2 * MIB for data in files.values())

    services = new_desk(desk_config(root / "data"))
    try:
        add_account(services, "alice", journalist)
        source = SourceBrowser(create_app(services.config, "source", services=services)
                               .test_client())
        source.get_codename()
        body = FormBody().field("csrf_token", source.form_token()).field("message", "")
        for name, data in files.items():
            body.file(name, data, content_type="image/png" if name.endswith(".png")
                      else "video/mp4")
        assert source.submit(body).status_code == 200
        bundle = export(services, root / "bundle.tar")
    finally:
        services.engine.dispose()
    workspace = root / "ws"
    ok(review(workspace, journalist.home, "import", str(bundle)))
    items = {name: row["id"] for name, row in by_name(listing(workspace, journalist.home)).items()}
    return Hostile(workspace, journalist.home, bundle, items, elsewhere)


def capped(hostile: Hostile, *args: str, workspace: Path | None = None
           ) -> tuple[subprocess.CompletedProcess[str], int]:
    """desk-review under the cap, and the peak resident size (bytes) of it or of a tool."""
    peak = (workspace or hostile.workspace).parent / "peak"
    done = subprocess.run(
        [sys.executable, "-c", CAPPED, str(CAP), str(peak), REVIEW_COMMAND, "--workspace",
         str(workspace or hostile.workspace), "--gnupghome", str(hostile.home), *args],
        capture_output=True, text=True, timeout=300, check=False)
    return done, int(peak.read_text()) * 1024


@pytest.mark.parametrize(("name", "command", "refusal"), [
    ("clip.mp4", "publish-copy", HLS),
    ("clip.mp4", "sheet", HLS),
    ("bomb-20000.png", "publish-copy", pixels(400_000_000)),
    ("bomb-20000.png", "sheet", pixels(400_000_000)),
    ("bomb-12000.png", "publish-copy", pixels(144_000_000)),
    ("bomb-12000.png", "sheet", pixels(144_000_000)),
])
def test_a_hostile_file_is_refused_in_one_line_within_the_cap(
        hostile: Hostile, name: str, command: str, refusal: str, tmp_path: Path) -> None:
    out = tmp_path / f"out{Path(name).suffix if command == 'publish-copy' else '.png'}"

    done, peak = capped(hostile, command, hostile.items[name], "--out", str(out))

    message, _ = diagnostic(done)
    assert message == refusal
    assert not out.exists()
    assert peak < CAP


def test_inspect_and_report_of_a_playlist_name_the_refusal_and_not_the_other_file(
        hostile: Hostile, tmp_path: Path) -> None:
    done, peak = capped(hostile, "inspect", hostile.items["clip.mp4"], "--json")
    report = tmp_path / "report.html"
    written, report_peak = capped(hostile, "report", hostile.items["clip.mp4"], "--out",
                                  str(report))

    found = json.loads(ok(done))
    assert found["streams"] == []
    assert {"category": "format refused", "where": "ffprobe", "value": HLS} in \
        found["could_identify_the_source"]
    ok(written)
    html = report.read_text()
    assert HLS in html
    assert "data:image/png" not in html  # no contact sheet, of this file or the other
    assert max(peak, report_peak) < CAP


def test_inspect_of_a_hundred_thousand_subtitle_samples_is_bounded_and_says_so(
        hostile: Hostile) -> None:
    done, peak = capped(hostile, "inspect", hostile.items["subtitles.mp4"], "--json")

    found = json.loads(ok(done))["could_identify_the_source"]
    assert {"category": "embedded documents not read", "where": "exiftool -ee",
            "value": f"its timed tracks hold {SAMPLES + 1:,} samples, more than the 10,000 "
                     "exiftool is let read; each track is listed with its first lines"} in found
    assert {"category": "timed metadata track", "where": "stream 0 (subtitle, mov_text)",
            "value": "GPS 0 | GPS 1 | GPS 2 | GPS 3"} in found
    assert not [f for f in found if f["where"].startswith("Doc")]
    assert peak < CAP


@pytest.fixture(scope="module")
def bomb(journalist: Keypair) -> bytes:
    """A few hundred bytes to alice that decrypt to 64 MiB."""
    return compressed_bomb(journalist, 64 * MIB)


def test_a_compressed_manifest_is_refused_within_the_cap(hostile: Hostile, bomb: bytes,
                                                         tmp_path: Path) -> None:
    bundle = write_tar([(name, bomb if name == f"{BUNDLE_ROOT}/manifest.gpg" else data)
                        for name, data in tar_members(hostile.bundle)], tmp_path / "bomb.tar")

    done, peak = capped(hostile, "import", str(bundle), workspace=tmp_path / "ws")

    message, _ = diagnostic(done)
    assert message == f"bundle refused: its manifest does not decrypt: {COMPRESSED}"
    assert peak < CAP


def test_a_compressed_part_is_refused_within_the_cap(hostile: Hostile, bomb: bytes,
                                                     tmp_path: Path) -> None:
    item = hostile.items["bomb-12000.png"]
    part = hostile.workspace / "objects" / item / "part-000000.gpg"
    original = part.read_bytes()
    part.write_bytes(bomb)
    try:
        done, peak = capped(hostile, "open", item, "--out", str(tmp_path / "out"))
    finally:
        part.write_bytes(original)

    message, _ = diagnostic(done)
    assert message == f"cannot decrypt item {item} (part-000000.gpg): {COMPRESSED}; nothing " \
                      "was kept"
    assert files_under(tmp_path / "out") == []
    assert peak < CAP
