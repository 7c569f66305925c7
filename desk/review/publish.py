"""`desk-review publish-copy`: a copy safe to hand to editors, proven by inspecting it again.

What the file is, a still picture or a video, is decided by reading its content, never by the
name or type the source's browser declared: a photo sent as `IMG_2087` with
`application/octet-stream` is a photo.

Images are decoded and encoded again, so no EXIF, XMP, IPTC, maker notes or thumbnails survive.

Video: only the audio and video streams are kept (no subtitle or data tracks, no attached
pictures, no chapters), container and stream metadata are dropped, and the sound is encoded
again. A picture stream is copied bit for bit only if its codec is on an allow-list, H.264 and
HEVC, whose units a bitstream filter sorts: only the slices, parameter sets and delimiters
pass, so the SEI where encoders and phones write their name, settings and more does not, nor
filler or reserved units. Every other codec is decoded and encoded again (H.264, or VP9 for
WebM): Motion-JPEG carries a whole photo, EXIF and GPS included, in every frame, and JPEG
2000, ProRes, DNxHD or a codec this module does not know may carry their own. So is an HEVC
stream whose header (hvcC) holds SEI, which the filter does not reach. The streams are then
written into the container once more without any encoder's name.

The copy is then checked: inspected like any file, with its first, middle and last frames
decoded and read by exiftool, and every unit of each H.264 and HEVC stream checked against
the allow-list. If anything that could identify the source remains, the copy is deleted and
the command fails. The original is never written to.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from crypto.durable import durable_output, sync_path
from crypto.names import PUBLISH_SCRATCH_PREFIX
from desk.review.errors import MediaRefused, ReviewError
from desk.review.inspect import (
    TOOL_SECONDS,
    Finding,
    Media,
    Report,
    inspect_file,
    media_arg,
    open_media,
    open_picture,
    require,
    run_tool,
)

VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
                 ".webm": "webm"}
# The demuxer that reads what each container's muxer writes: forced on the copy, which is read
# back as strictly as the original.
DEMUXER_OF = {"mp4": "mov,mp4,m4a,3gp,3g2,mj2", "mov": "mov,mp4,m4a,3gp,3g2,mj2",
              "matroska": "matroska,webm", "webm": "matroska,webm"}
# Audio is encoded again: encoders write their name into the audio bitstream too (FFmpeg's AAC
# encoder in the first frame), and bitexact encoding writes none.
AUDIO_CODECS = {"mp4": ["aac", "-b:a", "192k"], "mov": ["aac", "-b:a", "192k"],
                "matroska": ["aac", "-b:a", "192k"], "webm": ["libopus", "-b:a", "128k"]}
IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
# Of the picture formats (inspect.PICTURE_FORMATS), GIF, PNG and WebP can also be animations,
# which are video.
ANIMATED_FORMATS = {"GIF", "PNG", "WEBP"}

# The allow-list of codecs whose bitstream may be copied, each with the NAL unit types a copy
# keeps: the slices that make the picture, the parameter sets that say how to decode them, and
# delimiters. Everything else goes, above all SEI (H.264 type 6, HEVC 39 and 40), where
# encoders write their name and settings and cameras more; also filler data (which may hold
# any bytes), data partitions and extensions, and the reserved and unspecified types.
# H.264: 1 slice, 5 IDR slice, 7 SPS, 8 PPS, 9 access unit delimiter, 10-11 end of sequence
# and of stream.
# HEVC: 0-9 slices, 16-21 IRAP slices, 32-34 VPS, SPS, PPS, 35 delimiter, 36-37 end of
# sequence and of bitstream.
# Not on the list: VP9, which has no units to sort, so nothing to prove a copy clean by; AV1,
# whose OBUs could be sorted the same way (metadata and padding out), but are not checked
# here yet; and Motion-JPEG, JPEG 2000, ProRes, DNxHD and the rest, whose frames hold
# fields and segments no filter here takes out.
KEPT_UNITS = {
    "h264": frozenset({1, 5, 7, 8, 9, 10, 11}),
    "hevc": frozenset({*range(10), *range(16, 22), *range(32, 38)}),
}
# The containers a copied H.264 or HEVC stream can go in (WebM holds neither).
COPY_CONTAINERS = {"mp4", "mov", "matroska"}
# What a stream that may not be copied becomes: H.264 in .mp4, .mov and .mkv, which plays
# everywhere; VP9 in WebM.
ENCODE_AS = {"mp4": "h264", "mov": "h264", "matroska": "h264", "webm": "vp9"}
ENCODERS = {
    "h264": ("libx264", {"preset": "medium", "crf": "18"}),
    "vp9": ("libvpx-vp9", {"crf": "31", "b": "0", "row-mt": "1", "deadline": "good",
                           "cpu-used": "4"}),
}
# Even width and height and 4:2:0, which every player decodes (Motion-JPEG is often 4:2:2).
PLAYABLE = "scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p"
DECODE_CHECK_SECONDS = "60"
# Encoding takes longer the longer the footage: this much per second of it, on a slow machine.
ENCODE_SECONDS_PER_SECOND = 30
ENCODE_SECONDS_UNKNOWN_LENGTH = 6 * 3600
READ_SIZE = 1 << 20
# Matroska and WebM always name their muxer (MuxingApp and WritingApp), as just "Lavf" when
# bitexact, and ffprobe shows that as the container's encoder tag. It names the desk's own
# ffmpeg, which wrote the copy, and nothing of the source's.
OWN_MUXER = Finding("software or encoder", "container tag encoder", "Lavf")


@dataclass(frozen=True)
class VideoPlan:
    """How one video stream reaches the copy: its bitstream copied, or decoded and encoded
    again, and the codec it has in the copy."""

    copy: bool
    codec: str

    def args(self, n: int) -> list[str]:
        """ffmpeg's options for the copy's video stream `n`."""
        if self.copy:
            args = [f"-c:v:{n}", "copy"]
        else:
            encoder, options = ENCODERS[self.codec]
            args = [f"-c:v:{n}", encoder, f"-filter:v:{n}", PLAYABLE]
            for name, value in options.items():
                args += [f"-{name}:v:{n}", value]
        if self.codec in KEPT_UNITS:
            # Also for encoded streams: libx264 writes its version and settings into an SEI.
            kept = "|".join(str(t) for t in sorted(KEPT_UNITS[self.codec]))
            args += [f"-bsf:v:{n}", f"filter_units=pass_types={kept}"]
        return args


def video_plan(codec: str | None, container: str) -> VideoPlan:
    """Copy a stream only if its codec is on the allow-list (KEPT_UNITS) and fits the
    container; encode anything else again, a codec nobody named included."""
    if codec in KEPT_UNITS and container in COPY_CONTAINERS:
        return VideoPlan(copy=True, codec=codec)
    return VideoPlan(copy=False, codec=ENCODE_AS[container])


def publish_copy(original: Path, out: Path, scratch: Path) -> Report:
    """Write a cleaned copy of `original` to `out`; return the copy's (clean) inspection."""
    if out.exists():
        raise ReviewError(f"the output file {out} already exists",
                          "choose another --out or remove it first")
    if out.resolve() == original.resolve():
        raise ReviewError("the copy cannot replace the original")
    out.parent.mkdir(parents=True, exist_ok=True)
    # The copy is made and checked inside the workspace, where `wipe` clears what a killed
    # run leaves; only a copy that passed its checks goes to `out`.
    work = scratch / f"{PUBLISH_SCRATCH_PREFIX}{os.urandom(6).hex()}"
    work.mkdir(mode=0o700, parents=True)
    temp = work / f"copy{out.suffix}"
    try:
        left: list[Finding] = []
        if is_still_image(original):
            _clean_image(original, temp)
        else:
            left = _clean_video(original, temp)
        report = inspect_file(temp, scratch)
        report.findings = left + [f for f in report.findings if f != OWN_MUXER]
        if report.findings:
            found = "; ".join(f"{f.category}: {f.where}" for f in report.findings[:5])
            raise ReviewError(f"refused: the copy still carries {found}",
                              "nothing was written; report this file to the desk's developers")
        _deliver(temp, out)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _deliver(checked: Path, out: Path) -> None:
    """Give the checked copy the name `out`, durably, never replacing a file there: a hard
    link where both are on one filesystem, else a copy written whole or not at all."""
    sync_path(checked)
    try:
        os.link(checked, out)
    except FileExistsError as exc:
        raise ReviewError(f"the output file {out} already exists",
                          "choose another --out or remove it first") from exc
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        try:
            with checked.open("rb") as source, durable_output(out, replace=False) as target:
                shutil.copyfileobj(source, target, READ_SIZE)
        except FileExistsError as exists:
            raise ReviewError(f"the output file {out} already exists",
                              "choose another --out or remove it first") from exists
        return
    sync_path(out.parent)


def is_still_image(path: Path) -> bool:
    """True when the file's content is a still picture (JPEG, PNG, WebP, HEIF, TIFF, BMP or a
    GIF of one frame), whatever its name or declared type."""
    try:
        with open_picture(path) as image:
            return image.format not in ANIMATED_FORMATS or not getattr(image, "is_animated",
                                                                       False)
    except MediaRefused:
        return True  # a picture too large to decode: the image path says so
    except (OSError, ValueError):
        return False


def _clean_video(original: Path, temp: Path) -> list[Finding]:
    """Write the copy to `temp`; return the units left in it that it may not carry."""
    container = VIDEO_FORMATS.get(temp.suffix.lower())
    if container is None:
        raise ReviewError(f"cannot write {temp.suffix or 'files without an extension'} copies "
                          "of a video", "use --out with .mp4, .mov, .mkv or .webm")
    ffmpeg = require("ffmpeg", "ffmpeg")
    ffprobe = require("ffprobe", "ffmpeg")
    # Read as what its content is, among footage formats only: never a playlist that would
    # make the copy of another file.
    source = open_media(original)
    probe = json.loads(run_tool(
        [ffprobe, "-v", "error", "-select_streams", "V", "-show_entries",
         "format=duration:stream=codec_name", "-print_format", "json", *source.input()],
        "ffprobe") or "{}")
    # The streams `-map 0:V` picks, in its order: video that is not an attached picture.
    plans = [video_plan(s.get("codec_name"), container) for s in probe.get("streams", [])]
    try:
        duration = float(probe.get("format", {}).get("duration"))
        seconds = TOOL_SECONDS + ENCODE_SECONDS_PER_SECOND * duration
    except (TypeError, ValueError):
        seconds = ENCODE_SECONDS_UNKNOWN_LENGTH
    copy = Media(temp, DEMUXER_OF[container])
    _write_video(ffmpeg, source, temp, container, plans, seconds)
    left = _foreign_units(ffmpeg, copy, plans, seconds)
    if any(plans[n].copy for n in left):
        # The filter sorts the units of every packet, but not those in the stream's header
        # (an HEVC hvcC may hold SEI, x265's always does): encode such a stream again.
        encoded = VideoPlan(copy=False, codec=ENCODE_AS[container])
        plans = [encoded if n in left else plan for n, plan in enumerate(plans)]
        temp.unlink()
        _write_video(ffmpeg, source, temp, container, plans, seconds)
        left = _foreign_units(ffmpeg, copy, plans, seconds)
    run_tool([ffmpeg, "-v", "error", "-nostdin", "-t", DECODE_CHECK_SECONDS, *copy.input(),
              "-f", "null", "-"], "checking that the copy decodes")
    return [Finding("in-stream metadata", f"stream {n} ({plans[n].codec})",
                    f"unit types {', '.join(str(t) for t in sorted(types))}, which a copy "
                    "must not carry") for n, types in sorted(left.items())]


def _write_video(ffmpeg: str, original: Media, temp: Path, container: str,
                 plans: list[VideoPlan], seconds: float) -> None:
    """Two passes: the first picks, filters and encodes the streams; the second only puts
    them in the container, without the name ffmpeg gives each stream it encodes (which the
    first pass cannot leave out, and .mov and .mp4 keep in the sample description)."""
    streams = temp.with_name(f"{temp.stem}-streams{temp.suffix}")
    no_metadata = ["-map_metadata", "-1", "-map_metadata:s:v", "-1", "-map_metadata:s:a", "-1",
                   "-map_chapters", "-1", "-fflags", "+bitexact"]
    try:
        args = [ffmpeg, "-v", "error", "-nostdin", *original.input(),
                "-map", "0:V?", "-map", "0:a?", "-c:a", *AUDIO_CODECS[container],
                *no_metadata, "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                "-fps_mode", "passthrough"]
        for n, plan in enumerate(plans):
            args += plan.args(n)
        run_tool([*args, "-f", container, media_arg(streams)], "ffmpeg", seconds)
        run_tool([ffmpeg, "-v", "error", "-nostdin",
                  *Media(streams, DEMUXER_OF[container]).input(), "-map", "0",
                  "-c", "copy", *no_metadata, "-f", container, media_arg(temp)],
                 "ffmpeg", seconds)
    finally:
        streams.unlink(missing_ok=True)


def _foreign_units(ffmpeg: str, copy: Media, plans: list[VideoPlan], seconds: float
                   ) -> dict[int, set[int]]:
    """For each H.264 or HEVC stream of `copy` holding NAL units the allow-list does not keep,
    their types, read from every packet and from the stream's header."""
    left = {}
    for n, plan in enumerate(plans):
        if plan.codec in KEPT_UNITS:
            foreign = _unit_types(ffmpeg, copy, n, plan.codec, seconds) - KEPT_UNITS[plan.codec]
            if foreign:
                left[n] = foreign
    return left


def _unit_types(ffmpeg: str, copy: Media, n: int, codec: str, seconds: float) -> set[int]:
    """The NAL unit types in video stream `n` of `copy`, read from the stream as Annex B (where
    the header's parameter sets and SEI come before each keyframe), piped, never on disk."""
    args = [ffmpeg, "-v", "error", "-nostdin", *copy.input(), "-map", f"0:v:{n}",
            "-c:v", "copy", "-bsf:v", f"{codec}_mp4toannexb", "-f", codec, "-"]
    # No stderr pipe: nobody reads it while the units are read, and a full one would stall.
    process = subprocess.Popen(args, stdout=subprocess.PIPE,  # noqa: S603
                               stderr=subprocess.DEVNULL)
    timer = threading.Timer(seconds, process.kill)
    timer.start()
    types = set()
    try:
        stream = process.stdout
        if stream is None:  # pragma: no cover - stdout=PIPE makes one
            raise ReviewError("cannot read the copy's units")
        carried = b""
        while chunk := stream.read(READ_SIZE):
            # A start code 00 00 01 never occurs inside a unit (emulation prevention); the
            # byte after it is the unit's header. Three bytes carried over find a start code
            # cut by the chunk's end.
            data = carried + chunk
            for start in re.finditer(b"\x00\x00\x01", data):
                if start.end() < len(data):
                    header = data[start.end()]
                    types.add(header & 0x1F if codec == "h264" else (header >> 1) & 0x3F)
            carried = data[-3:]
        status = process.wait()
    finally:
        timer.cancel()
        process.kill()
        process.wait()
    if status != 0:
        raise ReviewError(f"reading the units of the copy's video stream {n} failed "
                          f"(ffmpeg exit status {status})")
    return types


def _clean_image(original: Path, temp: Path) -> None:
    target = IMAGE_FORMATS.get(temp.suffix.lower())
    if target is None:
        raise ReviewError(f"this item is a still image: cannot write "
                          f"{temp.suffix or 'files without an extension'} copies of it",
                          "use --out with .jpg, .png or .webp")
    from PIL import ImageOps

    mode = "RGB" if target == "JPEG" else "RGBA"
    try:
        with open_picture(original) as source:
            # Turn the picture upright first: the orientation tag goes with the rest. In place
            # and converted only if need be: at most two copies of the picture in memory.
            ImageOps.exif_transpose(source, in_place=True)
            clean = source if source.mode == mode else source.convert(mode)
            clean.info.clear()
            options = {"quality": 95} if target in ("JPEG", "WEBP") else {}
            clean.save(temp, target, exif=b"", icc_profile=None, **options)
    except (OSError, ValueError) as exc:
        raise ReviewError(f"cannot read the image: {exc}") from exc
