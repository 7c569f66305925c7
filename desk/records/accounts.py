"""Adding journalists and pinning their keys."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from crypto.custody import ACTOR_RE, FIXED_ACTORS
from crypto.errors import KeyRefused
from crypto.gpg import GnuPG
from crypto.kdf import PRODUCTION_KDF, KdfParams
from crypto.keys import check_key, single_public_key
from desk.errors import JournalistError
from desk.records.credentials import hash_password, new_totp_secret
from desk.records.keys import stale_locks
from desk.records.models import Journalist, JournalistSession

# A username is a custody actor (crypto/custody.py): the same alphabet, and never one of the
# fixed actors, so custody entries cannot be mistaken for a journalist's.
USERNAME_RE = ACTOR_RE


def add_journalist(db: Session, gpg: GnuPG, username: str, key_data: bytes,
                   is_admin: bool = False, password: str | None = None,
                   kdf: KdfParams = PRODUCTION_KDF) -> Journalist:
    """Check and import a journalist's public key, pin its fingerprint and add the account.

    With a password the account can log in: it gets an Argon2id hash and a fresh TOTP secret
    (read it from `journalist.totp_secret` to show it once). The key is checked against
    policy before it enters the keyring, so a refused key is never imported. Raises
    JournalistError with a specific reason. Not committed.
    """
    if not USERNAME_RE.match(username):
        raise JournalistError(
            "usernames are 1 to 64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    if username in FIXED_ACTORS:
        raise JournalistError(f"{username!r} is reserved for the desk's own custody entries")
    if db.scalar(select(Journalist).where(Journalist.username == username)):
        raise JournalistError(f"a journalist called {username!r} already exists")
    password_hash = None if password is None else hash_password(password, kdf)
    fingerprint = _import_key(db, gpg, key_data)
    journalist = Journalist(
        username=username, fingerprint=fingerprint, is_admin=is_admin,
        created_on=datetime.now(UTC).date(), password_hash=password_hash,
        totp_secret=None if password is None else new_totp_secret(), failed_logins=0)
    db.add(journalist)
    return journalist


def replace_key(db: Session, gpg: GnuPG, journalist: Journalist, key_data: bytes) -> str:
    """Check, import and pin a new key for `journalist`; return its fingerprint. Not committed.

    The old key leaves the keyring unless another journalist pins it.
    """
    old = journalist.fingerprint
    journalist.fingerprint = _import_key(db, gpg, key_data, allow_owner=journalist)
    if old != journalist.fingerprint:
        _forget_key(db, gpg, old, journalist)
    return journalist.fingerprint


def remove_journalist(db: Session, gpg: GnuPG, journalist: Journalist) -> None:
    """Delete an account (its sessions go with it) and its key if nobody else pins it."""
    db.delete(journalist)
    _forget_key(db, gpg, journalist.fingerprint, journalist)


def reset_two_factor(db: Session, journalist: Journalist) -> bytes:
    """Give `journalist` a new TOTP secret, end their sessions, return the secret. Not
    committed."""
    journalist.totp_secret, journalist.totp_last_step = new_totp_secret(), None
    end_sessions(db, journalist)
    return journalist.totp_secret


def set_password(db: Session, journalist: Journalist, password: str,
                 kdf: KdfParams = PRODUCTION_KDF) -> bytes | None:
    """Set a new password and end the journalist's sessions; give them a TOTP secret if they
    had none, and return it (None if they kept theirs). Not committed."""
    journalist.password_hash = hash_password(password, kdf)
    end_sessions(db, journalist)
    if journalist.totp_secret is None:
        return reset_two_factor(db, journalist)
    return None


def end_sessions(db: Session, journalist: Journalist) -> None:
    """Log the journalist out everywhere."""
    db.execute(delete(JournalistSession)
                    .where(JournalistSession.journalist_id == journalist.id))


def find_journalist(db: Session, username: str) -> Journalist:
    """The journalist called `username`, or JournalistError."""
    journalist = db.scalar(select(Journalist).where(Journalist.username == username))
    if journalist is None:
        raise JournalistError(f"no journalist called {username!r}")
    return journalist


def _import_key(db: Session, gpg: GnuPG, key_data: bytes,
                allow_owner: Journalist | None = None) -> str:
    try:
        key = check_key(single_public_key(gpg.scan(key_data)))
    except KeyRefused as exc:
        raise JournalistError(f"key refused: {exc}") from exc
    owner = db.scalar(select(Journalist).where(Journalist.fingerprint == key.fingerprint))
    if owner is not None and owner is not allow_owner:
        raise JournalistError(f"key {key.fingerprint} already belongs to {owner.username!r}")
    try:
        gpg.import_public_key(key_data, key.fingerprint)
    except KeyRefused as exc:
        if stale := stale_locks(gpg.home):
            raise JournalistError(f"gpg could not import the key: {stale[0]} is a stale gpg "
                                  "lock; stop both interfaces and run `desk doctor --repair`"
                                  ) from exc
        raise JournalistError(f"key refused: {exc}") from exc
    return key.fingerprint


def _forget_key(db: Session, gpg: GnuPG, fingerprint: str, leaving: Journalist) -> None:
    others = db.scalars(select(Journalist).where(
        Journalist.fingerprint == fingerprint, Journalist.id != leaving.id)).first()
    if others is None:
        gpg.delete_public_key(fingerprint)
