"""Journalists, the key fingerprints the desk encrypts to, and their sessions."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from desk.records.models.base import Base


class Journalist(Base):
    """A journalist account and its pinned OpenPGP key."""

    __tablename__ = "journalists"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # The desk encrypts to this exact 40-hex fingerprint, never to a user id.
    fingerprint: Mapped[str] = mapped_column(String(40), unique=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_on: Mapped[date]
    # Argon2id in PHC string form; None until a password is set.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary(20))
    # The last TOTP time step accepted, so a code works once.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_logins: Mapped[int] = mapped_column(default=0)
    failures_since: Mapped[datetime | None]
    # While a one-time enrolment link is outstanding: the SHA-256 of its token (the link itself
    # is shown once, to whoever issued it) and the last day it works, to its end (UTC). A day,
    # not an instant: the row must not date when the link was issued (docs/INVARIANTS.md, 5).
    enrolment_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    enrolment_until: Mapped[date | None]


class AccountEvent(Base):
    """Who changed a journalist account's login or key, and on which day.

    Account changes are not custody entries (those are about items and replies), but they say
    whose hands an account was in: a reset by an admin, then downloads under the account's
    name, read differently from downloads alone. Rows are never changed; they name the
    account by username, so they outlive its removal.
    """

    __tablename__ = "account_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    on: Mapped[date]
    # A username, or a fixed actor such as `desk-cli` (crypto/custody.py).
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(64), index=True)


class JournalistSession(Base):
    """A server-side session of the journalist interface; the cookie holds only a random token.

    Like a source session's, the data (with the idle deadline) is sealed under the cookie's
    token and the row keeps only the day it expires on; rows are deleted at logout, and by
    `desk purge` or the next new session once that day is over.
    """

    __tablename__ = "journalist_sessions"

    # SHA-256 of the cookie's token: a stolen database does not yield live cookies.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    journalist_id: Mapped[int | None] = mapped_column(
        ForeignKey("journalists.id", ondelete="CASCADE"), index=True)
    data: Mapped[str] = mapped_column(Text)
    # The day the idle deadline falls on; the deadline itself is sealed inside `data`.
    expires_on: Mapped[date] = mapped_column(index=True)
