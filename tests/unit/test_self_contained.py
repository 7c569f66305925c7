"""The repository stands alone: no file it tracks points at a path outside it, so a clone put
anywhere (with no sibling folders) runs its own `make test`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.harness.paths import REPO

# A path that leaves the checkout for a folder beside it, or an absolute path into a workspace
# or a home directory. /tmp, /proc, /dev, /etc and the deployment's own paths (/var/lib/desk,
# /opt/desk) are the machine's, not another checkout's; "../../" in the tests is hostile input.
OUTSIDE = re.compile(r"(?<![\w.])\.\./shared\b|(?<![\w/])/(?:work|home|Users|root)/")


def tracked_text_files(root: Path) -> list[Path]:
    """Every file git tracks under `root` that reads as text."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                            check=True).stdout.split(b"\0")
    found = []
    for name in filter(None, listed):
        path = root / name.decode()
        data = path.read_bytes() if path.is_file() else b""
        if b"\0" not in data[:4096]:
            found.append(path)
    return found


def outside_references(root: Path) -> list[str]:
    """`file:line: text` for every line that names a path outside the checkout."""
    return [f"{path.relative_to(root)}:{number}: {line.strip()}"
            for path in tracked_text_files(root)
            for number, line in enumerate(path.read_text("utf-8", "replace").splitlines(), 1)
            if OUTSIDE.search(line)]


def test_no_tracked_file_points_outside_the_repository() -> None:
    assert outside_references(REPO) == []


def test_the_scan_finds_a_planted_reference(tmp_path: Path) -> None:
    # Spelled in pieces, so that this file does not itself point outside.
    beside, workspace = "../" + "shared/DESIGN.md", "/" + "work/fixtures"
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "README.md").write_text(f"See {beside} and /tmp/scratch.\n")
    (tmp_path / "conftest.py").write_text(f'FIXTURES = "{workspace}"\nOK = "/var/lib/desk"\n')
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    assert outside_references(tmp_path) == [
        f"README.md:1: See {beside} and /tmp/scratch.",
        f'conftest.py:1: FIXTURES = "{workspace}"',
    ]
