"""Desks made for a test: in-process (a Config, `init_desk`, the services) or with the `desk`
command (`desk init`, `desk journalist add`), and the desk read back as a journalist would, with
stock gpg."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crypto.kdf import KdfParams
from desk.config import Config
from desk.records.accounts import add_journalist, find_journalist
from desk.records.credentials import TOTP_STEP_SECONDS, hash_password, new_totp_secret, totp_code
from desk.records.instance import init_desk
from desk.services import Services, open_services
from tests.harness.data import MiB
from tests.harness.gpg import Keypair, make_keypair
from tests.harness.paths import DESK_COMMAND

# Argon2id's smallest legal cost: the tests derive many codenames and prove nothing about cost.
CHEAP_KDF = KdfParams(memory_cost=8, iterations=1, lanes=1)
PASSWORDS = {"alice": "alice-long-passphrase-1", "bob": "bob-long-passphrase-22"}


# In-process


def desk_config(data_dir: Path, *, database: Path | None = None,
                max_upload_bytes: int = 64 * MiB) -> Config:
    """A desk configuration in `data_dir` (its database there too, unless `database` says
    where), with a cheap KDF."""
    database = data_dir / "desk.db" if database is None else database
    return Config(data_dir=data_dir, database_url=f"sqlite:///{database}",
                  max_upload_bytes=max_upload_bytes, kdf=CHEAP_KDF)


def new_desk(config: Config) -> Services:
    """An initialised desk with no journalist yet, and its services (dispose of its engine
    when done)."""
    init_desk(config)
    return open_services(config)


def add_account(services: Services, username: str, keypair: Keypair, *, admin: bool = False,
                can_log_in: bool = False) -> None:
    """Pin `keypair` for `username`; with `can_log_in` the account has its password from
    PASSWORDS and a TOTP secret."""
    with services.sessions() as session:
        add_journalist(session, services.gpg, username, keypair.public_key.read_bytes(),
                       is_admin=admin, password=PASSWORDS[username] if can_log_in else None,
                       kdf=CHEAP_KDF)
        session.commit()
    services.recipients.invalidate()


def let_log_in(services: Services, username: str, *, admin: bool = False) -> None:
    """Give an account that has none its password from PASSWORDS and a TOTP secret."""
    with services.sessions() as session:
        journalist = find_journalist(session, username)
        journalist.is_admin = admin
        journalist.password_hash = hash_password(PASSWORDS[username], CHEAP_KDF)
        journalist.totp_secret = new_totp_secret()
        session.commit()
    services.recipients.invalidate()


def fresh_code(services: Services, username: str) -> str:
    """A TOTP code the account has not used yet (within the allowed drift of one step)."""
    with services.sessions() as session:
        journalist = find_journalist(session, username)
        secret, last = journalist.totp_secret, journalist.totp_last_step
    assert secret is not None
    now = int(datetime.now(UTC).timestamp()) // TOTP_STEP_SECONDS
    # The newest step the desk takes: a code of the step before would leave a slow machine
    # less than a step's time to send it.
    step = next(s for s in (now, now + 1) if last is None or s > last)
    return totp_code(secret, datetime.fromtimestamp(step * TOTP_STEP_SECONDS, UTC))


# With the `desk` command


def desk_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any DESK_* variable, pointed at `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    return {**env, "DESK_DATA": str(data_dir), **extra}


def run_desk(*args: str, data_dir: Path, extra_env: dict[str, str] | None = None,
             check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed `desk` command against `data_dir`."""
    return subprocess.run([DESK_COMMAND, *args], env=desk_env(data_dir, **(extra_env or {})),
                          capture_output=True, text=True, check=check, timeout=timeout)


@dataclass(frozen=True)
class CliJournalist:
    """An account made with `desk journalist add`."""

    username: str
    keypair: Keypair
    totp_secret: bytes | None  # None without a password (the account cannot log in)


def cli_init_desk(data_dir: Path) -> None:
    """`desk init` in a new data directory."""
    run_desk("init", data_dir=data_dir, check=True)


def cli_add_journalist(data_dir: Path, username: str, home: Path, name: str, *,
                       password: str | None = None, admin: bool = False) -> CliJournalist:
    """`desk journalist add` with a fresh stock-gpg Ed25519/Curve25519 keypair made in `home`.

    With a password the account can log in: its TOTP secret is read from what the command
    prints (the password file is written next to `home` and removed again)."""
    keypair = make_keypair(home, name)
    args = ["journalist", "add", username, "--key", str(keypair.public_key)]
    password_file = home.parent / f"{home.name}.password"
    if password is not None:
        password_file.write_text(password + "\n")
        args += ["--password-file", str(password_file)]
    if admin:
        args.append("--admin")
    try:
        added = run_desk(*args, data_dir=data_dir, check=True)
    finally:
        password_file.unlink(missing_ok=True)
    secret = None
    if password is not None:
        line = next(x for x in added.stdout.splitlines() if x.startswith("TOTP secret:"))
        secret = base64.b32decode(line.split(":", 1)[1].strip())
    return CliJournalist(username, keypair, secret)


def kill_gpg_agents(root: Path) -> None:
    """`gpgconf --kill gpg-agent` for every GnuPG home (a folder with a pubring.kbx) under
    `root`: stock gpg starts an agent for each home it uses."""
    for keyring in root.rglob("pubring.kbx"):
        subprocess.run(["gpgconf", "--homedir", str(keyring.parent), "--kill", "gpg-agent"],
                       capture_output=True, check=False, timeout=30)


# Read back


@dataclass(frozen=True)
class StoredObject:
    """A published object read back with stock gpg."""

    path: Path
    record: dict[str, object]
    plaintext: bytes  # the item: the first `size` bytes of what the parts decrypt to
    padded: bytes = b""  # everything the parts decrypt to, padding included


def read_objects(config: Config, keypair: Keypair) -> list[StoredObject]:
    """Decrypt every published object with stock gpg and `keypair`'s secret key alone."""
    objects = []
    for path in sorted((config.store_dir / "objects").iterdir()):
        record = json.loads(keypair.decrypt(path / "meta.gpg"))
        parts = sorted(path.glob("part-*.gpg"))
        padded = b"".join(keypair.decrypt(p) for p in parts)
        size = record["size"]
        assert isinstance(size, int), path
        assert padded[size:].count(0) == len(padded) - size, path  # padding is zeros
        objects.append(StoredObject(path, record, padded[:size], padded))
    return objects


def files_under(*roots: Path) -> list[Path]:
    """Every regular file below `roots` (a root that is a file counts as itself)."""
    return [p for root in roots if root.is_file() for p in (root,)] + \
        [p for root in roots if root.is_dir() for p in root.rglob("*") if p.is_file()]


def find_markers(markers: list[bytes], *roots: Path) -> list[tuple[Path, bytes]]:
    """Every (file, marker) pair where a marker occurs in a file below `roots`."""
    hits = []
    for path in files_under(*roots):
        data = path.read_bytes()
        hits += [(path, marker) for marker in markers if marker in data]
    return hits
