"""The desk's long-lived objects, built once per process from a Config and passed around."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from crypto.gpg import GnuPG
from desk.config import Config
from desk.db import make_engine, make_sessionmaker
from desk.errors import NotInitialised
from desk.recipients import Recipients
from desk.store import Store


@dataclass
class Services:
    """Config, database, GnuPG home, store and the recipient cache of one desk."""

    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    gpg: GnuPG
    store: Store
    recipients: Recipients = field(init=False)

    def __post_init__(self) -> None:
        self.recipients = Recipients(self.gpg, self.sessions)


def open_services(config: Config) -> Services:
    """Open an initialised desk; raise NotInitialised when `desk init` has not run."""
    if not config.gnupg_home.is_dir() or not config.store_dir.is_dir():
        raise NotInitialised(f"{config.data_dir} is not a desk data directory: run `desk init`")
    engine = make_engine(config.database_url)
    return Services(config=config, engine=engine, sessions=make_sessionmaker(engine),
                    gpg=GnuPG(config.gnupg_home), store=Store(config.store_dir))
