"""Setting up a desk's data directory: `desk init`."""

from __future__ import annotations

import os
import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.codename import new_salt
from crypto.custody import SigningKey
from desk.config import Config, parse_size
from desk.errors import JournalistError, NotInitialised
from desk.records import migrations
from desk.records.db import make_engine, make_sessionmaker
from desk.records.models import Instance
from desk.storage.store import Store


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
    if not config.signing_key_file.exists():
        SigningKey.generate().save(config.signing_key_file)
    engine = make_engine(config.database_url)
    try:
        migrations.upgrade(engine)
        with make_sessionmaker(engine)() as db, db.begin():
            if db.get(Instance, 1) is None:
                db.add(Instance(id=1, lookup_salt=new_salt(), reply_salt=new_salt(),
                                     created_on=datetime.now(UTC).date()))
    finally:
        engine.dispose()
    return new


def load_instance(db: Session) -> Instance:
    """This desk's Instance row."""
    instance = db.scalar(select(Instance).where(Instance.id == 1))
    if instance is None:
        raise NotInitialised("the database has no instance row: run `desk init`")
    return instance


def read_signing_key(config: Config) -> SigningKey:
    """The custody signing key made by `desk init`."""
    try:
        return SigningKey.load(config.signing_key_file)
    except FileNotFoundError as exc:
        raise NotInitialised(f"{config.signing_key_file} is missing: run `desk init`") from exc


def read_secret_key(config: Config) -> str:
    """The cookie-signing key made by `desk init`."""
    try:
        return config.secret_key_file.read_text().strip()
    except FileNotFoundError as exc:
        raise NotInitialised(f"{config.secret_key_file} is missing: run `desk init`") from exc


MIN_UPLOAD_BYTES = 1024 * 1024
MAX_RETENTION_DAYS = 3650


def update_settings(db: Session, name: str, max_upload: str, retention_days: str
                    ) -> Instance:
    """Check and store the admin-editable settings; raise JournalistError naming a bad one.

    An empty `max_upload` means DESK_MAX_UPLOAD_BYTES applies; an empty `retention_days`
    keeps submissions until a journalist deletes them. Not committed.
    """
    instance = load_instance(db)
    name = " ".join(name.split())
    if not 1 <= len(name) <= 100:
        raise JournalistError("the desk's name must be 1 to 100 characters")
    size = None
    if max_upload.strip():
        size = parse_size(max_upload)
        if size is None or size < MIN_UPLOAD_BYTES:
            raise JournalistError(
                "the maximum upload must be a size of at least 1 MiB, such as 500MiB or 4GiB")
    days = None
    if retention_days.strip():
        if not re.fullmatch(r"[0-9]{1,5}", retention_days.strip()) or \
                not 1 <= int(retention_days) <= MAX_RETENTION_DAYS:
            raise JournalistError(
                f"retention must be a number of days from 1 to {MAX_RETENTION_DAYS}, or empty")
        days = int(retention_days)
    instance.name, instance.max_upload_bytes, instance.retention_days = name, size, days
    return instance
