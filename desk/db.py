"""Database engine and sessions. SQLite connections are made durable and forgetful on connect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    """An engine for `url`; each SQLite connection gets WAL, synchronous=FULL, secure_delete."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets journalists read while a source writes; FULL makes a commit durable before the 2xx;
    # secure_delete overwrites deleted rows instead of leaving them in free pages.
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON",
                   "foreign_keys=ON", "busy_timeout=10000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
