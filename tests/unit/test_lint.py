"""`make lint` type-checks all of desk/ and crypto/: a type error anywhere in them fails it.

The check runs mypy exactly as the Makefile does (no arguments: pyproject.toml says what to
check) on a copy of the tree, first as it is, then with a type error planted in modules that
were once left out of the check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.harness.paths import REPO as ROOT

# A function whose body contradicts its annotation, appended to a module.
PLANTED = '\n\ndef planted_type_error() -> int:\n    return "not a number"\n'
# Modules outside the old list of checked paths, and one that was always in it.
TARGETS = ["desk/review/cli.py", "desk/ops/cli.py", "desk/app.py", "desk/ops/demo.py",
           "desk/records/accounts.py", "crypto/keys.py"]


def test_the_configuration_checks_all_of_desk_and_crypto_strictly() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["files"] == ["desk", "crypto"]
    assert config["strict"] is True


def _mypy(tree: Path) -> subprocess.CompletedProcess[str]:
    """mypy as `make lint` runs it, in `tree`, with its cache there too."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tree / ".cache")],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what `make lint` type-checks."""
    copy = tmp_path_factory.mktemp("lint")
    ignore = shutil.ignore_patterns("__pycache__", ".mypy_cache")
    for name in ("desk", "crypto"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_tree_type_checks(tree: Path) -> None:
    result = _mypy(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found")


@pytest.mark.parametrize("target", TARGETS)
def test_a_type_error_anywhere_fails_the_check(tree: Path, target: str) -> None:
    module = tree / target
    original = module.read_text()
    module.write_text(original + PLANTED)
    try:
        result = _mypy(tree)
    finally:
        module.write_text(original)
    assert result.returncode == 1
    line = len((original + PLANTED).splitlines())
    assert f'{target}:{line}: error: Incompatible return value type (got "str", ' \
        'expected "int")  [return-value]' in result.stdout
