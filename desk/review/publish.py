"""`desk-review publish-copy`: a copy safe to hand to editors, proven by inspecting it again.

What the file is, a still picture or a video, is decided by reading its content, never by the
name or type the source's browser declared: a photo sent as `IMG_2087` with
`application/octet-stream` is a photo.

Video: only the audio and video streams are kept (no subtitle or data tracks, no attached
pictures, no chapters), container and stream metadata are dropped, and user-data SEI units
(where encoders and some phones write their name, settings and more) are cut from H.264 and
HEVC streams without re-encoding the picture; the sound is encoded again. Images are decoded
and encoded again, so no EXIF, XMP, IPTC, maker notes or thumbnails survive. The copy is then
inspected like any file; if anything that could identify the source remains, it is deleted and
the command fails. The original is never written to.
"""

from __future__ import annotations

import os
from pathlib import Path

from crypto.durable import sync_path
from crypto.names import PARTIAL_MARK
from desk.review.errors import ReviewError
from desk.review.inspect import Report, inspect_file, media_arg, require, run_tool

VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
                 ".webm": "webm"}
# Audio is encoded again: encoders write their name into the audio bitstream too (FFmpeg's AAC
# encoder in the first frame), and bitexact encoding writes none. Video is copied untouched.
AUDIO_CODECS = {"mp4": ["aac", "-b:a", "192k"], "mov": ["aac", "-b:a", "192k"],
                "matroska": ["aac", "-b:a", "192k"], "webm": ["libopus", "-b:a", "128k"]}
IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
IMAGE_INPUTS = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".tif", ".tiff", ".gif",
                ".bmp"}
# Pillow's names for the still-picture formats publish-copy reads as images; of these, GIF,
# PNG and WebP can also be animations, which are video.
STILL_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF", "TIFF", "BMP", "GIF")
ANIMATED_FORMATS = {"GIF", "PNG", "WEBP"}
# NAL unit types of user-data SEI: H.264 type 6; HEVC prefix and suffix SEI, 39 and 40.
SEI_FILTERS = {"h264": "filter_units=remove_types=6", "hevc": "filter_units=remove_types=39|40"}
DECODE_CHECK_SECONDS = "60"


def publish_copy(original: Path, out: Path, scratch: Path) -> Report:
    """Write a cleaned copy of `original` to `out`; return the copy's (clean) inspection."""
    if out.exists():
        raise ReviewError(f"the output file {out} already exists",
                          "choose another --out or remove it first")
    if out.resolve() == original.resolve():
        raise ReviewError("the copy cannot replace the original")
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}{PARTIAL_MARK}{os.urandom(4).hex()}{out.suffix}")
    try:
        if is_still_image(original):
            _clean_image(original, temp)
        else:
            _clean_video(original, temp, scratch)
        report = inspect_file(temp, scratch)
        if report.findings:
            left = "; ".join(f"{f.category}: {f.where}" for f in report.findings[:5])
            raise ReviewError(f"refused: the copy still carries {left}",
                              "nothing was written; report this file to the desk's developers")
        sync_path(temp)
        os.replace(temp, out)
        sync_path(out.parent)
        return report
    finally:
        temp.unlink(missing_ok=True)


def is_still_image(path: Path) -> bool:
    """True when the file's content is a still picture (JPEG, PNG, WebP, HEIF, TIFF, BMP or a
    GIF of one frame), whatever its name or declared type."""
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    try:
        with Image.open(path, formats=STILL_FORMATS) as image:
            return image.format not in ANIMATED_FORMATS or not getattr(image, "is_animated",
                                                                       False)
    except Image.DecompressionBombError:
        return True  # a picture too large to decode: the image path says so
    except (OSError, ValueError):
        return False


def _clean_video(original: Path, temp: Path, scratch: Path) -> None:
    container = VIDEO_FORMATS.get(temp.suffix.lower())
    if container is None:
        raise ReviewError(f"cannot write {temp.suffix or 'files without an extension'} copies "
                          "of a video", "use --out with .mp4, .mov, .mkv or .webm")
    ffmpeg = require("ffmpeg", "ffmpeg")
    codecs = {s["codec"] for s in inspect_file(original, scratch).streams if s["type"] == "video"}
    args = [ffmpeg, "-v", "error", "-nostdin", "-i", media_arg(original),
            "-map", "0:V?", "-map", "0:a?", "-c:v", "copy", "-c:a", *AUDIO_CODECS[container],
            "-map_metadata", "-1", "-map_metadata:s:v", "-1", "-map_metadata:s:a", "-1",
            "-map_chapters", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
            "-flags:a", "+bitexact"]
    for codec in sorted(codecs & SEI_FILTERS.keys()):
        args += ["-bsf:v", SEI_FILTERS[codec]]
    run_tool([*args, "-f", container, media_arg(temp)], "ffmpeg")
    run_tool([ffmpeg, "-v", "error", "-nostdin", "-t", DECODE_CHECK_SECONDS, "-i", media_arg(temp),
              "-f", "null", "-"], "checking that the copy decodes")


def _clean_image(original: Path, temp: Path) -> None:
    target = IMAGE_FORMATS.get(temp.suffix.lower())
    if target is None:
        raise ReviewError(f"this item is a still image: cannot write "
                          f"{temp.suffix or 'files without an extension'} copies of it",
                          "use --out with .jpg, .png or .webp")
    from PIL import Image, ImageOps
    from pillow_heif import register_heif_opener

    register_heif_opener()
    try:
        with Image.open(original, formats=STILL_FORMATS) as source:
            # Turn the picture upright first: the orientation tag goes with the rest.
            upright = ImageOps.exif_transpose(source)
            clean = upright.convert("RGB" if target == "JPEG" else "RGBA")
            clean.info.clear()
            options = {"quality": 95} if target in ("JPEG", "WEBP") else {}
            clean.save(temp, target, exif=b"", icc_profile=None, **options)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ReviewError(f"cannot read the image: {exc}") from exc


def looks_like_image(path: Path, content_type: str | None) -> bool:
    """True for still images, by declared type or extension: a hint for showing an item, never
    for cleaning one (publish-copy reads the content: `is_still_image`)."""
    if content_type and content_type.startswith("image/"):
        return True
    return path.suffix.lower() in IMAGE_INPUTS

