"""Where the desk's templates are: beside the package in a checkout, under share/desk when
installed. Used by the online apps and the offline console alike."""

from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TEMPLATES = _CHECKOUT_TEMPLATES if _CHECKOUT_TEMPLATES.is_dir() \
    else Path(sys.prefix) / "share" / "desk" / "templates"
