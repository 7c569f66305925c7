"""Database engine and sessions. SQLite connections are made durable and forgetful on connect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    """An engine for `url`; each SQLite connection gets WAL, synchronous=FULL, secure_delete."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN, so writers can ask for BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets journalists read while a source writes; FULL makes a commit durable before the 2xx;
    # secure_delete overwrites deleted rows instead of leaving them in free pages.
    # busy_timeout first, so that even the journal_mode pragma waits for a busy database.
    for pragma in ("busy_timeout=10000", "journal_mode=WAL", "synchronous=FULL",
                   "secure_delete=ON", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A deferred transaction that reads and then writes fails at once if another writer
    # committed in between; writers take the write lock up front and wait their turn instead.
    immediate = connection.get_execution_options().get("immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reading and for writes that need no ordering."""
    return sessionmaker(engine, expire_on_commit=False)


def make_writer_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose transactions hold the write lock from their start (the custody log)."""
    return sessionmaker(engine.execution_options(immediate=True), expire_on_commit=False)
