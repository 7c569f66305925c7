"""The database: durable SQLite settings on every connection, and migrations that match models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from desk.config import Config
from desk.records import migrations
from desk.records.db import make_engine
from desk.records.instance import init_desk
from desk.records.models import Base
from desk.services import Services


def test_every_sqlite_connection_is_wal_full_and_secure_delete(empty_desk: Services) -> None:
    for _ in range(2):  # a fresh pooled connection each time
        with empty_desk.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert connection.execute(text("PRAGMA secure_delete")).scalar() == 1
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        empty_desk.engine.dispose()


def test_migrations_produce_exactly_the_models(empty_desk: Services) -> None:
    with empty_desk.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_migrations_go_down_and_up_again(config: Config) -> None:
    init_desk(config)
    engine = make_engine(config.database_url)
    migrations.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrations.upgrade(engine)
    assert {"instance", "journalists", "sources", "submissions"} <= set(
        inspect(engine).get_table_names())
    engine.dispose()


def test_init_is_idempotent_and_keeps_secrets(config: Config) -> None:
    assert init_desk(config) is True
    secret = config.secret_key_file.read_bytes()
    assert init_desk(config) is False
    assert config.secret_key_file.read_bytes() == secret
    assert config.secret_key_file.stat().st_mode & 0o777 == 0o600
    assert config.gnupg_home.stat().st_mode & 0o777 == 0o700
    assert config.data_dir.stat().st_mode & 0o777 == 0o700


# Columns whose names look sensitive but hold nothing about a source's plaintext: hashes of
# ciphertext, the custody chain's own links, and journalists' and the desk's own data.
NOT_ABOUT_PLAINTEXT = {
    ("journalists", "username"), ("journalists", "password_hash"), ("instance", "name"),
    ("submissions", "ciphertext_sha256"), ("custody_entries", "ciphertext_sha256"),
    ("custody_entries", "prev_hash"), ("custody_entries", "entry_hash"),
    ("replies", "ciphertext_sha256"),
}


def test_clear_text_columns_hold_no_names_types_or_plaintext_hashes() -> None:
    columns = {(table.name, column.name): str(column.type)
               for table in Base.metadata.tables.values() for column in table.columns}
    forbidden = ("name", "filename", "content_type", "sha", "hash", "message", "codename")
    suspicious = {key for key in columns if any(word in key[1] for word in forbidden)}
    assert suspicious == NOT_ABOUT_PLAINTEXT


def test_only_session_tables_hold_instants() -> None:
    instants = {key[0] for key, kind in (
        ((table.name, column.name), str(column.type))
        for table in Base.metadata.tables.values() for column in table.columns)
        if kind == "DATETIME"}
    assert instants <= {"journalists", "journalist_sessions", "source_sessions"}
