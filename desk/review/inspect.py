"""`desk-review inspect`: what a file says about itself, and what in it could identify the source.

ffprobe gives container and stream facts; exiftool (`-ee -G3:1`, every tag, embedded
documents too) gives the tags. Both run on a private copy, never on the original. Anything a
reader could use to find the person who filmed it is listed under "could identify the source".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypto.names import INSPECT_SCRATCH_PREFIX
from desk.review.errors import ReviewError, ToolMissing

TOOL_SECONDS = 300
SCAN_BYTES = 64 * 1024 * 1024
SUBTITLE_SAMPLE_LINES = 4

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


def run_tool(args: list[str], what: str) -> str:
    """Run a tool with a time limit; ReviewError with its complaint on failure."""
    try:
        done = subprocess.run(args, capture_output=True, timeout=TOOL_SECONDS, check=False)  # noqa: S603
    except subprocess.TimeoutExpired as exc:
        raise ReviewError(f"{what} took longer than {TOOL_SECONDS} s") from exc
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
        try:
            probe = json.loads(run_tool(
                [ffprobe, "-v", "error", "-print_format", "json", "-show_format",
                 "-show_streams", "-show_chapters", media_arg(copy)], "ffprobe") or "{}")
        except ReviewError:
            probe = {}  # a still image ffmpeg cannot read (HEIF here); exiftool still can
        tags = json.loads(run_tool(
            [exiftool, "-j", "-ee", "-G3:1", "-a", "-u", "-api", "LargeFileSupport=1",
             "--", str(copy.absolute())], "exiftool") or "[{}]")[0]
        report = Report(tags={k: v for k, v in tags.items() if not OURS.match(k)})
        _facts(report, probe, tags)
        _tag_findings(report)
        _stream_findings(report, probe, copy)
        _signature_findings(report, copy)
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
    for key, value in report.tags.items():
        name = key.rsplit(":", 1)[-1]
        text = _text(value)
        if not text or text in {"0", "Unknown", "None"} or NOT_IDENTIFYING.search(name) or \
                key.startswith("ICC"):
            continue
        if LOCATION.search(name) and not name.lower().startswith("geotiff"):
            report.findings.append(Finding("location", key, text))
        elif DEVICE.search(name):
            report.findings.append(Finding("device", key, text))
        elif OWNER.search(name):
            report.findings.append(Finding("owner", key, text))
        elif THUMBNAIL.search(name):
            report.findings.append(Finding("embedded image", key, text[:80]))
        elif SOFTWARE.search(name):
            report.findings.append(Finding("software or encoder", key, text))
        elif key.startswith("Doc") and TIMED_TEXT.search(name):
            # Embedded documents (-ee): timed metadata samples such as telemetry.
            report.findings.append(Finding("timed metadata", key, text[:120]))


def _stream_findings(report: Report, probe: dict[str, Any], copy: Path) -> None:
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
            sample = _subtitle_sample(copy, index) if kind == "subtitle" else ""
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


def _subtitle_sample(copy: Path, index: int) -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return ""
    try:
        text = run_tool([ffmpeg, "-v", "error", "-nostdin", "-i", media_arg(copy),
                         "-map", f"0:{index}", "-f", "srt", "-"], "ffmpeg")
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
