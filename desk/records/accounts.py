"""Journalist accounts: adding them, pinning their keys, their one-time enrolment links, the
changes journalists make to their own login, and the record of who changed an account."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from crypto.custody import ACTOR_RE, CLI_ACTOR, FIXED_ACTORS
from crypto.errors import KeyRefused
from crypto.gpg import GnuPG
from crypto.kdf import PRODUCTION_KDF, KdfParams
from crypto.keys import check_key, single_public_key
from desk.errors import JournalistError
from desk.records.credentials import (
    accepted_step,
    check_password_rules,
    checked_step,
    hash_password,
    new_totp_secret,
)
from desk.records.keys import stale_locks
from desk.records.models import AccountEvent, Journalist, JournalistSession

# A username is a custody actor (crypto/custody.py): the same alphabet, and never one of the
# fixed actors, so custody entries cannot be mistaken for a journalist's.
USERNAME_RE = ACTOR_RE

# An enrolment link works until the end of the UTC day this many days after it was issued:
# 72 to 96 hours. The row keeps that day, never the moment the link was issued.
ENROLMENT_DAYS = 3
ENROLMENT_TOKEN_BYTES = 32
ENROLMENT_PATH = "/enrol/"

# What `AccountEvent.action` holds, and how pages and the command line say it.
ACTIONS = {
    "added": "added the account",
    "enrolment-link": "issued an enrolment link (new passphrase and two-factor)",
    "two-factor-link": "reset two-factor and issued an enrolment link",
    "enrolled": "enrolled: chose the passphrase and set up two-factor",
    "passphrase": "changed the passphrase",
    "two-factor": "set up two-factor again",
    "password-set": "set the passphrase on the server's command line",
    "key": "replaced the key",
    "removed": "removed the account",
}


@dataclass(frozen=True)
class EnrolmentLink:
    """A one-time enrolment link's token and the last day it works. Its repr hides the token:
    whoever holds it can set the account's login."""

    token: str
    until: date

    @property
    def path(self) -> str:
        """The link's path on the journalist interface."""
        return ENROLMENT_PATH + self.token

    def __repr__(self) -> str:
        return f"EnrolmentLink(until={self.until.isoformat()})"


def add_journalist(db: Session, gpg: GnuPG, username: str, key_data: bytes,
                   is_admin: bool = False, password: str | None = None,
                   kdf: KdfParams = PRODUCTION_KDF, actor: str = CLI_ACTOR) -> Journalist:
    """Check and import a journalist's public key, pin its fingerprint and add the account,
    recorded under `actor`.

    Without a password the account cannot log in until it enrols (`issue_enrolment`). With
    one (the server's command line and the demo only: whoever runs them holds the database
    anyway) it gets an Argon2id hash and a fresh TOTP secret (read it from
    `journalist.totp_secret` to show it once). The key is checked against policy before it
    enters the keyring, so a refused key is never imported. Raises JournalistError with a
    specific reason. Not committed.
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
    record_event(db, actor, "added", username)
    if password is not None:
        record_event(db, actor, "password-set", username)
    return journalist


def replace_key(db: Session, gpg: GnuPG, journalist: Journalist, key_data: bytes,
                actor: str = CLI_ACTOR) -> str:
    """Check, import and pin a new key for `journalist`, recorded under `actor`; return its
    fingerprint. Not committed.

    The old key leaves the keyring unless another journalist pins it.
    """
    record_event(db, actor, "key", journalist.username)
    old = journalist.fingerprint
    journalist.fingerprint = _import_key(db, gpg, key_data, allow_owner=journalist)
    if old != journalist.fingerprint:
        _forget_key(db, gpg, old, journalist)
    return journalist.fingerprint


def remove_journalist(db: Session, gpg: GnuPG, journalist: Journalist,
                      actor: str = CLI_ACTOR) -> None:
    """Delete an account (its sessions go with it) and its key if nobody else pins it; the
    removal is recorded under `actor`."""
    record_event(db, actor, "removed", journalist.username)
    db.delete(journalist)
    _forget_key(db, gpg, journalist.fingerprint, journalist)


def issue_enrolment(db: Session, journalist: Journalist, actor: str,
                    keep_passphrase: bool = False, today: date | None = None) -> EnrolmentLink:
    """End the journalist's sessions, clear their two-factor secret (and their passphrase,
    unless `keep_passphrase`) and return a new one-time enrolment link, recorded under `actor`.

    Whoever opens the link sets a new two-factor secret, and chooses the passphrase too unless
    it was kept, in which case they must type it: a link that only resets two-factor does not
    let its holder take the account. Only the token's SHA-256 is stored; a newer link replaces
    an older one. Not committed.
    """
    if keep_passphrase and journalist.password_hash is None:
        raise JournalistError(f"{journalist.username} has no passphrase to keep: issue an "
                              "enrolment link for a new passphrase and two-factor")
    today = today or datetime.now(UTC).date()
    link = EnrolmentLink(secrets.token_urlsafe(ENROLMENT_TOKEN_BYTES),
                         today + timedelta(days=ENROLMENT_DAYS))
    journalist.enrolment_hash = enrolment_digest(link.token)
    journalist.enrolment_until = link.until
    journalist.totp_secret = journalist.totp_last_step = None
    if not keep_passphrase:
        journalist.password_hash = None
    end_sessions(db, journalist)
    record_event(db, actor, "two-factor-link" if keep_passphrase else "enrolment-link",
                 journalist.username)
    return link


def enrolment_digest(token: str) -> str:
    """What the database keeps of an enrolment token."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def pending_enrolment(db: Session, token: str, today: date | None = None) -> Journalist | None:
    """The account whose enrolment link has this token, while it works; else None."""
    if not token or len(token) > 128:
        return None
    today = today or datetime.now(UTC).date()
    journalist = db.scalar(select(Journalist).where(
        Journalist.enrolment_hash == enrolment_digest(token)))
    if journalist is None or journalist.enrolment_until is None or \
            journalist.enrolment_until < today:
        return None
    return journalist


def complete_enrolment(db: Session, journalist: Journalist, passphrase: str, repeated: str,
                       secret: bytes, code: str, kdf: KdfParams = PRODUCTION_KDF,
                       now: datetime | None = None) -> None:
    """Finish an enrolment: the passphrase (chosen now, typed twice; or the one kept, typed
    once) and the new two-factor `secret`, confirmed by `code`. The link stops working.

    Raises JournalistError saying what to correct. A wrong kept passphrase is counted against
    the account as a failed login would be, and that count is committed before the error
    rises. Not committed on success.
    """
    now = now or datetime.now(UTC)
    if journalist.password_hash is None:
        _check_new_passphrase(passphrase, repeated)
        step = accepted_step(secret, code, None, now)
        if step is None:
            raise JournalistError("that code does not match the new two-factor secret: check "
                                  "the entry in your authenticator app and try the next code")
        journalist.password_hash = hash_password(passphrase, kdf)
    else:
        step = checked_step(journalist, passphrase, secret, code, now)
        if step is None:
            db.commit()  # the failure counts, as at login
            raise JournalistError("the passphrase or the code is wrong (after five failures in "
                                  "a minute, wait a minute)")
    journalist.totp_secret, journalist.totp_last_step = secret, step
    journalist.enrolment_hash = journalist.enrolment_until = None
    end_sessions(db, journalist)
    record_event(db, journalist.username, "enrolled", journalist.username)


def change_passphrase(db: Session, journalist: Journalist, current: str, code: str,
                      passphrase: str, repeated: str, keep_session: str | None,
                      kdf: KdfParams = PRODUCTION_KDF, now: datetime | None = None) -> None:
    """Set a new passphrase, given the current one and a two-factor code; end every other
    session. A wrong factor counts as a failed login (committed before the error rises).
    Not committed on success."""
    _check_new_passphrase(passphrase, repeated)
    step = _checked_factors(db, journalist, current, code, now or datetime.now(UTC))
    journalist.password_hash = hash_password(passphrase, kdf)
    journalist.totp_last_step = step
    end_sessions(db, journalist, keep=keep_session)
    record_event(db, journalist.username, "passphrase", journalist.username)


def change_two_factor(db: Session, journalist: Journalist, current: str, code: str,
                      secret: bytes, new_code: str, keep_session: str | None,
                      now: datetime | None = None) -> None:
    """Replace the two-factor secret with `secret`, given the passphrase, a code from the old
    secret and one from the new; end every other session. A wrong factor counts as a failed
    login (committed before the error rises). Not committed on success."""
    now = now or datetime.now(UTC)
    _checked_factors(db, journalist, current, code, now)
    step = accepted_step(secret, new_code, None, now)
    if step is None:
        raise JournalistError("the code from the new secret does not match it: check the new "
                              "entry in your authenticator app and try its next code")
    journalist.totp_secret, journalist.totp_last_step = secret, step
    end_sessions(db, journalist, keep=keep_session)
    record_event(db, journalist.username, "two-factor", journalist.username)


def _checked_factors(db: Session, journalist: Journalist, password: str, code: str,
                     now: datetime) -> int:
    if journalist.totp_secret is None:
        raise JournalistError("this account has no two-factor secret")
    step = checked_step(journalist, password, journalist.totp_secret, code, now)
    if step is None:
        db.commit()  # the failure counts, as at login
        raise JournalistError("your current passphrase or two-factor code is wrong (after "
                              "five failures in a minute, wait a minute)")
    return step


def _check_new_passphrase(passphrase: str, repeated: str) -> None:
    check_password_rules(passphrase)
    if passphrase != repeated:
        raise JournalistError("the two new passphrases differ: type the same one twice")


def record_event(db: Session, actor: str, action: str, account: str) -> None:
    """Record that `actor` did `action` (a key of ACTIONS) to `account`, dated by the day.
    Not committed."""
    if action not in ACTIONS:
        raise ValueError(f"unknown account action {action!r}")
    db.add(AccountEvent(on=datetime.now(UTC).date(), actor=actor, action=action,
                        account=account))


def account_events(db: Session, account: str | None = None,
                   limit: int = 100) -> list[AccountEvent]:
    """The newest account events first, of one account or of all."""
    query = select(AccountEvent).order_by(AccountEvent.id.desc()).limit(limit)
    if account is not None:
        query = query.where(AccountEvent.account == account)
    return list(db.scalars(query))


def set_password(db: Session, journalist: Journalist, password: str,
                 kdf: KdfParams = PRODUCTION_KDF, actor: str = CLI_ACTOR) -> bytes | None:
    """Set a new password and end the journalist's sessions; give them a TOTP secret if they
    had none, and return it (None if they kept theirs). The server's command line only.
    Not committed."""
    journalist.password_hash = hash_password(password, kdf)
    end_sessions(db, journalist)
    record_event(db, actor, "password-set", journalist.username)
    if journalist.totp_secret is None:
        journalist.totp_secret, journalist.totp_last_step = new_totp_secret(), None
        return journalist.totp_secret
    return None


def end_sessions(db: Session, journalist: Journalist, keep: str | None = None) -> None:
    """Log the journalist out everywhere, except in the session whose row is `keep`."""
    db.execute(delete(JournalistSession)
                    .where(JournalistSession.journalist_id == journalist.id,
                           JournalistSession.id != (keep or "")))


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
