"""Database engine and sessions. SQLite connections are made durable and forgetful on connect.

Deleting forgets for good: secure_delete zeroes a deleted row's cells, and after any commit
that deleted rows the write-ahead log, which still holds the page images from before the
delete, is checkpointed into the database and truncated to nothing (`scrub_journal`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, sessionmaker

# A session whose `info` holds this key refuses to change anything (see read_only_session).
READ_ONLY = "desk.read_only"
# A session whose `info` holds this key deleted rows in its current transaction.
DELETED = "desk.deleted"
# How often a checkpoint that readers kept from truncating the log is tried again.
SCRUB_ATTEMPTS = 10
SCRUB_PAUSE = 0.2
# How long one checkpoint attempt waits for readers, and how long any statement waits for
# the database otherwise, in milliseconds.
SCRUB_WAIT_MS = 200
BUSY_TIMEOUT_MS = 10000

log = logging.getLogger(__name__)


def is_busy(error: BaseException) -> bool:
    """True if `error` is SQLite's "database is locked": another writer held the write lock
    for longer than BUSY_TIMEOUT_MS. Nothing was written, and the same transaction may be
    tried again."""
    return isinstance(error, OperationalError) and "database is locked" in str(error.orig)


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
    # journal_size_limit=0 cuts the log back whenever it restarts, so stale frames never
    # linger past the current transaction's; scrub_journal empties it after deletions.
    for pragma in (f"busy_timeout={BUSY_TIMEOUT_MS}", "journal_mode=WAL", "synchronous=FULL",
                   "secure_delete=ON", "foreign_keys=ON", "journal_size_limit=0"):
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
    if state.is_delete:
        state.session.info[DELETED] = True


@event.listens_for(Session, "before_flush")
def _note_deletions(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    if session.deleted:
        session.info[DELETED] = True


@event.listens_for(Session, "after_commit")
def _scrub_after_deleting(session: Session) -> None:
    # The session cannot run SQL here, and the thread may still hold a read snapshot (a web
    # request's session) that would keep the checkpoint from truncating: note the engine, and
    # let scrub_pending() run once the thread's reads are over.
    if session.info.pop(DELETED, False):
        bind = session.get_bind()
        engine = bind.engine if isinstance(bind, Engine) else bind
        if isinstance(engine, Engine) and engine.dialect.name == "sqlite":
            pending = _pending()
            if all(known.pool is not engine.pool for known in pending):
                pending.append(engine)


@event.listens_for(Session, "after_rollback")
def _forget_deletions(session: Session) -> None:
    session.info.pop(DELETED, None)


_thread = threading.local()


def _pending() -> list[Engine]:
    if not hasattr(_thread, "engines"):
        _thread.engines = []
    engines: list[Engine] = _thread.engines
    return engines


def scrub_pending() -> bool:
    """Scrub the journal of every engine this thread committed a deletion to; call it once
    the thread holds no read transaction. False if a journal could not be emptied."""
    pending = _pending()
    clean = True
    while pending:
        clean = scrub_journal(pending.pop()) and clean
    return clean


def scrub_journal(engine: Engine) -> bool:
    """Copy every page of the write-ahead log into the database and truncate the log to zero
    bytes, so no image of a deleted row is left in it; True when done.

    A reader still on an older snapshot keeps the checkpoint from finishing, and while it
    waits the checkpoint holds the write lock: each attempt waits at most SCRUB_WAIT_MS, with
    pauses between for writers; after SCRUB_ATTEMPTS (about 4 s in all) log that the journal
    still holds old pages, which the next deletion or `desk purge` empties.
    """
    if engine.dialect.name != "sqlite":
        return True
    for attempt in range(SCRUB_ATTEMPTS):
        if attempt:
            time.sleep(SCRUB_PAUSE)
        # The driver's own connection, outside any transaction: a checkpoint cannot run in one.
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            # While it waits for readers the checkpoint holds the write lock: wait briefly, so
            # uploads' and other writers' commits are never held for long, and try again.
            cursor.execute(f"PRAGMA busy_timeout={SCRUB_WAIT_MS}")
            try:
                busy, _frames, _copied = cursor.execute(
                    "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                cursor.close()
        finally:
            connection.close()
        if busy == 0:
            return True
    log.warning("the database's write-ahead log could not be emptied after a deletion "
                "(readers held it); the next deletion or `desk purge` empties it")
    return False


def make_writer_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose transactions hold the write lock from their start (the custody log)."""
    return sessionmaker(engine.execution_options(immediate=True), expire_on_commit=False)
