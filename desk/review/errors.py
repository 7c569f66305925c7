"""The console's errors: one clear line, and a hint where there is something to do."""

from __future__ import annotations


class ReviewError(Exception):
    """Something the console could not do; `hint` says what the journalist can try."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ToolMissing(ReviewError):
    """A program the console needs is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(f"{tool} is not installed",
                         f"install the Debian package {package}: apt-get install {package}")


class MediaRefused(ReviewError):
    """A file the console would not hand to ffmpeg: its content is of a format that is not
    footage, sound or a picture (a playlist names other files), or a picture too large."""
