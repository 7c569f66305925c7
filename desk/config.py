"""Configuration: one frozen dataclass built from DESK_* environment variables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from crypto.kdf import PRODUCTION_KDF, KdfParams
from crypto.names import (
    DATABASE_NAME,
    GNUPG_DIR,
    SECRET_KEY_NAME,
    SIGNING_KEY_FILE_NAME,
    STORE_DIR,
)
from desk.errors import ConfigError

DEFAULT_MAX_UPLOAD_BYTES = 4 * 1024**3
# What one source may keep on the desk at once: its stored items and its resumable uploads in
# progress (desk/records/quota.py). Four sendings of the largest size: some two hours of a
# phone's 1080p video, or forty minutes of its 4K, arrive whole; one source cannot fill the
# disk for everyone.
DEFAULT_QUOTA_PER_SOURCE = 16 * 1024**3
# How often a running desk settles its file times (deploy/STORAGE.md, "Settling"), in seconds.
DEFAULT_SETTLE_INTERVAL = 600
DURATION_RE = re.compile(r"^\s*([0-9]{1,9})\s*(|s|m|min|h)\s*$")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}
# A day: a longer interval would let a settle's times name a day other than its own.
MAX_SETTLE_INTERVAL = 86_400
SIZE_RE = re.compile(r"^\s*([0-9]{1,19})\s*(|B|KiB|MiB|GiB|TiB)\s*$")
# The largest size SQLite's 64-bit integers (and so the settings row) can hold.
MAX_SIZE = 2**63 - 1
SIZE_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
PERCENT_RE = re.compile(r"^\s*([0-9]{1,3})\s*%\s*$")


@dataclass(frozen=True)
class DiskShare:
    """A cap on bytes: a size, or a percentage of the disk it is measured against."""

    size: int | None = None
    percent: int | None = None

    def of(self, disk_bytes: int) -> int:
        """The cap in bytes on a disk of `disk_bytes`."""
        if self.size is not None:
            return self.size
        return disk_bytes * (self.percent or 0) // 100


# What all sources together may keep: the rest of the disk stays for the database, replies,
# exports and the desk's own work, so that sources filling their share stop only sources.
DEFAULT_QUOTA_ALL_SOURCES = DiskShare(percent=90)
# Resumable uploads one source may have open at once (README.md, "Uploads in progress").
# upload.js sends one file at a time, so an honest source has one open, and a few more it
# abandoned; each costs up to about 150 inodes and a row, so one codename cannot make
# thousands.
DEFAULT_UPLOADS_PER_SOURCE = 20
# Open resumable uploads on the whole desk: at about 150 inodes each, 1,000 take at most some
# 150,000 of a 64 GiB ext4 volume's 4 million.
DEFAULT_UPLOADS_ALL_SOURCES = 1000
# What the open uploads of all sources may have declared and not yet sent: the rest of the
# sources' share stays for what arrives whole (forms, and uploads that finish).
DEFAULT_UNFINISHED_ALL_SOURCES = DiskShare(percent=50)
# Kept free for the desk itself (the database, custody, replies, journalists' work): no
# source's write may leave less than this many bytes, nor this share of the disk's inodes.
DEFAULT_RESERVE_BYTES = 64 * 1024**2
DEFAULT_RESERVE_INODES = DiskShare(percent=5)


@dataclass(frozen=True)
class Config:
    """Everything the desk needs to know about where it lives and what it accepts."""

    data_dir: Path
    database_url: str
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    settle_interval: int = DEFAULT_SETTLE_INTERVAL
    quota_per_source: int = DEFAULT_QUOTA_PER_SOURCE
    quota_all_sources: DiskShare = DEFAULT_QUOTA_ALL_SOURCES
    uploads_per_source: int = DEFAULT_UPLOADS_PER_SOURCE
    uploads_all_sources: int = DEFAULT_UPLOADS_ALL_SOURCES
    unfinished_all_sources: DiskShare = DEFAULT_UNFINISHED_ALL_SOURCES
    reserve_bytes: int = DEFAULT_RESERVE_BYTES
    # A DiskShare of the filesystem's inodes: a count ("size"), or a percentage.
    reserve_inodes: DiskShare = DEFAULT_RESERVE_INODES
    # Not read from the environment: only code (the tests) can choose a cheaper derivation.
    kdf: KdfParams = field(default=PRODUCTION_KDF)
    # How many codenames made on one UTC day may still be unused for a sending before the
    # desk answers "too many attempts" to new ones (desk/web/source/login.py).
    unused_codenames_per_day: int = 1000

    @property
    def gnupg_home(self) -> Path:
        """The desk's own GnuPG home: journalists' public keys only."""
        return self.data_dir / GNUPG_DIR

    @property
    def store_dir(self) -> Path:
        """Where ciphertext lives."""
        return self.data_dir / STORE_DIR

    @property
    def signing_key_file(self) -> Path:
        """The desk's Ed25519 custody signing key, made by `desk init`."""
        return self.data_dir / SIGNING_KEY_FILE_NAME

    @property
    def secret_key_file(self) -> Path:
        """The key that signs session cookies, made by `desk init`."""
        return self.data_dir / SECRET_KEY_NAME


def load_config(env: Mapping[str, str]) -> Config:
    """Build the configuration from `env`; raise ConfigError naming any bad variable."""
    data_text = env.get("DESK_DATA", "./desk-data")
    if not data_text.strip():
        raise ConfigError("DESK_DATA must name a directory")
    data_dir = Path(data_text).expanduser().absolute()
    database_url = env.get("DESK_DATABASE_URL") or f"sqlite:///{data_dir / DATABASE_NAME}"
    try:
        make_url(database_url)
    except ArgumentError as exc:
        raise ConfigError(f"DESK_DATABASE_URL is not a database URL: {database_url!r}") from exc
    return Config(
        data_dir=data_dir,
        database_url=database_url,
        max_upload_bytes=_size(env, "DESK_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
        settle_interval=_settle_interval(env),
        quota_per_source=_size(env, "DESK_QUOTA_PER_SOURCE", DEFAULT_QUOTA_PER_SOURCE),
        quota_all_sources=_share(env, "DESK_QUOTA_ALL_SOURCES", DEFAULT_QUOTA_ALL_SOURCES),
        uploads_per_source=_count(env, "DESK_UPLOADS_PER_SOURCE", DEFAULT_UPLOADS_PER_SOURCE),
        uploads_all_sources=_count(env, "DESK_UPLOADS_ALL_SOURCES",
                                   DEFAULT_UPLOADS_ALL_SOURCES),
        unfinished_all_sources=_share(env, "DESK_UNFINISHED_ALL_SOURCES",
                                      DEFAULT_UNFINISHED_ALL_SOURCES),
        reserve_bytes=_size(env, "DESK_RESERVE_BYTES", DEFAULT_RESERVE_BYTES),
        reserve_inodes=_inode_share(env, "DESK_RESERVE_INODES", DEFAULT_RESERVE_INODES),
    )


def parse_duration(text: str) -> int | None:
    """A positive duration such as '600', '600s', '10m' or '1h' in seconds, or None."""
    match = DURATION_RE.match(text)
    if not match or int(match.group(1)) <= 0:
        return None
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def _settle_interval(env: Mapping[str, str]) -> int:
    name = "DESK_SETTLE_INTERVAL"
    if name not in env:
        return DEFAULT_SETTLE_INTERVAL
    seconds = parse_duration(env[name])
    if seconds is None or seconds > MAX_SETTLE_INTERVAL:
        raise ConfigError(
            f"{name} must be a positive number of seconds, or minutes or hours with m or h, at "
            f"most a day (10m, 600), not {env[name]!r}")
    return seconds


def parse_size(text: str) -> int | None:
    """A positive size such as '1048576', '512MiB' or '4 GiB' in bytes, or None."""
    match = SIZE_RE.match(text)
    if not match or int(match.group(1)) <= 0:
        return None
    size = int(match.group(1)) * SIZE_UNITS[match.group(2)]
    return size if size <= MAX_SIZE else None


def _size(env: Mapping[str, str], name: str, default: int) -> int:
    if name not in env:
        return default
    size = parse_size(env[name])
    if size is None:
        raise ConfigError(
            f"{name} must be a positive size in bytes (or with KiB, MiB, GiB), not {env[name]!r}")
    return size


def _share(env: Mapping[str, str], name: str, default: DiskShare) -> DiskShare:
    if name not in env:
        return default
    match = PERCENT_RE.match(env[name])
    if match and 1 <= int(match.group(1)) <= 100:
        return DiskShare(percent=int(match.group(1)))
    size = None if match else parse_size(env[name])
    if size is None:
        raise ConfigError(
            f"{name} must be a percentage of the disk from 1% to 100%, or a positive size in "
            f"bytes (or with KiB, MiB, GiB, TiB), not {env[name]!r}")
    return DiskShare(size=size)


COUNT_RE = re.compile(r"^\s*([0-9]{1,9})\s*$")


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    if name not in env:
        return default
    match = COUNT_RE.match(env[name])
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"{name} must be a positive whole number, not {env[name]!r}")
    return int(match.group(1))


def _inode_share(env: Mapping[str, str], name: str, default: DiskShare) -> DiskShare:
    if name not in env:
        return default
    match = PERCENT_RE.match(env[name])
    if match and int(match.group(1)) <= 100:
        return DiskShare(percent=int(match.group(1)))
    count = None if match else COUNT_RE.match(env[name])
    if count is None:
        raise ConfigError(
            f"{name} must be a percentage of the filesystem's inodes from 0% to 100%, or a "
            f"number of inodes, not {env[name]!r}")
    return DiskShare(size=int(count.group(1)))
