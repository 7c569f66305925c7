"""A whole settle of a desk: its database first, then its file times (desk/storage/settle.py).

The database step clears what the journalists' login checks no longer need
(`forget_expired_logins`: a used TOTP step past the drift, failures whose minute is over,
the count of failures for unknown names), notes on every upload that a settle has seen it
(`mark_settled`: `desk purge` drops the ones still empty),
then checkpoints the write-ahead log into the database and truncates it to nothing, so that
neither the log nor the database keeps an older image of a row: after a settle the only
instants in the database are login values at most about 90 seconds old (deploy/STORAGE.md,
"Settling").

`desk settle` runs it, and each interface's arbiter on its interval. The arbiter forks its
workers, and a child forked while SQLite has the database open (or holds one of its own
mutexes) inherits a state it must never use; so the database step holds `NO_FORK`, and
`guard_forks` makes every fork of the process wait for it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from desk.config import Config
from desk.intake.tus import mark_settled
from desk.records.credentials import forget_expired_logins
from desk.records.db import make_engine, make_writer_sessionmaker, scrub_journal
from desk.storage.settle import SettleReport, settle

log = logging.getLogger(__name__)

# Held while the database step has SQLite open; a fork waits for it (guard_forks).
NO_FORK = threading.Lock()
_guarded: list[bool] = []


@dataclass
class DeskSettleReport:
    """What one settle of a desk did: the database step and the file times."""

    files: SettleReport
    # Journalist login values cleared (one per value kind per row).
    forgotten: int
    # False when the database step failed or readers kept the log from being emptied; the
    # next settle tries again.
    database_settled: bool


def guard_forks() -> None:
    """Make every later fork of this process wait while a database step runs (once per
    process)."""
    if _guarded:
        return
    _guarded.append(True)
    os.register_at_fork(before=NO_FORK.acquire, after_in_parent=NO_FORK.release,
                        after_in_child=NO_FORK.release)


def settle_database(config: Config) -> tuple[int, bool]:
    """The database step: clear expired login values, then empty the write-ahead log.
    How many values were cleared, and whether the log was emptied."""
    with NO_FORK:
        engine = make_engine(config.database_url)
        try:
            with make_writer_sessionmaker(engine)() as db:
                forgotten = forget_expired_logins(db)
                # Uploads made before now have seen a settle: `desk purge` drops the empty ones.
                mark_settled(db)
                db.commit()
            return forgotten, scrub_journal(engine)
        finally:
            engine.dispose()


def settle_desk(config: Config, wait: bool = True) -> DeskSettleReport:
    """One settle of the desk: the database step, then the file times, under one settle
    lock; SettleBusy if `wait` is false and another settle is running. A database step that
    fails is logged and reported, and the file times are settled all the same."""
    outcome = [0, False]

    def database() -> None:
        try:
            outcome[:] = settle_database(config)
        except (SQLAlchemyError, sqlite3.Error) as exc:
            log.error("Settling the database failed: %s", type(exc).__name__)

    files = settle(config.data_dir, wait, first=database)
    return DeskSettleReport(files, int(outcome[0]), bool(outcome[1]))
