"""Reading the locks in requirements/: each package's pin, hashes and why it is there."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")


def entries(lock: Path) -> dict[str, tuple[Version, list[str], list[str]]]:
    """Each pinned package of a lock: its version, its hashes, and what it is there for (the
    `# via` lines)."""
    found: dict[str, tuple[Version, list[str], list[str]]] = {}
    name = ""
    for line in lock.read_text().splitlines():
        if match := PIN.match(line):
            name = str(canonicalize_name(match.group(1)))
            assert name not in found, f"{lock.name}: {name} pinned twice"
            found[name] = (Version(match.group(2)), [], [])
        elif name and (hashed := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            found[name][1].append(hashed.group(1))
        elif name and line.strip().startswith("#"):
            reason = re.sub(r"^#\s*(via\b)?\s*", "", line.strip())
            if reason:
                found[name][2].append(reason)
        elif line.strip() and not line.startswith("#") and not line.startswith("    "):
            raise AssertionError(f"{lock.name}: not a pinned requirement: {line!r}")
    return found
