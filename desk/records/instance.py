"""Setting up a desk's data directory: `desk init`."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.codename import new_salt
from crypto.custody import SigningKey
from crypto.durable import sync_path, write_durably
from desk.config import Config, parse_size
from desk.errors import DamagedKeys, JournalistError, NotInitialised
from desk.records import migrations
from desk.records.db import make_engine, make_sessionmaker
from desk.records.keys import (
    keyring_problems,
    secret_key_problem,
    signing_key_problem,
    stale_locks,
)
from desk.records.models import CustodyRecord, Instance, Journalist
from desk.storage.store import Store


def init_desk(config: Config, say: Callable[[str], None] = lambda _line: None) -> bool:
    """Create or upgrade the data directory, keyring, store and database; True if it was new.

    Safe to run again: it creates only what is missing and applies pending migrations. Key
    material a power cut damaged is replaced where nothing depends on it (the cookie key;
    the signing key while the custody log is empty), each replacement told to `say`; any
    other damage raises DamagedKeys, so init never reports success over it.
    """
    new = not config.secret_key_file.exists()
    for path in (config.data_dir, config.gnupg_home):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # gpg refuses a home others can read
        sync_path(path.parent)
    Store(config.store_dir).create()
    if new:
        write_durably(config.secret_key_file, secrets.token_hex(32).encode("ascii"),
                      replace=False)
    if not config.signing_key_file.exists():
        SigningKey.generate().save(config.signing_key_file)
    engine = make_engine(config.database_url)
    try:
        migrations.upgrade(engine)
        with make_sessionmaker(engine)() as db, db.begin():
            if db.get(Instance, 1) is None:
                db.add(Instance(id=1, lookup_salt=new_salt(), reply_salt=new_salt(),
                                     created_on=datetime.now(UTC).date()))
            _replace_what_is_safe(config, db, say)
            problems = key_material_problems(config, db)
    finally:
        engine.dispose()
    if problems:
        raise DamagedKeys(problems[0] + (f" (and {len(problems) - 1} more: run `desk doctor`)"
                                         if len(problems) > 1 else ""))
    return new


def _replace_what_is_safe(config: Config, db: Session, say: Callable[[str], None]) -> None:
    if secret_key_problem(config) is not None:
        config.secret_key_file.unlink()
        write_durably(config.secret_key_file, secrets.token_hex(32).encode("ascii"),
                      replace=False)
        say(f"Replaced the damaged {config.secret_key_file} (everyone is logged out)")
    if signing_key_problem(config) is not None and \
            db.scalar(select(CustodyRecord.seq).limit(1)) is None:
        config.signing_key_file.unlink()
        SigningKey.generate().save(config.signing_key_file)
        say(f"Replaced the damaged {config.signing_key_file}: the custody log is empty, so "
            "nothing was signed with it")


def load_instance(db: Session) -> Instance:
    """This desk's Instance row."""
    instance = db.scalar(select(Instance).where(Instance.id == 1))
    if instance is None:
        raise NotInitialised("the database has no instance row: run `desk init`")
    return instance


def read_signing_key(config: Config) -> SigningKey:
    """The custody signing key made by `desk init`; DamagedKeys if it is not a whole key."""
    if (problem := signing_key_problem(config)) is not None:
        raise DamagedKeys(problem)
    try:
        return SigningKey.load(config.signing_key_file)
    except FileNotFoundError as exc:
        raise NotInitialised(f"{config.signing_key_file} is missing: run `desk init`") from exc


def read_secret_key(config: Config) -> str:
    """The cookie-signing key made by `desk init`; DamagedKeys if it is not a whole key."""
    if (problem := secret_key_problem(config)) is not None:
        raise DamagedKeys(problem)
    try:
        return config.secret_key_file.read_text().strip()
    except FileNotFoundError as exc:
        raise NotInitialised(f"{config.secret_key_file} is missing: run `desk init`") from exc


def key_material_problems(config: Config, db: Session | None = None) -> list[str]:
    """Everything damaged in the desk's key material, one line each with its remedy: the two
    key files, the keyring (checked against the journalists' fingerprints in `db`), and
    stale gpg locks."""
    problems = [problem for problem in (secret_key_problem(config), signing_key_problem(config))
                if problem is not None]
    fingerprints = [] if db is None else list(db.scalars(select(Journalist.fingerprint)))
    problems += keyring_problems(config, fingerprints)
    problems += [f"{path} is a stale gpg lock (a power cut while gpg held it, or gpg was "
                 "killed): every change to the keyring fails until `desk doctor --repair` "
                 "removes it" for path in stale_locks(config.gnupg_home)]
    return problems


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
