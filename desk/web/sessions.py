"""Server-side sessions for both interfaces: the cookie holds a random token only.

The database keeps the token's SHA-256, the session's data sealed under a key only the token
yields, and the day the session expires on; 30 minutes without a request ends a session,
logout deletes it, and login issues a fresh token. The idle deadline to the second is kept
inside the sealed data, so the disk alone never says when anyone last used the desk; the
clear day lets `desk purge` sweep rows nobody can open any more. Keys derived from the token
(`ServerSession.cookie_key`) seal what the server must not be able to read on its own, such as
a source's reply key: the row alone cannot open it, nor can the cookie alone.

A session holds a row only once it has something to keep. The CSRF secret that every form
needs is derived from the token, never stored: a visitor who only opens pages gets a cookie
and no row, so page views cost the desk no durable write.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from flask import Flask, Request, Response, session
from flask.sessions import SessionInterface, SessionMixin
from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import CallbackDict

from crypto.errors import UnsealFailed
from crypto.sealing import derive, seal, unseal
from desk.records.models import JournalistSession, SourceSession

IDLE_TIMEOUT = timedelta(minutes=30)
# An unchanged session's expiry is pushed back at most this often: not a durable write per GET.
REFRESH_AFTER = timedelta(minutes=1)
TOKEN_BYTES = 32
# What a cookie key's purpose is prefixed with for HKDF's info (crypto/FORMAT.md).
COOKIE_KEY_INFO = b"desk session "
# The sealed data's field for the idle deadline: whole seconds since the epoch (UTC).
IDLE_FIELD = "_idle_until"
# Where Flask-WTF looks for its CSRF secret (WTF_CSRF_FIELD_NAME's default), and the purpose
# of the cookie key that is that secret.
CSRF_FIELD = "csrf_token"
CSRF_PURPOSE = "csrf"

SessionRow = type[JournalistSession] | type[SourceSession]


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """Session data, the cookie's token while this request knows it, and `rotate()`."""

    def __init__(self, data: dict[str, Any] | None = None, token: str | None = None,
                 expires_at: float | None = None, *, stored: bool = True) -> None:
        def on_update(session: ServerSession) -> None:
            session.modified = True

        super().__init__(data or {}, on_update)
        self.token = token
        # The token the request's cookie carried: a different one is sent back.
        self.cookie_token = token
        # The row this session was loaded from; None for a new one, or one with no row yet.
        self.sid = None if token is None or not stored else token_hash(token)
        self.new = token is None
        self.rotated = False
        self.modified = False
        # The idle deadline, in seconds since the epoch; it lives only in the sealed data.
        self.expires_at = expires_at
        if token is not None:
            self._derive_csrf()

    def __setitem__(self, key: str, value: Any) -> None:
        """Set `key`; Flask-WTF's CSRF secret is derived from the token whatever it offers."""
        if key == CSRF_FIELD:
            self._derive_csrf()
            return
        super().__setitem__(key, value)

    def _derive_csrf(self) -> None:
        # Not a change to store: it is the same for as long as the token is (making a token
        # for a new session marks it modified, so that the cookie is sent).
        dict.__setitem__(self, CSRF_FIELD, self.cookie_key(CSRF_PURPOSE).hex())

    @property
    def key(self) -> str:
        """What tells this session from others while it lasts (its token's hash), whether or
        not it has a row; empty before it has a token."""
        return "" if self.token is None else token_hash(self.token)

    def stored(self) -> dict[str, Any]:
        """What the row must keep: everything but what the token derives."""
        return {name: value for name, value in self.items() if name != CSRF_FIELD}

    def rotate(self) -> None:
        """Drop the old token and issue a new one (at login), keeping nothing sealed under
        the old one usable."""
        self.rotated = True
        self.modified = True
        self.token = None
        self.pop(CSRF_FIELD, None)  # derived from the old token: a form needs a new one

    def cookie_key(self, purpose: str) -> bytes:
        """A 32-byte key derived from the cookie's token for `purpose`; makes the token now
        for a session that has none yet. The server never stores it."""
        if self.token is None:
            self.token = secrets.token_urlsafe(TOKEN_BYTES)
            self.modified = True
        return derive(self.token.encode("ascii"), COOKIE_KEY_INFO + purpose.encode("ascii"))


def server_session() -> ServerSession:
    """This request's session, typed: both interfaces keep theirs as a ServerSession."""
    current = session
    if not isinstance(current, ServerSession):  # pragma: no cover - the app installs them
        raise TypeError("not a server-side session")
    return current


def token_hash(token: str) -> str:
    """What the database keeps of a session token."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def _now() -> float:
    return time.time()


def _day(moment: float) -> date:
    return datetime.fromtimestamp(moment, UTC).date()


DATA_PURPOSE = "data"


def seal_data(session: ServerSession, plaintext: str) -> str:
    """Session data encrypted under a key only the cookie's token yields (AES-256-GCM, the
    row id as associated data), as base64."""
    sealed = seal(session.cookie_key(DATA_PURPOSE), plaintext.encode("utf-8"),
                  (session.sid or "").encode("ascii"))
    return base64.b64encode(sealed).decode("ascii")


def unseal_data(session: ServerSession, stored: str) -> dict[str, Any] | None:
    """What seal_data sealed, or None if this token does not open it."""
    try:
        plaintext = unseal(session.cookie_key(DATA_PURPOSE),
                           base64.b64decode(stored, validate=True),
                           (session.sid or "").encode("ascii"))
        data = json.loads(plaintext.decode("utf-8"))
    except (UnsealFailed, ValueError):  # ValueError: not base64, UTF-8 or JSON
        return None
    return data if isinstance(data, dict) else None


class DatabaseSessionInterface(SessionInterface):
    """Flask sessions stored as rows of `model` (journalist or source sessions).

    The row's data, with the idle deadline, is encrypted under the cookie's token. `owner` is
    the session key whose value also goes in the row's owner column (`journalist_id`), so
    deleting an account ends its sessions; without one the owner column stays empty, and a
    source session's row shows only that some session exists, not whose it is or what it
    holds.
    """

    def __init__(self, model: SessionRow, owner: str | None, sessions: sessionmaker[Session],
                 writers: sessionmaker[Session], idle_timeout: timedelta = IDLE_TIMEOUT
                 ) -> None:
        self.model = model
        self.owner = owner
        self._sessions = sessions
        self._writers = writers
        self.idle_timeout = idle_timeout

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        """Load the session the cookie's token names, if it exists and has not expired."""
        token = request.cookies.get(self.get_cookie_name(app))
        if not token or len(token) >= 128 or not token.isascii():
            return ServerSession()
        with self._sessions() as db:
            row = cast("JournalistSession | SourceSession | None",
                       db.get(self.model, token_hash(token)))
            if row is not None and row.expires_on >= _day(_now()):
                loaded = ServerSession(None, token)
                data = unseal_data(loaded, row.data)
                deadline = None if data is None else data.pop(IDLE_FIELD, None)
                if isinstance(deadline, int) and deadline > _now():
                    data = cast("dict[str, Any]", data)
                    data.pop(CSRF_FIELD, None)  # a row written before it was derived
                    loaded.expires_at = float(deadline)
                    loaded.update(data)
                    loaded.modified = False
                    return loaded
        if row is not None:
            return ServerSession()  # ended: a new token, not this one
        # A cookie with no row: a visitor who has only opened pages. Its token still derives
        # the CSRF secret of the forms it was shown.
        return ServerSession(None, token, stored=False)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Store the session and extend its life, or delete it once it is empty."""
        if not isinstance(session, ServerSession):  # pragma: no cover - open_session made it
            raise TypeError("not a server-side session")
        now, model = _now(), self.model
        idle = self.idle_timeout.total_seconds()
        fresh = session.expires_at is not None and \
            session.expires_at - now > idle - REFRESH_AFTER.total_seconds()
        if session.sid is not None and not session.modified and fresh:
            return
        stored = session.stored()
        if session.sid is None and not stored:
            # Nothing to keep: no row and no write (a page view, or a form shown), only the
            # cookie whose token derives the form's CSRF secret.
            self._send_cookie(app, session, response)
            return
        with self._writers() as db:
            if session.sid is not None and (session.rotated or not stored):
                db.execute(delete(model).where(model.id == session.sid))
                session.sid = None
            if not stored:
                db.commit()
                self._send_cookie(app, session, response)
                return
            issued = session.sid is None
            if issued:
                if session.token is None:
                    session.token = secrets.token_urlsafe(TOKEN_BYTES)
                session.sid = token_hash(session.token)
                # New rows are rarer than page views; sweep expired ones then, not on every
                # request.
                db.execute(delete(model).where(model.expires_on < _day(now)))
            deadline = int(now + idle) + 1
            session.expires_at = float(deadline)
            data = json.dumps({**stored, IDLE_FIELD: deadline})
            values: dict[str, Any] = {"data": seal_data(session, data),
                                      "expires_on": _day(deadline)}
            if self.owner is not None:
                values[self.owner] = session.get(self.owner)
            if issued:
                db.add(model(id=session.sid, **values))
            else:
                # Only ever update: a request that loaded the session before a logout in
                # another tab must not write the deleted row back.
                db.execute(update(model).where(model.id == session.sid).values(**values))
            db.commit()
        self._send_cookie(app, session, response)

    def _send_cookie(self, app: Flask, session: ServerSession, response: Response) -> None:
        """Send the session's token if the request did not carry it, or drop the cookie of a
        session that has ended without a new token."""
        if session.token == session.cookie_token:
            return
        name = self.get_cookie_name(app)
        if session.token is None:
            response.delete_cookie(name, path="/", httponly=True, samesite="Strict")
            return
        response.set_cookie(name, session.token, httponly=True, samesite="Strict",
                            path="/", secure=app.config["SESSION_COOKIE_SECURE"])


def sweep_expired(db: Session) -> int:
    """Delete the session rows of both interfaces that expired on an earlier day (each has
    run out by the end of its `expires_on`); not committed."""
    today, removed = _day(_now()), 0
    for model in (JournalistSession, SourceSession):
        result = db.execute(delete(model).where(model.expires_on < today))
        removed += getattr(result, "rowcount", 0) or 0
    return removed
