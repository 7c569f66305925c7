"""`desk-review sheet`: a contact sheet of keyframes with their timestamps.

The picture a journalist looks at first, and the frames to take to a separate, connected
machine for reverse image search. Keyframes are found by ffprobe without decoding the other
frames (encoders put keyframes at scene changes), spread evenly over the video, grabbed one by
one with ffmpeg, and laid out with their times by Pillow.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from crypto.names import SHEET_SCRATCH_PREFIX
from desk.review.errors import ReviewError
from desk.review.inspect import (
    Media,
    media_arg,
    open_media,
    open_picture,
    require,
    run_tool,
)

MAX_FRAMES = 24
COLUMNS = 4
THUMB_WIDTH = 320
LABEL_HEIGHT = 28
MARGIN = 8


@dataclass(frozen=True)
class Frame:
    """One frame of the sheet: its time in seconds and where its picture was saved."""

    seconds: float
    path: Path


def keyframe_times(video: Media, limit: int = MAX_FRAMES) -> list[float]:
    """Up to `limit` keyframe times spread over the video."""
    ffprobe = require("ffprobe", "ffmpeg")
    text = run_tool([ffprobe, "-v", "error", "-select_streams", "V:0", "-skip_frame", "nokey",
                     "-show_entries", "frame=best_effort_timestamp_time", "-of", "csv=p=0",
                     *video.input()], "ffprobe")
    values = (line.split(",")[0].strip() for line in text.splitlines())
    times = sorted({round(float(v), 3) for v in values if _is_number(v)})
    if len(times) <= limit:
        return times
    step = (len(times) - 1) / (limit - 1)
    return [times[round(i * step)] for i in range(limit)]


def grab_frames(video: Media, times: list[float], folder: Path) -> list[Frame]:
    """Save one PNG per time in `folder`, named by its timestamp."""
    ffmpeg = require("ffmpeg", "ffmpeg")
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for seconds in times:
        path = folder / f"frame-{_stamp(seconds).replace(':', '-')}.png"
        run_tool([ffmpeg, "-v", "error", "-nostdin", "-y", "-ss", f"{seconds:.3f}",
                  *video.input(), "-frames:v", "1", "-vf", f"scale={THUMB_WIDTH}:-2",
                  media_arg(path)], "ffmpeg")
        if path.exists():
            frames.append(Frame(seconds, path))
    return frames


def contact_sheet(video: Path, out: Path, frames_dir: Path | None = None,
                  is_image: bool = False, *, scratch: Path) -> list[Frame]:
    """Write the sheet PNG to `out` (and the frames to `frames_dir` if given). The frames are
    decoded in a private folder under `scratch` (the workspace's staging folder, which `wipe`
    clears), never in the system's temporary folder."""
    from PIL import Image, ImageDraw, ImageFont

    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=SHEET_SCRATCH_PREFIX, dir=scratch))
    try:
        if is_image:
            frames = [Frame(0.0, _image_thumbnail(video, work / "frame-00-00-00.000.png"))]
        else:
            media = open_media(video)
            frames = grab_frames(media, keyframe_times(media), work)
        if not frames:
            raise ReviewError("no frames could be read from this file")
        thumbs = [Image.open(f.path).convert("RGB") for f in frames]
        cell_h = max(t.height for t in thumbs) + LABEL_HEIGHT
        columns = min(COLUMNS, len(thumbs))
        rows = -(-len(thumbs) // columns)
        sheet = Image.new("RGB", (columns * (THUMB_WIDTH + MARGIN) + MARGIN,
                                  rows * (cell_h + MARGIN) + MARGIN), "white")
        draw = ImageDraw.Draw(sheet)
        font = ImageFont.load_default(size=18)
        for n, (frame, thumb) in enumerate(zip(frames, thumbs, strict=True)):
            x = MARGIN + (n % columns) * (THUMB_WIDTH + MARGIN)
            y = MARGIN + (n // columns) * (cell_h + MARGIN)
            sheet.paste(thumb, (x, y))
            draw.text((x + 4, y + thumb.height + 4), _stamp(frame.seconds), fill="black",
                      font=font)
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(out, "PNG")
        if frames_dir is not None:
            frames_dir.mkdir(parents=True, exist_ok=True)
            frames = [Frame(f.seconds, Path(shutil.copy(f.path, frames_dir / f.path.name)))
                      for f in frames]
        return frames
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _image_thumbnail(image: Path, out: Path) -> Path:
    from PIL import ImageOps

    try:
        with open_picture(image) as picture:
            # A JPEG is decoded at the smallest scale at least as large as the thumbnail.
            picture.draft("RGB", (THUMB_WIDTH, THUMB_WIDTH * 4))
            ImageOps.exif_transpose(picture, in_place=True)
            picture.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4))
            picture.convert("RGB").save(out, "PNG")
    except (OSError, ValueError) as exc:
        raise ReviewError(f"cannot read the image: {exc}") from exc
    return out


def _stamp(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours:02d}:{minutes:02d}:{rest:06.3f}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
