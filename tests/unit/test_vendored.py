"""The browser code the desk serves from desk/static/vendor/ is byte for byte what its README
records (the npm release's files, by SHA-256): a changed file must come with a changed record."""

from __future__ import annotations

import hashlib
import re

from tests.harness.paths import REPO

VENDOR = REPO / "desk" / "static" / "vendor"


def test_every_vendored_file_matches_the_recorded_hash() -> None:
    readme = (VENDOR / "README.md").read_text()
    recorded = dict(re.findall(r"- `([^`]+)`:.*?SHA-256 `([0-9a-f]{64})`", readme, re.S))
    shipped = sorted(path.name for path in VENDOR.iterdir() if path.name != "README.md")
    assert sorted(recorded) == shipped
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
