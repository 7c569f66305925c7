"""What gets installed is exactly what the lock says: installs refuse a wheel whose hash is not
the lock's, a release is built and checked before anything running is touched, and the offline
console installs from a carried folder with no network at all, without the web server.

These run pip against the package index (the wheels the locks name); pip's cache makes later
runs quick.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.harness.locks import entries
from tests.harness.paths import REPO

pytestmark = pytest.mark.slow

DEPLOY = REPO / "deploy"
PIP_TIMEOUT = 600


def pinned_lines(lock: Path, name: str) -> str:
    """The lines of one package's pin and hashes in a lock."""
    lines = lock.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}=="))
    end = start + 1
    while end < len(lines) and lines[end].startswith("    --hash"):
        end += 1
    return "\n".join(lines[start:end]) + "\n"


def tampered(text: str) -> str:
    """`text` with the last hex digit of every hash changed."""
    return re.sub(r"(--hash=sha256:[0-9a-f]{63})([0-9a-f])",
                  lambda m: m.group(1) + ("0" if m.group(2) != "0" else "1"), text)


def pip_install(requirements: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
         "--require-hashes", "--only-binary", ":all:", "--no-deps", "--target", str(target),
         "-r", str(requirements)], capture_output=True, text=True, timeout=PIP_TIMEOUT,
        check=False)


def test_an_install_refuses_a_wheel_whose_hash_is_not_the_locks(tmp_path: Path) -> None:
    pin = pinned_lines(REPO / "requirements" / "console.txt", "mdurl")
    (tmp_path / "good.txt").write_text(pin)
    (tmp_path / "bad.txt").write_text(tampered(pin))

    good = pip_install(tmp_path / "good.txt", tmp_path / "good")
    bad = pip_install(tmp_path / "bad.txt", tmp_path / "bad")

    assert good.returncode == 0, good.stderr
    assert (tmp_path / "good" / "mdurl").is_dir()
    assert bad.returncode != 0
    assert "DO NOT MATCH THE HASHES" in bad.stderr
    assert not (tmp_path / "bad" / "mdurl").exists()


def checkout_copy(tmp_path: Path) -> Path:
    """The tracked files of this checkout, copied (so that a test can tamper with its lock)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    copy = tmp_path / "checkout"
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def build_release(checkout: Path, target: Path, set_name: str
                  ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(checkout / "deploy" / "build-release.sh"), str(target), set_name],
                          capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False,
                          env={**os.environ, "DESK_PYTHON": sys.executable})


def test_a_release_is_built_and_checked_from_the_lock_alone(tmp_path: Path) -> None:
    built = build_release(checkout_copy(tmp_path), tmp_path / "release", "server")

    assert built.returncode == 0, built.stderr
    assert "server release ready" in built.stdout
    python = tmp_path / "release" / "bin" / "python"
    listed = json.loads(subprocess.run([str(python), "-m", "pip", "list", "--format=json"],
                                       capture_output=True, text=True, check=True).stdout)
    locked = {**entries(REPO / "requirements" / "server.txt"),
              **entries(REPO / "requirements" / "build.txt")}
    installed = {str(canonicalize_name(p["name"])): Version(p["version"]) for p in listed}
    assert installed.pop("desk") == Version("0.1.0")
    assert installed == {name: version for name, (version, _, _) in locked.items()}
    help_text = subprocess.run([str(tmp_path / "release" / "bin" / "desk"), "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "tor-config" in help_text

    # Another distribution's top-level templates/ in site-packages once replaced every page.
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "templates" / "source").mkdir(parents=True)
    (site / "templates" / "source" / "index.html").write_text("<h1>not the desk</h1>")
    env = {**os.environ, "DESK_DATA": str(tmp_path / "data")}
    subprocess.run([str(tmp_path / "release" / "bin" / "desk"), "init"], env=env,
                   capture_output=True, check=True)
    landing = subprocess.run(
        [str(python), "-c", "import os; from desk.app import create_app; "
         "from desk.config import load_config; "
         "print(create_app(load_config(os.environ)).test_client().get('/').text)"],
        env=env, capture_output=True, text=True, check=True).stdout
    assert "not the desk" not in landing
    assert '<html lang="en" dir="ltr">' in landing  # the desk's own base.html


def test_a_release_with_a_tampered_lock_fails_before_anything_is_touched(tmp_path: Path
                                                                        ) -> None:
    checkout = checkout_copy(tmp_path)
    lock = checkout / "requirements" / "server.txt"
    lock.write_text(tampered(lock.read_text()))

    built = build_release(checkout, tmp_path / "release", "server")

    assert built.returncode == 1
    assert "installing the dependencies from requirements/server.txt failed" in built.stderr
    assert "DO NOT MATCH THE HASHES" in built.stderr
    assert not (tmp_path / "release").exists()


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The console's wheelhouse, made once (with the network) as the README says."""
    house = tmp_path_factory.mktemp("carried") / "wheelhouse"
    made = subprocess.run([str(DEPLOY / "console-wheelhouse.sh"), str(house)],
                          capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False,
                          env={**os.environ, "DESK_PYTHON": sys.executable})
    assert made.returncode == 0, made.stderr
    return house


def offline(*command: str) -> subprocess.CompletedProcess[str]:
    """`command` in a network namespace of its own: no interface but a loopback that is down."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-n", "true"], capture_output=True, check=False).returncode != 0:
        pytest.fail("unshare -n is needed to take the network away from the install")
    return subprocess.run(["unshare", "-n", *command], capture_output=True, text=True,
                          timeout=PIP_TIMEOUT, check=False,
                          env={**os.environ, "DESK_PYTHON": sys.executable})


def test_the_console_installs_offline_from_the_wheelhouse_without_the_web_server(
        wheelhouse: Path, tmp_path: Path) -> None:
    names = {line.split()[1] for line in (wheelhouse / "SHA256SUMS").read_text().splitlines()}
    assert "requirements.txt" in names
    assert any(name.startswith("desk-") for name in names)
    assert not any(re.match(r"(flask|gunicorn|alembic)", name, re.I) for name in names)

    installed = offline(str(DEPLOY / "console-install.sh"), str(wheelhouse),
                        str(tmp_path / "console"))

    assert installed.returncode == 0, installed.stderr
    console = tmp_path / "console" / "bin"
    help_text = subprocess.run([str(console / "desk-review"), "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "import" in help_text
    for server_only in ("gunicorn", "flask", "alembic"):
        found = subprocess.run([str(console / "python"), "-c", f"import {server_only}"],
                               capture_output=True, check=False)
        assert found.returncode != 0, f"{server_only} is installed on the console"


def test_the_console_install_refuses_a_changed_wheel(wheelhouse: Path, tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"
    shutil.copytree(wheelhouse, house)
    wheel = next(house.glob("rich-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0x01
    wheel.write_bytes(bytes(data))

    refused = offline(str(DEPLOY / "console-install.sh"), str(house), str(tmp_path / "a"))

    assert refused.returncode == 1
    assert "does not match SHA256SUMS" in refused.stderr
    assert not (tmp_path / "a").exists()

    # Even with SHA256SUMS made to match, pip holds the wheel to the lock's hash.
    sums = subprocess.run(["sha256sum", *sorted(p.name for p in house.glob("*.whl")),
                           "requirements.txt"], cwd=house, capture_output=True, text=True,
                          check=True).stdout
    (house / "SHA256SUMS").write_text(sums)
    refused = offline(str(DEPLOY / "console-install.sh"), str(house), str(tmp_path / "b"))

    assert refused.returncode == 1
    assert "DO NOT MATCH THE HASHES" in refused.stderr
    assert not (tmp_path / "b").exists()
