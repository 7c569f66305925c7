"""The desk's long-lived objects, built once per process from a Config and passed around."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from crypto.custody import SigningKey
from crypto.gpg import GnuPG
from desk.config import Config
from desk.errors import DamagedKeys, NotInitialised
from desk.records.db import make_engine, make_sessionmaker, make_writer_sessionmaker
from desk.records.instance import read_signing_key
from desk.records.keys import keyring_problems
from desk.records.recipients import Recipients
from desk.storage.store import Store


@dataclass
class Services:
    """Config, database, GnuPG home, store, signing key and recipient cache of one desk."""

    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    # Transactions that append to the custody log take the write lock from their start.
    writers: sessionmaker[Session]
    gpg: GnuPG
    store: Store
    signing_key: SigningKey
    recipients: Recipients = field(init=False)

    def __post_init__(self) -> None:
        self.recipients = Recipients(self.gpg, self.sessions)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A short writer transaction: it holds the write lock from its start, commits when
        the block ends and rolls back if it raises. Keep slow work (gpg, a body) outside."""
        with self.writers() as db:
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.commit()


def open_services(config: Config) -> Services:
    """Open an initialised desk; raise NotInitialised when `desk init` has not run."""
    if not config.gnupg_home.is_dir() or not config.store_dir.is_dir():
        raise NotInitialised(f"{config.data_dir} is not a desk data directory: run `desk init`")
    # A damaged keyring, found without running gpg; `desk doctor` checks every key in it.
    if damaged := keyring_problems(config, ()):
        raise DamagedKeys(damaged[0])
    engine = make_engine(config.database_url)
    return Services(config=config, engine=engine, sessions=make_sessionmaker(engine),
                    writers=make_writer_sessionmaker(engine),
                    gpg=GnuPG(config.gnupg_home, seed_file=False),
                    store=Store(config.store_dir, config.reserve_bytes, config.reserve_inodes),
                    signing_key=read_signing_key(config))
