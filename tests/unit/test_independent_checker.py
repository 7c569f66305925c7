"""crypto/FORMAT.md is enough to implement the format: tests/independent/checker.py, written
from the document alone and importing nothing of the project, accepts every accept vector and
rejects every reject vector under the rule the vector names."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.paths import TESTS, VECTORS

CHECKER = TESTS / "independent" / "checker.py"
ALL_VECTORS = sorted([*VECTORS.glob("*.json"), *(VECTORS / "reject").glob("*.json")])

# Run the checker in a fresh interpreter that cannot import the project, even though the
# project is installed in this environment: any attempt raises ImportError.
RUNNER = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("crypto", "desk", "tests"):
            raise ImportError("the independent checker imported " + name)
        return None
sys.meta_path.insert(0, Refuse())
checker, *sys.argv[1:] = sys.argv[1:]
sys.argv[0] = checker
runpy.run_path(checker, run_name="__main__")
"""


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str | None]]:
    """The checker's verdict on every vector, by file name relative to tests/vectors."""
    result = subprocess.run(
        [sys.executable, "-I", "-c", RUNNER, str(CHECKER), *map(str, ALL_VECTORS)],
        capture_output=True, text=True, timeout=600, check=False,
        cwd=tmp_path_factory.mktemp("checker"))
    assert result.returncode == 0, result.stderr
    found = {}
    for line in result.stdout.splitlines():
        verdict = json.loads(line)
        found[Path(verdict["file"]).relative_to(VECTORS).as_posix()] = verdict
    return found


@pytest.mark.parametrize("vector", ALL_VECTORS, ids=lambda p: p.relative_to(VECTORS).as_posix())
def test_the_checker_agrees_with_every_vector(
        vector: Path, verdicts: dict[str, dict[str, str | None]]) -> None:
    expected = json.loads(vector.read_text("utf-8"))
    verdict = verdicts[vector.relative_to(VECTORS).as_posix()]
    assert verdict["verdict"] == expected.get("expect", "accept"), verdict
    assert verdict["rule"] == expected.get("rule"), verdict


def test_the_vectors_include_both_outcomes(
        verdicts: dict[str, dict[str, str | None]]) -> None:
    outcomes = [v["verdict"] for v in verdicts.values()]
    assert outcomes.count("accept") >= 7
    assert outcomes.count("reject") >= 60


def test_the_checker_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(CHECKER.read_text("utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add((node.module or "").partition(".")[0])
    assert imported - sys.stdlib_module_names == {"cryptography"}


def test_the_runner_really_refuses_project_imports(tmp_path: Path) -> None:
    script = tmp_path / "sneaky.py"
    script.write_text("import crypto.custody\n")
    result = subprocess.run([sys.executable, "-I", "-c", RUNNER, str(script)],
                            capture_output=True, text=True, timeout=60, check=False,
                            cwd=tmp_path)
    assert result.returncode != 0
    assert "the independent checker imported crypto" in result.stderr
