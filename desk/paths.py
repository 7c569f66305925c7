"""Where the desk's templates are: package data of `desk`, in a checkout and when installed
alike, so that nothing else on the path (a stray top-level `templates/` in site-packages, say)
can stand in for them. Used by the online apps and the offline console alike."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"
