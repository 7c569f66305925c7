"""What a power cut can leave of the desk's key material, and what the desk then says.

A cut drops everything that was not fsynced: a file written without fsync comes back empty,
and a lock gpg was taking comes back as a 0-byte file. The desk now writes its key files and
flushes gpg's keyring durably (tests/assurance/test_durability.py audits that); these tests
plant the damage an older desk or a bad copy can leave, and check that every command says in
one line what is damaged and how to recover, never with a traceback, and that following the
advice brings the desk back to encrypting to its journalist.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from crypto.custody import Subject
from crypto.gpg import GnuPG
from desk.records.custody import append_entry
from desk.records.keys import stale_locks
from desk.services import open_services
from tests.harness.desks import (
    CliJournalist,
    cli_add_journalist,
    cli_init_desk,
    desk_config,
    run_desk,
)
from tests.harness.gpg import make_keypair

pytestmark = pytest.mark.slow

# What the cut emptied right after `desk init` and `desk journalist add`, in the review.
EMPTIED = ("secret_key", "signing_key", "gnupg/pubring.kbx", "gnupg/trustdb.gpg")
# Commands an admin would try next; each must refuse in one line.
COMMANDS = (("journalist", "list"), ("keys", "check"), ("custody", "verify"),
            ("serve", "source", "--port", "1"))


@pytest.fixture
def desk_with_alice(tmp_path: Path) -> tuple[Path, CliJournalist]:
    data_dir = tmp_path / "data"
    cli_init_desk(data_dir)
    alice = cli_add_journalist(data_dir, "alice", tmp_path / "alice", "Alice",
                               password="correct horse battery staple", admin=True)
    return data_dir, alice


def one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The single `desk:` line a refusing command printed."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("gpg: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("desk: ")
    return lines[0]


def test_after_a_cut_every_command_explains_and_the_advice_recovers(
        desk_with_alice: tuple[Path, CliJournalist], tmp_path: Path) -> None:
    data_dir, alice = desk_with_alice
    for name in EMPTIED:
        (data_dir / name).write_bytes(b"")

    for command in COMMANDS:
        line = one_line_refusal(run_desk(*command, data_dir=data_dir, timeout=60))
        assert "is empty" in line, (command, line)

    # init replaces what nothing depends on (the cookie key; the signing key, since the
    # custody log is empty) and refuses over the keyring, with the way out.
    init = run_desk("init", data_dir=data_dir)
    assert "Replaced the damaged" in init.stdout
    assert "signing_key: the custody log is empty" in init.stdout
    refusal = one_line_refusal(init)
    assert "pubring.kbx is empty: move it aside" in refusal
    (data_dir / "gnupg" / "pubring.kbx").rename(tmp_path / "pubring.kbx.damaged")
    readded = run_desk("journalist", "key", "alice", "--key", str(alice.keypair.public_key),
                       data_dir=data_dir)
    assert readded.returncode == 0, readded.stderr
    assert run_desk("init", data_dir=data_dir).returncode == 0
    checked = run_desk("keys", "check", data_dir=data_dir)
    assert checked.returncode == 0, checked.stderr
    assert "Accepting submissions: encrypting to 1 key(s)." in checked.stdout

    # And it encrypts to her: stock gpg with her secret key opens what the desk's keyring
    # encrypted.
    sealed = GnuPG(data_dir / "gnupg", seed_file=False).encrypt_bytes(
        b"platform 4", [alice.keypair.fingerprint])
    (tmp_path / "sealed.gpg").write_bytes(sealed)
    assert alice.keypair.decrypt(tmp_path / "sealed.gpg") == b"platform 4"


def test_a_signing_key_lost_after_custody_began_is_never_replaced(
        desk_with_alice: tuple[Path, CliJournalist]) -> None:
    data_dir, _ = desk_with_alice
    services = open_services(desk_config(data_dir))
    with services.transaction() as db:  # the first entry, as any receipt would make
        append_entry(db, services.signing_key, "ingest", Subject("0" * 32, "c" * 64, b"k" * 32))
    services.engine.dispose()
    (data_dir / "signing_key").write_bytes(b"")

    refusal = one_line_refusal(run_desk("init", data_dir=data_dir))

    assert "custody signing key" in refusal
    assert "restore the data directory from a backup" in refusal
    assert (data_dir / "signing_key").read_bytes() == b""


@pytest.mark.parametrize(("damage", "words"), [
    ("empty key file", "secret_key is empty"),
    ("truncated keyring", "pubring.kbx is truncated"),
    ("0-byte keyring lock", "pubring.kbx.lock"),
])
def test_doctor_and_init_name_each_kind_of_damage(
        desk_with_alice: tuple[Path, CliJournalist], damage: str, words: str) -> None:
    data_dir, _ = desk_with_alice
    keyring = data_dir / "gnupg" / "pubring.kbx"
    if damage == "empty key file":
        (data_dir / "secret_key").write_bytes(b"")
    elif damage == "truncated keyring":
        keyring.write_bytes(keyring.read_bytes()[:keyring.stat().st_size // 2])
    else:
        keyring.with_name("pubring.kbx.lock").write_bytes(b"")

    doctor = run_desk("doctor", data_dir=data_dir)
    assert doctor.returncode == 1
    found = [line for line in doctor.stdout.splitlines() if words in line]
    assert len(found) == 1, doctor.stdout
    if damage == "0-byte keyring lock":
        assert found[0].startswith("stale-gpg-lock\t")
        assert "(--repair removes it)" in found[0]
        assert words in one_line_refusal(run_desk("init", data_dir=data_dir))
        bob = make_keypair(data_dir.parent / "bob", "Bob")
        refused = run_desk("journalist", "add", "bob", "--key", str(bob.public_key),
                           data_dir=data_dir)
        assert "stale gpg lock" in one_line_refusal(refused)
        repaired = run_desk("doctor", "--repair", data_dir=data_dir)
        assert repaired.returncode == 0, repaired.stdout
        assert not keyring.with_name("pubring.kbx.lock").exists()
        assert run_desk("doctor", data_dir=data_dir).returncode == 0
        added = run_desk("journalist", "add", "bob", "--key", str(bob.public_key),
                         data_dir=data_dir)
        assert added.returncode == 0, added.stderr
    else:
        assert found[0].startswith("keys\t")
        assert "(--repair leaves it)" in found[0]
        if damage == "empty key file":
            # init may replace the cookie key: nothing depends on it.
            init = run_desk("init", data_dir=data_dir)
            assert init.returncode == 0, init.stderr
            assert "Replaced the damaged" in init.stdout
        else:
            assert words in one_line_refusal(run_desk("init", data_dir=data_dir))


@pytest.mark.parametrize("lock", ["pubring.kbx.lock", "trustdb.gpg.lock"])
def test_doctor_reports_a_killed_gpgs_lock_and_leaves_it_for_repair(
        desk_with_alice: tuple[Path, CliJournalist], lock: str) -> None:
    # What gpg leaves when killed holding a lock: its own file, naming its pid and host, hard
    # linked to the lock's name. A gpg that meets such a lock removes it; doctor's own look at
    # the keyring once did, so the lock it had just reported was gone before --repair came.
    home = desk_with_alice[0] / "gnupg"
    dead = subprocess.Popen(["true"])
    dead.wait()
    own = home / f".#lk0x00005555deadbeef.{socket.gethostname()}.{dead.pid}"
    own.write_text(f"{dead.pid:10d}\n{socket.gethostname()}\n")
    os.link(own, home / lock)
    before = sorted(path.name for path in home.iterdir())

    reports = [run_desk("doctor", data_dir=desk_with_alice[0]) for _ in range(2)]

    assert sorted(path.name for path in home.iterdir()) == before
    for doctor in reports:
        stale = sorted(line.split("\t")[1] for line in doctor.stdout.splitlines()
                       if line.startswith("stale-gpg-lock\t"))
        assert stale == sorted([str(own), str(home / lock)]), doctor.stdout
    repaired = run_desk("doctor", "--repair", data_dir=desk_with_alice[0])
    removed = sorted(line.split("\t")[2] for line in repaired.stdout.splitlines()
                     if line.startswith("removed\t"))
    assert removed == sorted([str(own), str(home / lock)]), repaired.stdout


def test_a_lock_whose_gpg_is_a_zombie_is_stale(tmp_path: Path) -> None:
    # A killed gpg whose parent has not reaped it yet still answers kill(pid, 0), but can never
    # release its lock.
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{zombie.pid}/stat").read_text().split(") ")[1][:1] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        (tmp_path / "pubring.kbx.lock").write_text(f"{zombie.pid:10d}\n{socket.gethostname()}\n")
        (tmp_path / "trustdb.gpg.lock").write_text(f"{os.getpid():10d}\n")
        assert stale_locks(tmp_path) == [tmp_path / "pubring.kbx.lock"]
    finally:
        zombie.wait()
