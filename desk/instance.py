"""Setting up a desk's data directory: `desk init`."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.codename import new_salt
from desk import migrations
from desk.config import Config
from desk.db import make_engine, make_sessionmaker
from desk.errors import NotInitialised
from desk.models import Instance
from desk.store import Store


def init_desk(config: Config) -> bool:
    """Create or upgrade the data directory, keyring, store and database; True if it was new.

    Safe to run again: it creates only what is missing and applies pending migrations.
    """
    new = not config.secret_key_file.exists()
    for path in (config.data_dir, config.gnupg_home):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # gpg refuses a home others can read
    Store(config.store_dir).create()
    if new:
        fd = os.open(config.secret_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    engine = make_engine(config.database_url)
    try:
        migrations.upgrade(engine)
        with make_sessionmaker(engine)() as session, session.begin():
            if session.get(Instance, 1) is None:
                session.add(Instance(id=1, lookup_salt=new_salt(),
                                     created_on=datetime.now(UTC).date()))
    finally:
        engine.dispose()
    return new


def load_instance(session: Session) -> Instance:
    """This desk's Instance row."""
    instance = session.scalar(select(Instance).where(Instance.id == 1))
    if instance is None:
        raise NotInitialised("the database has no instance row: run `desk init`")
    return instance


def read_secret_key(config: Config) -> str:
    """The cookie-signing key made by `desk init`."""
    try:
        return config.secret_key_file.read_text().strip()
    except FileNotFoundError as exc:
        raise NotInitialised(f"{config.secret_key_file} is missing: run `desk init`") from exc
