"""requirements/*.txt, the locks every install comes from, agree with pyproject.toml: each
dependency pinned to one version its range allows, with hashes; the server's and the console's
sets are the tests' pins; the console's set has no web server in it."""

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.harness.locks import entries
from tests.harness.paths import REPO

LOCKS = REPO / "requirements"
# What the air-gapped machine must never carry: the online desk's web and migration stack.
SERVER_ONLY = {"flask", "gunicorn", "alembic", "flask-wtf", "flask-babel", "wtforms"}


def project() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def wanted(*extras: str) -> list[Requirement]:
    """The pyproject's requirements: the common ones and those of `extras`."""
    table = project()["project"]
    assert isinstance(table, dict)
    listed = list(table["dependencies"])
    for extra in extras:
        listed += table["optional-dependencies"][extra]
    return [Requirement(text) for text in listed]


SETS = {"test.txt": ("server", "console", "test"), "server.txt": ("server",),
        "console.txt": ("console",)}


@pytest.mark.parametrize("lock", [*SETS, "build.txt"])
def test_every_line_is_pinned_with_a_hash(lock: str) -> None:
    found = entries(LOCKS / lock)
    assert found
    assert [name for name, (_, hashes, _) in found.items() if not hashes] == []


@pytest.mark.parametrize(("lock", "extras"), SETS.items())
def test_each_lock_pins_what_pyproject_asks_for_and_nothing_it_no_longer_asks_for(
        lock: str, extras: tuple[str, ...]) -> None:
    found = entries(LOCKS / lock)
    requirements = wanted(*extras)
    for requirement in requirements:
        name = str(canonicalize_name(requirement.name))
        assert name in found, f"{lock} lacks {name}: run `make lock`"
        assert found[name][0] in requirement.specifier, \
            f"{lock} pins {name} {found[name][0]}, outside {requirement.specifier}: run `make lock`"
    direct = {name for name, (_, _, via) in found.items() if "desk (pyproject.toml)" in via}
    assert direct == {str(canonicalize_name(r.name)) for r in requirements}, \
        f"{lock} was made from another pyproject.toml: run `make lock`"


def test_the_build_lock_satisfies_the_build_system() -> None:
    found = entries(LOCKS / "build.txt")
    build_system = project()["build-system"]
    assert isinstance(build_system, dict)
    for text in build_system["requires"]:
        requirement = Requirement(text)
        name = str(canonicalize_name(requirement.name))
        assert name in found
        assert found[name][0] in requirement.specifier
    assert "pip" in found


@pytest.mark.parametrize("lock", ["server.txt", "console.txt"])
def test_the_server_and_the_console_run_what_the_tests_ran(lock: str) -> None:
    tested = entries(LOCKS / "test.txt")
    for name, (version, hashes, _) in entries(LOCKS / lock).items():
        assert name in tested, name
        assert tested[name][0] == version, name
        assert set(hashes) <= set(tested[name][1]), name


def test_the_console_gets_no_web_server() -> None:
    console = set(entries(LOCKS / "console.txt"))
    assert console & SERVER_ONLY == set()
    assert {"gunicorn", "flask", "alembic"} <= set(entries(LOCKS / "server.txt"))
