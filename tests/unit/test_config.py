"""Configuration from DESK_* variables; bad values fail at start and name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto.kdf import PRODUCTION_KDF
from desk.config import DEFAULT_MAX_UPLOAD_BYTES, DiskShare, load_config
from desk.errors import ConfigError
from tests.harness.desks import run_desk


def test_defaults() -> None:
    config = load_config({})
    assert config.data_dir == Path("desk-data").absolute()
    assert config.database_url == f"sqlite:///{Path('desk-data').absolute() / 'desk.db'}"
    assert config.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 4 * 1024**3
    assert config.kdf == PRODUCTION_KDF
    assert config.quota_per_source == 16 * 1024**3
    assert config.quota_all_sources == DiskShare(percent=90)
    assert config.quota_all_sources.of(1000 * 1024**3) == 900 * 1024**3


@pytest.mark.parametrize(("text", "share"), [
    ("90%", DiskShare(percent=90)), (" 100 % ", DiskShare(percent=100)),
    ("1%", DiskShare(percent=1)), ("500GiB", DiskShare(size=500 * 1024**3)),
    ("5 MiB", DiskShare(size=5 * 1024**2)),
])
def test_all_sources_quota_is_a_share_of_the_disk_or_a_size(text: str, share: DiskShare) -> None:
    assert load_config({"DESK_QUOTA_ALL_SOURCES": text}).quota_all_sources == share
    assert load_config({"DESK_QUOTA_PER_SOURCE": "8GiB"}).quota_per_source == 8 * 1024**3


@pytest.mark.parametrize(("text", "size"), [
    ("1048576", 1048576), ("512MiB", 512 * 1024**2), ("4 GiB", 4 * 1024**3), ("10KiB", 10240),
])
def test_upload_limit_accepts_bytes_and_binary_units(text: str, size: int) -> None:
    assert load_config({"DESK_MAX_UPLOAD_BYTES": text}).max_upload_bytes == size


@pytest.mark.parametrize(("env", "named"), [
    ({"DESK_MAX_UPLOAD_BYTES": "lots"}, "DESK_MAX_UPLOAD_BYTES"),
    ({"DESK_MAX_UPLOAD_BYTES": "0"}, "DESK_MAX_UPLOAD_BYTES"),
    ({"DESK_MAX_UPLOAD_BYTES": "-5"}, "DESK_MAX_UPLOAD_BYTES"),
    ({"DESK_MAX_UPLOAD_BYTES": "4GB"}, "DESK_MAX_UPLOAD_BYTES"),
    ({"DESK_DATABASE_URL": "not a url"}, "DESK_DATABASE_URL"),
    ({"DESK_DATA": "  "}, "DESK_DATA"),
    ({"DESK_SETTLE_INTERVAL": "soon"}, "DESK_SETTLE_INTERVAL"),
    ({"DESK_SETTLE_INTERVAL": "0"}, "DESK_SETTLE_INTERVAL"),
    ({"DESK_SETTLE_INTERVAL": "2d"}, "DESK_SETTLE_INTERVAL"),
    ({"DESK_SETTLE_INTERVAL": "25h"}, "DESK_SETTLE_INTERVAL"),
    ({"DESK_QUOTA_PER_SOURCE": "90%"}, "DESK_QUOTA_PER_SOURCE"),
    ({"DESK_QUOTA_PER_SOURCE": "0"}, "DESK_QUOTA_PER_SOURCE"),
    ({"DESK_QUOTA_ALL_SOURCES": "0%"}, "DESK_QUOTA_ALL_SOURCES"),
    ({"DESK_QUOTA_ALL_SOURCES": "101%"}, "DESK_QUOTA_ALL_SOURCES"),
    ({"DESK_QUOTA_ALL_SOURCES": "most"}, "DESK_QUOTA_ALL_SOURCES"),
    ({"DESK_QUOTA_ALL_SOURCES": "0.5%"}, "DESK_QUOTA_ALL_SOURCES"),
    ({"DESK_UPLOADS_PER_SOURCE": "0"}, "DESK_UPLOADS_PER_SOURCE"),
    ({"DESK_UPLOADS_PER_SOURCE": "20%"}, "DESK_UPLOADS_PER_SOURCE"),
    ({"DESK_UPLOADS_ALL_SOURCES": "many"}, "DESK_UPLOADS_ALL_SOURCES"),
    ({"DESK_UNFINISHED_ALL_SOURCES": "101%"}, "DESK_UNFINISHED_ALL_SOURCES"),
    ({"DESK_RESERVE_BYTES": "0"}, "DESK_RESERVE_BYTES"),
    ({"DESK_RESERVE_INODES": "101%"}, "DESK_RESERVE_INODES"),
    ({"DESK_RESERVE_INODES": "1GiB"}, "DESK_RESERVE_INODES"),
])
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(env)


@pytest.mark.parametrize(("text", "seconds"), [
    ("600", 600), ("90s", 90), ("10m", 600), ("1 h", 3600), ("5min", 300),
])
def test_settle_interval_accepts_seconds_minutes_and_hours(text: str, seconds: int) -> None:
    assert load_config({}).settle_interval == 600
    assert load_config({"DESK_SETTLE_INTERVAL": text}).settle_interval == seconds


def test_cheap_kdf_cannot_come_from_the_environment() -> None:
    config = load_config({"DESK_KDF": "cheap", "DESK_KDF_MEMORY_COST": "8"})
    assert config.kdf == PRODUCTION_KDF


def test_command_fails_at_start_naming_the_variable(tmp_path: Path) -> None:
    result = run_desk("init", data_dir=tmp_path / "d",
                      extra_env={"DESK_MAX_UPLOAD_BYTES": "huge"})
    assert result.returncode != 0
    assert "DESK_MAX_UPLOAD_BYTES" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "d").exists()


def test_upload_caps_and_reserves_have_documented_defaults_and_read_their_variables() -> None:
    defaults = load_config({})
    assert (defaults.uploads_per_source, defaults.uploads_all_sources) == (20, 1000)
    assert defaults.unfinished_all_sources == DiskShare(percent=50)
    assert defaults.reserve_bytes == 64 * 1024**2
    assert defaults.reserve_inodes.of(4_000_000) == 200_000
    config = load_config({"DESK_UPLOADS_PER_SOURCE": "5", "DESK_UPLOADS_ALL_SOURCES": "50",
                          "DESK_UNFINISHED_ALL_SOURCES": "1GiB", "DESK_RESERVE_BYTES": "1GiB",
                          "DESK_RESERVE_INODES": "5000"})
    assert (config.uploads_per_source, config.uploads_all_sources) == (5, 50)
    assert config.unfinished_all_sources == DiskShare(size=1024**3)
    assert config.reserve_bytes == 1024**3
    assert config.reserve_inodes.of(4_000_000) == 5000
