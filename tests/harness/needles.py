"""Needles: every secret of a test in every form it could be written in (UTF-8, UTF-16 in both
byte orders, base64, as a form or a URL carries it), and the scan that looks for them in
everything a server wrote."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.desks import files_under


@dataclass
class Needles:
    """Every secret of the test, in every form it could be written in, by label."""

    found_as: dict[str, bytes] = field(default_factory=dict)

    def marker(self, label: str) -> str:
        """A new long random marker, registered as a needle."""
        text = f"NOPLAIN-{label}-{secrets.token_hex(24)}"
        self.add(label, text)
        return text

    def add(self, label: str, text: str) -> None:
        """Register `text` in UTF-8, UTF-16 (both byte orders) and base64."""
        raw = text.encode("utf-8")
        self.found_as[f"{label} (utf-8)"] = raw
        self.found_as[f"{label} (utf-16-le)"] = text.encode("utf-16-le")
        self.found_as[f"{label} (utf-16-be)"] = text.encode("utf-16-be")
        self.found_as[f"{label} (base64)"] = base64.b64encode(raw)

    def filename(self, label: str, stem: str, suffix: str) -> str:
        """A distinctive original filename; its random part is a needle of its own too."""
        token = secrets.token_hex(12)
        name = f"{stem}-{token}{suffix}"
        self.add(f"{label} token", token)
        self.add(label, name)
        return name

    def content_type(self, label: str) -> str:
        """A media type no browser would send, registered as a needle."""
        text = f"video/x-np{secrets.token_hex(16)}"
        self.add(label, text)
        return text

    def codename(self, label: str, codename: str) -> None:
        """A codename as shown, as typed in a form body, and as a URL would carry it."""
        self.add(label, codename)
        self.add(f"{label} (form)", codename.replace(" ", "+"))
        self.add(f"{label} (url)", codename.replace(" ", "%20"))


def scan(needles: Needles, roots: list[Path]) -> list[tuple[str, str]]:
    """(file, label) of every needle found in a file that is, or is under, one of `roots`."""
    paths = [root for root in roots if root.is_file()] + files_under(*roots)
    hits = []
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # a temporary file that went while the scan ran
            continue
        hits += [(str(path), label) for label, raw in needles.found_as.items() if raw in data]
    return hits
