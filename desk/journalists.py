"""Adding journalists and pinning their keys."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.errors import KeyRefused
from crypto.gpg import GnuPG
from crypto.keys import check_key, single_public_key
from desk.errors import JournalistError
from desk.models import Journalist

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def add_journalist(session: Session, gpg: GnuPG, username: str, key_data: bytes,
                   is_admin: bool = False) -> Journalist:
    """Check and import a journalist's public key, pin its fingerprint and add the account.

    The key is checked against policy before it enters the keyring, so a refused key is never
    imported. Raises JournalistError with a specific reason.
    """
    if not USERNAME_RE.match(username):
        raise JournalistError(
            "usernames are 1 to 64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    if session.scalar(select(Journalist).where(Journalist.username == username)):
        raise JournalistError(f"a journalist called {username!r} already exists")
    try:
        key = check_key(single_public_key(gpg.scan(key_data)))
        gpg.import_public_key(key_data, key.fingerprint)
    except KeyRefused as exc:
        raise JournalistError(f"key refused: {exc}") from exc
    owner = session.scalar(select(Journalist).where(Journalist.fingerprint == key.fingerprint))
    if owner is not None:
        raise JournalistError(f"key {key.fingerprint} already belongs to {owner.username!r}")
    journalist = Journalist(username=username, fingerprint=key.fingerprint, is_admin=is_admin,
                            created_on=datetime.now(UTC).date())
    session.add(journalist)
    return journalist
