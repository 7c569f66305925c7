"""Journalist authentication: Argon2id passwords, TOTP codes used once, per-account throttling.

Every way a login can fail (unknown user, wrong password, wrong or reused code, throttled)
raises the same LoginFailed, after the same work, so the answer says nothing about which: an
unknown name is checked against a stand-in hash and secret, and its failure is counted and
committed as one on an account is (one row written, one commit, so one fsync of the log), on
the desk's own row.

Two columns hold times finer than the day, because the checks need them: `totp_last_step`
(the last step a code was accepted for, so a code works once) and `failures_since` (when the
current minute of failures began). Each matters only for a short while: a step older than
the drift allows can never be typed again, and a minute that is over counts nothing. Past
that, a row that keeps them only dates a journalist's login, so `forget_expired_logins`
(run by every settle) clears them, and `authenticate` clears them on the row it touches; the
checks answer exactly as they would with the old values.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.orm import Session

from crypto.kdf import PRODUCTION_KDF, KdfParams, phc_hash, phc_verify
from desk.errors import JournalistError
from desk.records.models import Instance, Journalist

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
TOTP_STEP_SECONDS = 30
TOTP_DRIFT_STEPS = 1
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=1)
ISSUER = "desk"


class LoginFailed(Exception):
    """Login failed: check the username, password and two-factor code."""


def hash_password(password: str, params: KdfParams = PRODUCTION_KDF) -> str:
    """An Argon2id PHC string for `password`."""
    check_password_rules(password)
    return phc_hash(password.encode("utf-8"), os.urandom(16), params)


def check_password_rules(password: str) -> None:
    """Raise JournalistError unless the password is long enough to resist guessing."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise JournalistError(
            f"passwords need at least {MIN_PASSWORD_CHARS} characters; a passphrase of several "
            "random words is best")


def password_matches(password: str, encoded: str) -> bool:
    """True when `password` matches the PHC string `encoded`."""
    try:
        phc_verify(password.encode("utf-8"), encoded)
    except (InvalidKey, ValueError):
        return False
    return True


def new_totp_secret() -> bytes:
    """20 random bytes, the size RFC 4226 recommends for HMAC-SHA1."""
    return secrets.token_bytes(20)


def totp_secret_text(secret: bytes) -> str:
    """The secret in base32, as authenticator apps take it by hand."""
    return base64.b32encode(secret).decode("ascii")


def totp_uri(secret: bytes, username: str, issuer: str = ISSUER) -> str:
    """The otpauth:// URI authenticator apps take from a QR code."""
    return _totp(secret).get_provisioning_uri(username, issuer)


def totp_code(secret: bytes, at: datetime) -> str:
    """The code for `at` (tests and the demo use it)."""
    return _totp(secret).generate(int(at.timestamp())).decode("ascii")


def _totp(secret: bytes) -> TOTP:
    return TOTP(secret, 6, SHA1(), TOTP_STEP_SECONDS)  # noqa: S303 - RFC 6238 default; apps expect it


def current_step(now: datetime) -> int:
    """The TOTP time step holding `now`."""
    return int(now.timestamp()) // TOTP_STEP_SECONDS


def oldest_live_step(now: datetime) -> int:
    """The oldest step a code may still be accepted for at `now` (and at any later time): a
    used step older than this refuses nothing, so forgetting it changes no answer."""
    return current_step(now) - TOTP_DRIFT_STEPS


def accepted_step(secret: bytes, code: str, last_step: int | None, now: datetime) -> int | None:
    """The time step `code` belongs to (within one step of drift), if not already used."""
    current = current_step(now)
    totp = _totp(secret)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        expected = totp.generate(step * TOTP_STEP_SECONDS)
        # Authenticator apps show "123 456"; people type it that way.
        if hmac.compare_digest(expected, "".join(code.split()).encode("ascii", "replace")):
            return step if last_step is None or step > last_step else None
    return None


# A TOTP secret to check unknown usernames' codes against, as a known account's would be.
_STAND_IN_SECRET = secrets.token_bytes(20)


@cache
def _stand_in_hash(params: KdfParams) -> str:
    """A hash to check unknown usernames against, so they cost the same Argon2id run."""
    return hash_password(secrets.token_urlsafe(24), params)


def authenticate(db: Session, username: str, password: str, code: str,
                 kdf: KdfParams = PRODUCTION_KDF, now: datetime | None = None) -> Journalist:
    """The journalist these credentials belong to; raise LoginFailed otherwise.

    Records failures on the account (5 a minute, then every attempt fails until the minute is
    over) and the used TOTP step on success. Commits.
    """
    now = now or datetime.now(UTC)
    journalist = db.scalar(select(Journalist).where(Journalist.username == username[:64]))
    if journalist is None or journalist.password_hash is None or journalist.totp_secret is None:
        password_matches(password, _stand_in_hash(kdf))
        accepted_step(_STAND_IN_SECRET, code, None, now)
        # A failure on an account is a durable write: without one here, the missing fsync
        # would tell an unknown name from a known one by the time the answer takes.
        db.execute(update(Instance).where(Instance.id == 1).values(
            unknown_user_failures=Instance.unknown_user_failures + 1))
        db.commit()
        raise LoginFailed()
    step = checked_step(journalist, password, journalist.totp_secret, code, now)
    if step is None:
        db.commit()
        raise LoginFailed()
    journalist.totp_last_step = step
    db.commit()
    return journalist


def checked_step(journalist: Journalist, password: str, secret: bytes, code: str,
                 now: datetime) -> int | None:
    """Check `password` against the account and `code` against `secret` (the account's own
    TOTP secret, or one being enrolled), under the account's throttle; the step the code
    belongs to, or None.

    Counts a failure on the row (5 a minute, then every attempt fails until the minute is
    over) and clears the count on success; the caller records the step and commits. Every
    check the desk makes of a journalist's factors, at login or before a change to them,
    goes through here, so none of them is a way around the throttle.
    """
    last_step = journalist.totp_last_step
    if last_step is not None and last_step < oldest_live_step(now):
        journalist.totp_last_step = None  # it refuses nothing any more (oldest_live_step)
    since = journalist.failures_since.replace(tzinfo=UTC) if journalist.failures_since else None
    if since is None or now - since > FAILURE_WINDOW:
        journalist.failed_logins, journalist.failures_since = 0, now.replace(tzinfo=None)
    throttled = journalist.failed_logins >= MAX_FAILURES
    password_ok = journalist.password_hash is not None and \
        password_matches(password, journalist.password_hash)
    # A step used with the account's own secret refuses nothing for a new one.
    used = journalist.totp_last_step if secret == journalist.totp_secret else None
    step = accepted_step(secret, code, used, now)
    if throttled or not password_ok or step is None:
        journalist.failed_logins += 1
        return None
    journalist.failed_logins, journalist.failures_since = 0, None
    return step


def forget_expired_logins(db: Session, now: datetime | None = None) -> int:
    """Clear every journalist's login values that no longer change an answer: a used TOTP step
    older than `oldest_live_step`, and failures whose minute is over (`failures_since` null,
    `failed_logins` 0, as `authenticate` would reset them); and the count of failures for
    unknown names, which nothing reads. How many clearings changed a row (a row cleared of
    both counts twice). Not committed.

    What stays is at most about 90 seconds old: a step accepted within the drift, or a minute
    of failures under way.
    """
    now = now or datetime.now(UTC)
    window_start = (now - FAILURE_WINDOW).replace(tzinfo=None)
    steps = cast(CursorResult[Any], db.execute(update(Journalist)
                       .where(Journalist.totp_last_step < oldest_live_step(now))
                       .values(totp_last_step=None)
                       .execution_options(synchronize_session=False)))
    failures = cast(CursorResult[Any], db.execute(update(Journalist)
                          .where(or_(Journalist.failures_since < window_start,
                                     and_(Journalist.failures_since.is_(None),
                                          Journalist.failed_logins != 0)))
                          .values(failures_since=None, failed_logins=0)
                          .execution_options(synchronize_session=False)))
    unknown = cast(CursorResult[Any], db.execute(update(Instance)
                         .where(Instance.unknown_user_failures != 0)
                         .values(unknown_user_failures=0)
                         .execution_options(synchronize_session=False)))
    return steps.rowcount + failures.rowcount + unknown.rowcount
