"""Database engine and sessions. SQLite connections are made durable and forgetful on connect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, sessionmaker

# A session whose `info` holds this key refuses to change anything (see read_only_session).
READ_ONLY = "desk.read_only"


class ReadOnlySession(RuntimeError):
    """Code tried to change rows through a read-only session: open a writer transaction."""


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


def read_only_session(sessions: sessionmaker[Session]) -> Session:
    """A session from `sessions` that raises ReadOnlySession on any insert, update or delete.

    Every write then needs its own writer transaction, short and explicit, so nothing can
    hold SQLite's write lock by accident while gpg runs or an upload streams in.
    """
    return sessions(info={READ_ONLY: True})


@event.listens_for(Session, "before_flush")
def _refuse_flush(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    if session.info.get(READ_ONLY) and (session.new or session.dirty or session.deleted):
        raise ReadOnlySession("this session only reads: change rows in a writer transaction")


@event.listens_for(Session, "do_orm_execute")
def _refuse_statement(state: ORMExecuteState) -> None:
    if state.session.info.get(READ_ONLY) and not state.is_select:
        raise ReadOnlySession("this session only reads: change rows in a writer transaction")


def make_writer_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose transactions hold the write lock from their start (the custody log)."""
    return sessionmaker(engine.execution_options(immediate=True), expire_on_commit=False)
