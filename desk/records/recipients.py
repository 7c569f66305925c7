"""Which pinned journalist keys the desk encrypts to right now."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crypto.gpg import GnuPG
from crypto.keys import EXPIRY_WARNING, KeyInfo, key_problems
from desk.records.models import Journalist

# Keys change rarely (a CLI command, an expiry); re-reading them costs a gpg run per request.
CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class KeyStatus:
    """A journalist's pinned key and whether the desk can encrypt to it."""

    username: str
    fingerprint: str
    key: KeyInfo | None
    problems: tuple[str, ...]
    expires: datetime | None
    warning: str | None

    @property
    def usable(self) -> bool:
        """True when the desk encrypts to this key."""
        return not self.problems


def key_statuses(db: Session, gpg: GnuPG, now: datetime | None = None) -> list[KeyStatus]:
    """The status of every journalist's pinned key at `now`."""
    now = now or datetime.now(UTC)
    keys = {key.fingerprint: key for key in gpg.list_keys()}
    statuses = []
    for journalist in db.scalars(select(Journalist).order_by(Journalist.username)):
        key = keys.get(journalist.fingerprint)
        problems = ("the key is missing from the desk's keyring",) if key is None \
            else tuple(key_problems(key, now))
        expires = None if key is None else key.encrypts_until(now)
        warning = None
        if not problems and expires is not None and expires - now <= EXPIRY_WARNING:
            warning = f"expires in {(expires - now).days} days: ask for an extended key"
        statuses.append(KeyStatus(journalist.username, journalist.fingerprint, key, problems,
                                  expires, warning))
    return statuses


class Recipients:
    """The fingerprints to encrypt to, cached briefly and re-checked against the clock."""

    def __init__(self, gpg: GnuPG, sessions: sessionmaker[Session]) -> None:
        self._gpg = gpg
        self._sessions = sessions
        self._lock = threading.Lock()
        self._statuses: list[KeyStatus] = []
        self._read_at = float("-inf")

    def current(self) -> list[str]:
        """Fingerprints of every pinned key that passes policy now; empty means refuse uploads."""
        with self._lock:
            if time.monotonic() - self._read_at > CACHE_SECONDS:
                with self._sessions() as db:
                    self._statuses = key_statuses(db, self._gpg)
                self._read_at = time.monotonic()
            statuses = self._statuses
        now = datetime.now(UTC)
        # A cached key may have expired since it was read: check the clock on every call.
        return [s.fingerprint for s in statuses
                if s.usable and (s.expires is None or s.expires > now)]

    def invalidate(self) -> None:
        """Forget the cache, e.g. after a key was added."""
        with self._lock:
            self._read_at = float("-inf")
