"""Server-side sessions for the journalist interface: the cookie holds a random token only.

The database keeps the token's SHA-256, the session's data and when it expires; inactivity
ends a session, logout deletes it, and login issues a fresh token.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import CallbackDict

from desk.models import JournalistSession

IDLE_TIMEOUT = timedelta(minutes=30)
# An unchanged session's expiry is pushed back at most this often: not a durable write per GET.
REFRESH_AFTER = timedelta(minutes=1)


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """Session data with the hash of its token; `rotate()` asks for a new token."""

    def __init__(self, data: dict[str, Any] | None = None, sid: str | None = None,
                 expires_at: datetime | None = None) -> None:
        def on_update(session: ServerSession) -> None:
            session.modified = True

        super().__init__(data or {}, on_update)
        self.sid = sid
        self.new = sid is None
        self.rotated = False
        self.modified = False
        self.expires_at = expires_at

    def rotate(self) -> None:
        """Drop the old token and issue a new one when the response is sent (at login)."""
        self.rotated = True
        self.modified = True


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class DatabaseSessionInterface(SessionInterface):
    """Flask sessions stored as JournalistSession rows."""

    def __init__(self, sessions: sessionmaker[Session], writers: sessionmaker[Session],
                 idle_timeout: timedelta = IDLE_TIMEOUT) -> None:
        self._sessions = sessions
        self._writers = writers
        self.idle_timeout = idle_timeout

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        """Load the session the cookie's token names, if it exists and has not expired."""
        token = request.cookies.get(self.get_cookie_name(app))
        if token:
            with self._sessions() as db:
                row = db.get(JournalistSession, _hash(token))
                if row is not None and row.expires_at > _now():
                    return ServerSession(json.loads(row.data), row.id, row.expires_at)
        return ServerSession()

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Store the session and extend its life, or delete it once it is empty."""
        if not isinstance(session, ServerSession):  # pragma: no cover - open_session made it
            raise TypeError("not a server-side session")
        name, now = self.get_cookie_name(app), _now()
        fresh = session.expires_at is not None and \
            session.expires_at - now > self.idle_timeout - REFRESH_AFTER
        if session.sid is not None and not session.modified and fresh:
            return
        with self._writers() as db:
            if session.sid is not None and (session.rotated or not session):
                db.execute(delete(JournalistSession).where(JournalistSession.id == session.sid))
                session.sid = None
            if not session:
                db.commit()
                if not session.new:
                    response.delete_cookie(name, path="/", httponly=True, samesite="Strict")
                return
            token = None
            if session.sid is None:
                token = secrets.token_urlsafe(32)
                session.sid = _hash(token)
                # New sessions are rare; sweep expired ones then, not on every request.
                db.execute(delete(JournalistSession).where(JournalistSession.expires_at < now))
            db.merge(JournalistSession(
                id=session.sid, journalist_id=session.get("journalist_id"),
                data=json.dumps(dict(session)), expires_at=now + self.idle_timeout))
            db.commit()
        if token is not None:
            response.set_cookie(name, token, httponly=True, samesite="Strict", path="/",
                                secure=app.config["SESSION_COOKIE_SECURE"])
