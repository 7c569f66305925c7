"""Where things are: the checkout, the test folders and the installed commands.

Everything here is found from this file's own place, so a clone works wherever it is put.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
FIXTURES = TESTS / "fixtures"  # real camera samples, see tests/fixtures/README.md
VECTORS = TESTS / "vectors"  # the known-answer files of crypto/FORMAT.md
BIN = Path(sys.executable).parent
DESK_COMMAND = str(BIN / "desk")
REVIEW_COMMAND = str(BIN / "desk-review")
