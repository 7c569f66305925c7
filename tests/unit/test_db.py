"""The database: durable SQLite settings on every connection, and migrations that match models."""

from __future__ import annotations

from datetime import date

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from crypto.custody import SigningKey, make_entry, verify_chain
from desk.config import Config
from desk.records import migrations
from desk.records.custody import custody_records
from desk.records.db import make_engine
from desk.records.instance import init_desk
from desk.records.models import Base, CustodyRecord
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
    ("journalists", "username"), ("journalists", "password_hash"),
    ("journalists", "enrolment_hash"), ("instance", "name"),
    ("submissions", "ciphertext_sha256"),
    ("custody_entries", "prev_hash"), ("custody_entries", "entry_hash"),
    ("replies", "ciphertext_sha256"),
}


def test_clear_text_columns_hold_no_names_types_or_plaintext_hashes() -> None:
    columns = {(table.name, column.name): str(column.type)
               for table in Base.metadata.tables.values() for column in table.columns}
    forbidden = ("name", "filename", "content_type", "sha", "hash", "message", "codename")
    suspicious = {key for key in columns if any(word in key[1] for word in forbidden)}
    assert suspicious == NOT_ABOUT_PLAINTEXT


def test_only_a_journalists_failed_logins_hold_an_instant() -> None:
    # Session rows keep the day they expire on; the idle deadline is sealed in their data.
    # failures_since (and totp_last_step, an integer) are cleared by every settle once they
    # can change no answer (tests/unit/test_login_times.py).
    instants = {(table.name, column.name) for table in Base.metadata.tables.values()
                for column in table.columns if str(column.type) == "DATETIME"}
    assert instants == {("journalists", "failures_since")}


def test_session_rows_lose_their_instants_going_up_and_get_them_back_going_down(
        config: Config) -> None:
    init_desk(config)
    engine = make_engine(config.database_url)
    migrations.downgrade(engine, "0002")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO source_sessions (id, data, expires_at) "
                                "VALUES ('a', 'x', '2026-12-01 10:11:12')"))
    migrations.upgrade(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("source_sessions")}
    assert "expires_on" in columns
    assert "expires_at" not in columns
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM source_sessions")).scalar() == 0
    migrations.downgrade(engine, "0002")
    columns = {c["name"] for c in inspect(engine).get_columns("journalist_sessions")}
    assert "expires_at" in columns
    assert "expires_on" not in columns
    engine.dispose()


def test_a_version_1_custody_log_survives_the_move_to_custody_keys(config: Config) -> None:
    init_desk(config)
    engine = make_engine(config.database_url)
    migrations.downgrade(engine, "0003")
    key = SigningKey.generate()
    first = make_entry(key, None, date(2026, 11, 27), "ingest", "9b" * 16, "c" * 64)
    second = make_entry(key, first, date(2026, 11, 28), "export", "9b" * 16, "c" * 64, "alice")
    with engine.begin() as connection:
        for entry in (first, second):
            connection.execute(text(
                'INSERT INTO custody_entries (seq, "on", event, object_id, ciphertext_sha256, '
                "actor, prev_hash, entry_hash, signature) VALUES (:seq, :on, :event, :subject, "
                ":digest, :actor, :prev_hash, :entry_hash, :signature)"),
                {**{k: v for k, v in vars(entry).items() if k != "version"},
                 "on": entry.on.isoformat()})

    migrations.upgrade(engine)

    with Session(engine) as db:
        stored = [record.entry() for record in custody_records(db)]
    assert stored == [first, second]
    assert verify_chain(stored, key.public_hex) == stored
    with engine.begin() as connection, pytest.raises(DBAPIError, match="append-only"):
        connection.execute(text("UPDATE custody_entries SET actor = 'mallory'"))
    # A log that holds a version 2 entry cannot go back to version 1.
    third = make_entry(key, second, date(2026, 11, 29), "ingest", "d" * 64, "e" * 64,
                       version=2)
    with Session(engine) as db:
        db.add(CustodyRecord.from_entry(third))
        db.commit()
    with pytest.raises(RuntimeError, match="version 2"):
        migrations.downgrade(engine, "0003")
    engine.dispose()
