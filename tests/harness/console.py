"""The offline console `desk-review`, run as a journalist runs it (a real process with its own
workspace and GnuPG home), and export bundles taken apart and put back together."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from desk.services import Services
from tests.harness.desks import files_under, run_desk
from tests.harness.paths import REVIEW_COMMAND

BUNDLE_ROOT = "desk-bundle"  # the top folder of every bundle's members


def review(workspace: Path, home: Path, *args: str, path: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run desk-review as a journalist would, with its own workspace and GnuPG home; `path`
    replaces PATH, `env` adds to the environment."""
    env = {**os.environ, **(env or {})}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([REVIEW_COMMAND, "--workspace", str(workspace), "--gnupghome",
                           str(home), *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a run that must have succeeded."""
    assert result.returncode == 0, result.stderr
    return result.stdout


def diagnostic(result: subprocess.CompletedProcess[str]) -> tuple[str, str | None]:
    """(message, hint) of a failed run, checking the console's rules for diagnostics: nothing
    on stdout, one line on stderr starting `desk-review: ` (lower case, no full stop), and
    optionally one `hint: ` line."""
    assert result.returncode != 0, result.stdout
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("desk-review: "), result.stderr
    message = lines[0].removeprefix("desk-review: ")
    assert message[:1] == message[:1].lower(), message
    assert not message.endswith("."), message
    hint = None
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), result.stderr
        hint = lines[1].removeprefix("hint: ")
    return message, hint


def listing(workspace: Path, home: Path) -> list[dict[str, Any]]:
    """`list --json`."""
    rows: list[dict[str, Any]] = json.loads(ok(review(workspace, home, "list", "--json")))
    return rows


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """File items by original filename."""
    return {r["filename"]: r for r in rows if r["kind"] == "file"}


def assert_nothing_imported(workspace: Path, home: Path) -> None:
    """An empty list, no objects and nothing left in staging."""
    assert listing(workspace, home) == []
    assert list((workspace / "objects").iterdir()) == []
    assert files_under(workspace / "staging") == []
    assert list((workspace / "staging").iterdir()) == []


def export(services: Services, out: Path) -> Path:
    """`desk export --all` to `out`."""
    result = run_desk("export", "--out", str(out), "--all", data_dir=services.config.data_dir)
    assert result.returncode == 0, result.stderr
    return out


def tar_members(bundle: Path) -> list[tuple[str, bytes]]:
    """Every member of a bundle, in order: (name, contents)."""
    with tarfile.open(bundle, mode="r:") as tar:
        members = []
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            assert handle is not None
            members.append((info.name, handle.read()))
    return members


def write_tar(members: list[tuple[str, bytes]], out: Path) -> Path:
    """A bundle of `members`, in that order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    out.write_bytes(buffer.getvalue())
    return out
