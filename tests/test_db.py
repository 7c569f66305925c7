"""The database: durable SQLite settings on every connection, and migrations that match models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from desk import migrations
from desk.config import Config
from desk.db import make_engine
from desk.instance import init_desk
from desk.models import Base
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


def test_clear_text_columns_are_dates_sizes_and_ids(empty_desk: Services) -> None:
    columns = {(table.name, column.name): str(column.type)
               for table in Base.metadata.tables.values() for column in table.columns}
    forbidden = ("name", "filename", "content_type", "sha", "hash", "message", "codename")
    assert not [key for key in columns if any(word in key[1] for word in forbidden)
                and key != ("journalists", "username")]
    assert all(kind == "DATE" for (_, name), kind in columns.items()
               if name.endswith(("_on", "_at")))
