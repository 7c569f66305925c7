"""`desk-review inspect`: what a file says about itself, and what in it could identify the source.

ffprobe gives container and stream facts; exiftool (`-ee -G3:1`, every tag, embedded
documents too) gives the tags. Both run on a private copy, never on the original. Container
tools do not look inside the frames, so the first, middle and last frame of every video stream
are checked too: taken out bit for bit where each frame is a picture file of its own
(Motion-JPEG, JPEG 2000, PNG...: cameras write their EXIF, GPS position and maker notes into
every such frame), and decoded, then read by exiftool. Anything a reader could use to find the
person who filmed it is listed under "could identify the source".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crypto.names import INSPECT_SCRATCH_PREFIX
from desk.review.errors import MediaRefused, ReviewError, ToolMissing

if TYPE_CHECKING:
    from PIL.Image import Image

TOOL_SECONDS = 300
SCAN_BYTES = 64 * 1024 * 1024
SUBTITLE_SAMPLE_LINES = 4
# Cues read for those lines: the first few, never the whole track.
SUBTITLE_SAMPLE_CUES = 16
# exiftool -ee reads every sample of every timed track, about a millisecond and 10 KB each:
# 100,000 subtitle samples in a 1.5 MB file took 44-70 s and 765 MB. It reads them only while
# the tracks ffprobe counts hold at most this many (an hour of GoPro telemetry has 3,600; a
# drone's per-frame subtitles, 5.5 minutes), and in any case within this much memory; past
# either, the tags come without embedded documents and the report says so.
EMBEDDED_SAMPLES = 10_000
EXIFTOOL_MEMORY = 256 * 1024 * 1024

# Tag-name patterns (exiftool names, ffprobe tag keys), by what they reveal.
LOCATION = re.compile(r"gps|location|iso6709|geotag|coordinates|latitude|longitude|©xyz",
                      re.IGNORECASE)
DEVICE = re.compile(r"^(make|model|cameramodelname|uniquecameramodel|localizedcameramodel|"
                    r"lensmake|lensmodel|lensinfo|lensid|hostcomputer|manufacturer|"
                    r"androidmake|androidmodel|androidmanufacturer)$|[.](make|model)$|"
                    r"serial|imei|deviceid|cameraid|uniqueid", re.IGNORECASE)
OWNER = re.compile(r"owner|^artist$|^author$|creator$|^copyright|by-?line|^credit$|rights|"
                   r"^usercomment$|contact", re.IGNORECASE)
SOFTWARE = re.compile(r"^(software|encoder|encodedby|encoding|writer|creatortool|"
                      r"softwareversion|firmware|firmwareversion|processingsoftware)$",
                      re.IGNORECASE)
THUMBNAIL = re.compile(r"thumbnailimage|previewimage|jpgfromraw|otherimage|coverart|"
                       r"^picture$|embeddedimage", re.IGNORECASE)
# Tags that say nothing about the source: format versions, flags, colour profiles' makers.
NOT_IDENTIFYING = re.compile(r"^(GPSVersionID|.*Flag)$", re.IGNORECASE)
# Embedded documents (-ee) whose text is timed metadata such as subtitles or telemetry.
TIMED_TEXT = re.compile(r"text|subtitle|telemetry|caption", re.IGNORECASE)
# Tags exiftool reports about the file on this machine, not about its making.
OURS = re.compile(r"^(SourceFile|ExifTool:|System:|File:)")
# Encoders write their name and settings into the video stream itself (H.264/HEVC user-data
# SEI), where container tools do not look.
STREAM_SIGNATURES = (b"x264 - core", b"x265 (build", b"Lavc", b"HandBrake",
                     b"Apple H.264", b"Qualcomm", b"MediaTek", b"Exynos")
# Video codecs whose every frame is a whole picture file, and the extension exiftool reads it
# by: such a frame keeps the APPn segments, boxes or chunks of the photo it was made from.
FRAME_FILES = {"mjpeg": "jpg", "jpegls": "jpg", "jpeg2000": "j2k", "png": "png", "tiff": "tif",
               "webp": "webp", "bmp": "bmp"}
# ffmpeg's demuxers for single pictures: the file is the frame, and its tags are read whole.
PICTURE_DEMUXERS = re.compile(r"^image2$|_pipe$")
# The only demuxers ffmpeg and ffprobe may read a file with: containers of footage and sound,
# and single pictures. ffmpeg picks a demuxer by content, and some read other files: an HLS
# playlist or a concat list named clip.mp4 made every tool work on another file of this
# machine, and publish-copy certify that file clean. The demuxer found here is then forced on
# every later run (-f), with only it allowed and only the file: protocol.
DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "mpeg", "flv", "ogg",
            "asf", "mxf", "dv", "wav", "mp3", "aac", "flac", "gif", "apng", "image2",
            "jpeg_pipe", "png_pipe", "webp_pipe", "tiff_pipe", "bmp_pipe")
# Demuxers whose files name other files or resources for ffmpeg to read.
PLAYLISTS = frozenset({"hls", "concat", "dash", "ffmetadata", "tee"})
# Pillow decodes a picture whole, whatever its file's size: a PNG of 48 KB claimed 20000 x 20000
# pixels and took 920 MB at 12000 x 12000. The console decodes at most 50 million (a
# 48-megapixel phone photo has 48.8), which in memory is 200 MB a copy, and holds at most two
# copies at once: under the 512 MiB the console keeps to.
MAX_PICTURE_PIXELS = 50_000_000
# Pillow's names for the still-picture formats the console reads as pictures.
PICTURE_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF", "TIFF", "BMP", "GIF")
PIXELS = re.compile(r"\((\d+) pixels\)")
NOT_ON_WHITELIST = re.compile(r"\[([\w,]+) @ 0x[0-9a-f]+\] Format not on whitelist")


@dataclass(frozen=True)
class Finding:
    """One thing that could identify the source."""

    category: str
    where: str
    value: str


@dataclass
class Report:
    """Facts about a file and the findings that could identify its source."""

    facts: dict[str, Any] = field(default_factory=dict)
    streams: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"facts": self.facts, "streams": self.streams,
                "could_identify_the_source": [f.__dict__ for f in self.findings],
                "tags": self.tags}


def require(tool: str, package: str) -> str:
    """The path of `tool`, or ToolMissing naming the Debian package."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(tool, package)
    return path


def media_arg(path: Path) -> str:
    """`path` as ffmpeg and ffprobe must be given it: absolute, behind the file: protocol, so
    that a name starting with '-' is not taken for an option nor one with a colon for another
    protocol."""
    return f"file:{path.absolute()}"


@dataclass(frozen=True)
class Media:
    """A file for ffmpeg and ffprobe, and the one demuxer they may read it with."""

    path: Path
    demuxer: str  # as ffprobe names it: "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"...

    def input(self) -> list[str]:
        """Input options and `-i`: this demuxer forced and the only one allowed (no playlist
        or sequence opens another file), only the file: protocol, and no picture decoded that
        has more pixels than Pillow is let decode."""
        forced = self.demuxer.split(",", 1)[0]
        options = ["-protocol_whitelist", "file", "-format_whitelist", self.demuxer,
                   "-f", forced, "-max_pixels", str(MAX_PICTURE_PIXELS)]
        if forced == "image2":
            options += ["-pattern_type", "none"]  # this one file, never a numbered sequence
        return [*options, "-i", media_arg(self.path)]


def open_media(path: Path) -> Media:
    """`path` with the demuxer ffprobe finds for its content, if it is one of DEMUXERS;
    ReviewError naming the format otherwise, or if ffprobe cannot read it at all."""
    ffprobe = require("ffprobe", "ffmpeg")
    # -pattern_type none: the one file even if image2 reads it (ffprobe ignores the option
    # for other demuxers).
    args = [ffprobe, "-v", "error", "-protocol_whitelist", "file",
            "-format_whitelist", ",".join(DEMUXERS), "-pattern_type", "none",
            "-show_entries", "format=format_name", "-of", "json", "-i", media_arg(path)]
    try:
        done = subprocess.run(args, capture_output=True, timeout=TOOL_SECONDS,  # noqa: S603
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise ReviewError(f"ffprobe took longer than {TOOL_SECONDS:.0f} s") from exc
    complaint = done.stderr.decode("utf-8", "replace")
    if (refused := NOT_ON_WHITELIST.search(complaint)) is not None:
        name = refused.group(1)
        why = ("a playlist or list that names other files" if name in PLAYLISTS else
               "not a format of footage, sound or pictures")
        raise MediaRefused(f"refused: ffmpeg would read this file as {name}, {why}; the "
                           "console did not open it with ffmpeg")
    try:
        demuxer = str(json.loads(done.stdout or b"{}")["format"]["format_name"])
    except (KeyError, TypeError, ValueError):
        demuxer = ""
    if done.returncode != 0 or demuxer not in DEMUXERS:
        lines = complaint.strip().splitlines()
        raise ReviewError(f"ffprobe failed: {lines[-1] if lines else done.returncode}")
    return Media(path, demuxer)


@contextmanager
def open_picture(path: Path) -> Iterator[Image]:
    """Pillow's lazily opened picture of `path`, one of PICTURE_FORMATS; MediaRefused before
    anything is decoded if it has more than MAX_PICTURE_PIXELS; OSError or ValueError if it is
    no picture Pillow reads."""
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    with warnings.catch_warnings():
        # Pillow only warns between its own limit and twice it, and would then decode.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            picture = Image.open(path, formats=PICTURE_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            claimed = PIXELS.search(str(exc))
            raise _too_many_pixels(f"{int(claimed.group(1)):,} pixels" if claimed else
                                   "more pixels than that") from exc
    with picture:
        width, height = picture.size
        if width * height > MAX_PICTURE_PIXELS:
            raise _too_many_pixels(f"{width} x {height} pixels")
        yield picture


def _too_many_pixels(size: str) -> MediaRefused:
    return MediaRefused(f"refused: the picture has {size}, more than the "
                        f"{MAX_PICTURE_PIXELS:,} the console decodes")


def run_tool(args: list[str], what: str, seconds: float = TOOL_SECONDS,
             memory: int | None = None) -> str:
    """Run a tool with a time limit, and with `memory` a limit on its address space;
    ReviewError with its complaint on failure."""
    if memory is not None:
        # prlimit sets the limit in the child before the tool starts (preexec_fn would be
        # unsafe in the viewer's threads).
        args = [require("prlimit", "util-linux"), f"--as={memory}", "--", *args]
    try:
        done = subprocess.run(args, capture_output=True, timeout=seconds, check=False)  # noqa: S603
    except subprocess.TimeoutExpired as exc:
        raise ReviewError(f"{what} took longer than {seconds:.0f} s") from exc
    if done.returncode != 0:
        complaint = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ReviewError(f"{what} failed: {complaint[-1] if complaint else done.returncode}")
    return done.stdout.decode("utf-8", "replace")


def inspect_file(original: Path, scratch_root: Path) -> Report:
    """Inspect a copy of `original` made in a private folder under `scratch_root`."""
    ffprobe = require("ffprobe", "ffmpeg")
    exiftool = require("exiftool", "libimage-exiftool-perl")
    scratch_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=INSPECT_SCRATCH_PREFIX, dir=scratch_root))
    copy = scratch / f"copy{original.suffix.lower()[:16]}"
    try:
        shutil.copyfile(original, copy)
        os.chmod(copy, 0o400)
        refused: MediaRefused | None = None
        media: Media | None = None
        try:
            media = open_media(copy)
            probe = json.loads(run_tool(
                [ffprobe, "-v", "error", "-print_format", "json", "-show_format",
                 "-show_streams", "-show_chapters", *media.input()], "ffprobe") or "{}")
        except MediaRefused as exc:
            refused, probe = exc, {}
        except ReviewError:
            probe = {}  # a still image ffmpeg cannot read (HEIF here); exiftool still can
        tags, unread = _read_tags(exiftool, copy, probe)
        report = Report(tags={k: v for k, v in tags.items() if not OURS.match(k)})
        _facts(report, probe, tags)
        if unread is not None:
            report.findings.append(Finding("embedded documents not read", "exiftool -ee", unread))
        if refused is not None:
            # Not knowing is a finding: publish-copy must not pass what ffmpeg was not let read.
            report.findings.append(Finding("format refused", "ffprobe", str(refused)))
        _tag_findings(report)
        _signature_findings(report, copy)
        if media is not None:
            _stream_findings(report, probe, media)
            _frame_findings(report, probe, media, scratch / "frames")
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _read_tags(exiftool: str, copy: Path, probe: dict[str, Any]) -> tuple[dict[str, Any],
                                                                          str | None]:
    """exiftool's tags of `copy`, with its embedded documents (timed samples) if their cost is
    bounded (EMBEDDED_SAMPLES, EXIFTOOL_MEMORY); and, if they were left out, why."""
    args = ["-j", "-G3:1", "-a", "-u", "-api", "LargeFileSupport=1", "--", str(copy.absolute())]
    samples = sum(_int(stream.get("nb_frames")) or 0 for stream in probe.get("streams", [])
                  if stream.get("codec_type") in ("subtitle", "data"))
    if samples > EMBEDDED_SAMPLES:
        unread = (f"its timed tracks hold {samples:,} samples, more than the "
                  f"{EMBEDDED_SAMPLES:,} exiftool is let read; each track is listed with its "
                  "first lines")
    else:
        try:
            return _tags(run_tool([exiftool, "-ee", *args], "exiftool",
                                  memory=EXIFTOOL_MEMORY)), None
        except ReviewError as exc:
            unread = (f"exiftool could not read them in {EXIFTOOL_MEMORY // 2**20} MiB and "
                      f"{TOOL_SECONDS} s ({exc})")
    return _tags(run_tool([exiftool, *args], "exiftool", memory=EXIFTOOL_MEMORY)), unread


def _tags(output: str) -> dict[str, Any]:
    tags: dict[str, Any] = json.loads(output or "[{}]")[0]
    return tags


def _facts(report: Report, probe: dict[str, Any], tags: dict[str, Any]) -> None:
    fmt = probe.get("format", {})
    report.facts = {
        "container": fmt.get("format_long_name") or tags.get("File:FileType"),
        "duration_seconds": _float(fmt.get("duration")),
        "size_bytes": _int(fmt.get("size")),
        "bit_rate": _int(fmt.get("bit_rate")),
        "creation_time": (fmt.get("tags") or {}).get("creation_time")
        or tags.get("ExifIFD:DateTimeOriginal") or tags.get("QuickTime:CreateDate"),
        "mime_type": tags.get("File:MIMEType"),
        "chapters": len(probe.get("chapters", [])),
    }
    for stream in probe.get("streams", []):
        stream_tags = stream.get("tags") or {}
        rotation = next((d.get("rotation") for d in stream.get("side_data_list", [])
                         if "rotation" in d), stream_tags.get("rotate"))
        report.streams.append({
            "index": stream.get("index"), "type": stream.get("codec_type"),
            "codec": stream.get("codec_name"), "width": stream.get("width"),
            "height": stream.get("height"), "frame_rate": stream.get("avg_frame_rate"),
            "duration_seconds": _float(stream.get("duration")),
            "creation_time": stream_tags.get("creation_time"),
            "encoder": stream_tags.get("encoder"), "handler": stream_tags.get("handler_name"),
            "rotation": rotation,
            "attached_picture": bool((stream.get("disposition") or {}).get("attached_pic")),
        })


def _tag_findings(report: Report) -> None:
    report.findings += _identifying_tags(report.tags)


def _identifying_tags(tags: dict[str, Any]) -> list[Finding]:
    """The tags among exiftool's `tags` that could identify the source, each where its key."""
    found = []
    for key, value in tags.items():
        name = key.rsplit(":", 1)[-1]
        text = _text(value)
        if OURS.match(key) or not text or text in {"0", "Unknown", "None"} or \
                NOT_IDENTIFYING.search(name) or key.startswith("ICC"):
            continue
        if LOCATION.search(name) and not name.lower().startswith("geotiff"):
            found.append(Finding("location", key, text))
        elif DEVICE.search(name):
            found.append(Finding("device", key, text))
        elif OWNER.search(name):
            found.append(Finding("owner", key, text))
        elif THUMBNAIL.search(name):
            found.append(Finding("embedded image", key, text[:80]))
        elif SOFTWARE.search(name):
            found.append(Finding("software or encoder", key, text))
        elif key.startswith("Doc") and TIMED_TEXT.search(name):
            # Embedded documents (-ee): timed metadata samples such as telemetry.
            found.append(Finding("timed metadata", key, text[:120]))
    return found


def _stream_findings(report: Report, probe: dict[str, Any], media: Media) -> None:
    fmt_tags = (probe.get("format", {}).get("tags")) or {}
    for key, value in fmt_tags.items():
        where = f"container tag {key}"
        if LOCATION.search(key):
            report.findings.append(Finding("location", where, _text(value)))
        elif DEVICE.search(key):
            report.findings.append(Finding("device", where, _text(value)))
        elif key.lower() == "encoder" or SOFTWARE.search(key):
            report.findings.append(Finding("software or encoder", where, _text(value)))
    for stream in probe.get("streams", []):
        kind, index = stream.get("codec_type"), stream.get("index")
        if kind in ("subtitle", "data"):
            sample = _subtitle_sample(media, index) if kind == "subtitle" else ""
            report.findings.append(Finding(
                "timed metadata track", f"stream {index} ({kind}, {stream.get('codec_name')})",
                sample or "a track that can carry GPS or telemetry samples"))
        if (stream.get("disposition") or {}).get("attached_pic"):
            report.findings.append(Finding("embedded image", f"stream {index}",
                                           "attached picture (cover or thumbnail)"))
        encoder = (stream.get("tags") or {}).get("encoder")
        if encoder:
            report.findings.append(Finding("software or encoder", f"stream {index} tag encoder",
                                           str(encoder)))


def _subtitle_sample(media: Media, index: int) -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return ""
    try:
        text = run_tool([ffmpeg, "-v", "error", "-nostdin", *media.input(),
                         "-map", f"0:{index}", "-frames:s", str(SUBTITLE_SAMPLE_CUES),
                         "-f", "srt", "-"], "ffmpeg")
    except ReviewError:
        return ""
    lines = [line for line in text.splitlines()
             if line.strip() and "-->" not in line and not line.strip().isdigit()]
    return " | ".join(lines[:SUBTITLE_SAMPLE_LINES])


def _signature_findings(report: Report, copy: Path) -> None:
    with copy.open("rb") as handle:
        head = handle.read(SCAN_BYTES)
    for signature in STREAM_SIGNATURES:
        at = head.find(signature)
        if at >= 0:
            end = head.find(b"\0", at, at + 200)
            text = head[at:end if end > 0 else at + 120].decode("ascii", "replace")
            report.findings.append(Finding("encoder string in the stream", f"byte {at}",
                                           text[:120]))


@dataclass(frozen=True)
class _Frame:
    """A frame taken out of a video stream for exiftool: bit for bit, or decoded."""

    path: Path
    stream: int
    number: int
    count: int
    name: str
    decoded: bool


def _frame_findings(report: Report, probe: dict[str, Any], media: Media, folder: Path
                    ) -> None:
    fmt = probe.get("format") or {}
    if PICTURE_DEMUXERS.search(str(fmt.get("format_name") or "")):
        return  # a photo: the file is its one frame, and its tags were read whole above
    start = _float(fmt.get("start_time")) or 0.0
    frames: list[_Frame] = []
    for stream in probe.get("streams", []):
        if stream.get("codec_type") != "video" or \
                (stream.get("disposition") or {}).get("attached_pic"):
            continue
        try:
            frames += _sample_frames(media, stream, start, folder)
        except ReviewError as exc:
            # Not knowing is a finding too: publish-copy must not pass a copy it could not read.
            report.findings.append(Finding("frames not checked", f"stream {stream.get('index')}",
                                           str(exc)))
    if not frames:
        return
    exiftool = require("exiftool", "libimage-exiftool-perl")
    try:
        paths = [str(f.path.absolute()) for f in frames]
        read = json.loads(run_tool([exiftool, "-j", "-ee", "-G3:1", "-a", "-u", "--", *paths],
                                   "exiftool") or "[]")
    except ReviewError as exc:
        report.findings.append(Finding("frames not checked", "exiftool", str(exc)))
        return
    tags = {str(entry.get("SourceFile")): entry for entry in read}
    # One finding per tag and value, naming every sampled frame of the stream that has it.
    found: dict[tuple[str, str, str, int, int, bool], list[_Frame]] = {}
    for frame in frames:
        for hit in _identifying_tags(tags.get(str(frame.path.absolute()), {})):
            key = (hit.category, hit.where, hit.value, frame.stream, frame.count, frame.decoded)
            found.setdefault(key, []).append(frame)
    for (category, tag, value, stream, count, decoded), hits in found.items():
        kind = ("decoded frame" if decoded else "frame") + ("s" if len(hits) > 1 else "")
        numbers = ", ".join(str(f.number) for f in hits)
        names = ", ".join(f.name for f in hits)
        report.findings.append(Finding(
            category, f"stream {stream} {kind} {numbers} of {count} ({names}): {tag}", value))


def _sample_frames(media: Media, stream: dict[str, Any], start: float, folder: Path
                   ) -> list[_Frame]:
    """The first, middle and last frame of `stream`, decoded to PNG, and also taken out bit
    for bit when each frame is a picture file of its own (FRAME_FILES)."""
    ffmpeg = require("ffmpeg", "ffmpeg")
    index, extension = int(stream["index"]), FRAME_FILES.get(str(stream.get("codec_name")))
    times = _packet_times(media, index)
    if not times:
        return []
    count = len(times)
    picks: dict[int, list[str]] = {}
    for name, position in (("first", 0), ("middle", count // 2), ("last", count - 1)):
        picks.setdefault(position, []).append(name)
    folder.mkdir(mode=0o700, exist_ok=True)
    source = media.input()
    exact = [ffmpeg, "-v", "error", "-nostdin", *source]
    inputs, outputs = [ffmpeg, "-v", "error", "-nostdin"], []
    frames = []
    for n, (position, names) in enumerate(sorted(picks.items())):
        # Halfway between this frame's time and the one before, so that no rounding of
        # either lands on a neighbour.
        at = (times[position - 1] + times[position]) / 2 - start if position else None
        seek = ["-ss", f"{at:.6f}"] if at is not None else []
        if extension:
            # -ss after -i: ffmpeg reads the stream from its start and drops the packets
            # before `at`, however the demuxer seeks, and copies the next one untouched.
            path = folder / f"{index}-{position}.{extension}"
            exact += [*seek, "-map", f"0:{index}", "-c:v", "copy", "-frames:v", "1",
                      "-f", "image2", media_arg(path)]
            frames.append(_Frame(path, index, position + 1, count, ", ".join(names), False))
        path = folder / f"{index}-{position}-decoded.png"
        inputs += [*seek, *source]
        outputs += ["-map", f"{n}:{index}", "-frames:v", "1", "-c:v", "png", "-f", "image2",
                    media_arg(path)]
        frames.append(_Frame(path, index, position + 1, count, ", ".join(names), True))
    if extension:
        run_tool(exact, "taking frames out of the video")
    run_tool([*inputs, *outputs], "decoding frames")
    missing = [f for f in frames if not f.path.is_file()]
    if missing:
        raise ReviewError(f"frame {missing[0].number} of {count} could not be read")
    return frames


def _packet_times(media: Media, index: int) -> list[float]:
    """The times of stream `index`'s packets, in order (demuxed, not decoded)."""
    ffprobe = require("ffprobe", "ffmpeg")
    text = run_tool([ffprobe, "-v", "error", "-select_streams", str(index), "-show_entries",
                     "packet=pts_time,dts_time", "-of", "csv=p=0", *media.input()], "ffprobe")
    times = set()
    for line in text.splitlines():
        pts, _, dts = line.partition(",")
        seconds = _seconds(pts)
        if seconds is None:
            seconds = _seconds(dts)  # no presentation time: the decoding time
        if seconds is not None:
            times.add(seconds)
    return sorted(times)


def _seconds(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _text(value: object) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)[:200]
    return str(value).strip()


def _float(value: object) -> float | None:
    try:
        return round(float(str(value)), 3)
    except (TypeError, ValueError):
        return None


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None
