"""Checking the desk's key material: what a power cut or a bad copy can leave damaged.

`desk init`, `desk doctor` and every command that loads keys run these checks, and say in one
line what is damaged and how to recover, never with a traceback (deploy/README.md,
"Durability").
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.errors import CryptoError
from crypto.gpg import GnuPG
from crypto.names import GPG_DOTLOCK_PREFIX, GPG_LOCK_SUFFIX
from desk.config import Config

SECRET_KEY_RE = re.compile(r"[0-9a-f]{64}")

# The programs that take the keyring's lock (gpg-agent, dirmngr and scdaemon never do).
KEYRING_WRITERS = frozenset({"gpg", "gpg2"})

RESTORE = "restore the data directory from a backup"


def secret_key_problem(config: Config) -> str | None:
    """What is wrong with the cookie-signing key file, or None (a missing file is `desk
    init`'s to make)."""
    path = config.secret_key_file
    text = _read(path)
    if text is None or SECRET_KEY_RE.fullmatch(text.strip()):
        return None
    return (f"{path} is {'empty' if not text.strip() else 'damaged'}: remove it and run "
            "`desk init` to make a new one (everyone is logged out)")


def signing_key_problem(config: Config) -> str | None:
    """What is wrong with the custody signing key file, or None when it is absent or good."""
    path = config.signing_key_file
    text = _read(path)
    if text is None:
        return None
    try:
        Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text.strip()))
    except ValueError:
        state = "empty" if not text.strip() else "damaged"
        return (f"the custody signing key {path} is {state}: {RESTORE}, or put back the key "
                "file from the backup you made after `desk init`; a new key would not verify "
                "the custody log")
    return None


def keyring_problems(config: Config, fingerprints: Iterable[str]) -> list[str]:
    """What is wrong with the desk's GnuPG home: an empty or unreadable keyring, or a
    journalist's key missing from it."""
    home = config.gnupg_home
    keyring = home / "pubring.kbx"
    wanted = sorted(set(fingerprints))
    hint = ("move it aside and add each journalist's key again (`desk journalist key "
            "USERNAME --key FILE`)")
    if keyring.is_file():
        damage = _keybox_damage(keyring.read_bytes())
        if damage is not None:
            return [f"the keyring {keyring} is {damage}: {hint}"]
    if not wanted:
        return []
    try:
        present = {key.fingerprint
                   for key in GnuPG(home, seed_file=False, locks=False).list_keys()}
    except CryptoError:
        return [f"gpg cannot read the keyring {keyring}: {hint}"]
    return [f"the keyring {keyring} lacks the journalist key {fingerprint}: add it again "
            "(`desk journalist key USERNAME --key FILE`)"
            for fingerprint in wanted if fingerprint not in present]


def stale_locks(home: Path) -> list[Path]:
    """gpg's lock files in a GnuPG home that no living process holds: empty (a power cut
    while gpg took the lock) or naming a process that is gone. While one is there, every gpg
    run that changes the keyring fails."""
    if not home.is_dir():
        return []
    stale = []
    for path in sorted(home.iterdir()):
        if not (path.name.endswith(GPG_LOCK_SUFFIX) or path.name.startswith(GPG_DOTLOCK_PREFIX)):
            continue
        text = _read(path) or ""
        pid = text.split()[0] if text.split() else ""
        if not pid.isdigit() or not _alive(int(pid)):
            stale.append(path)
    return stale


def gpg_running(gnupg_home: Path) -> bool:
    """True if any gpg process works in this GnuPG home (so its locks may be live)."""
    home = str(gnupg_home.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arguments and Path(arguments[0].decode("utf-8", "replace")).name in KEYRING_WRITERS \
                and home.encode() in b"\0".join(arguments):
            return True
    return False


KEYBOX_MAGIC = b"KBXf"


def _keybox_damage(data: bytes) -> str | None:
    """'empty' or 'truncated' when a keybox file is not a whole sequence of blobs (a header
    blob marked KBXf, then blobs each starting with its length), else None."""
    if not data:
        return "empty"
    if len(data) < 32 or data[8:12] != KEYBOX_MAGIC:
        return "damaged"
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            return "truncated"
        length = int.from_bytes(data[offset:offset + 4], "big")
        if length < 5 or offset + length > len(data):
            return "truncated"
        offset += length
    return None


def _alive(pid: int) -> bool:
    """True if the process can still release a lock: it exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X")


def _read(path: Path) -> str | None:
    """The file's text, None if it does not exist; undecodable bytes make it damaged."""
    try:
        return path.read_bytes().decode("ascii", "replace")
    except FileNotFoundError:
        return None
