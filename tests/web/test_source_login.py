"""Codename login at the source interface, and the session it starts.

A login costs one Argon2id derivation whatever the number of sources (two when the codename
matches), answers every codename that is not one in the same words, caps its input before
deriving anything, and is throttled for the whole desk and for each session. The session
cookie holds a random token only; the reply key it unlocks is sealed in the session row, so
neither the server's disk nor the cookie alone can open a source's replies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, request
from flask.testing import FlaskClient
from sqlalchemy import insert, select, update
from werkzeug.test import TestResponse

import crypto.kdf
from crypto.codename import MAX_CODENAME_CHARS, Codename, generate_passphrase, wordlist
from crypto.errors import FormatError
from crypto.reply import key_from_seed, reply_seed, reply_text
from desk.app import create_app
from desk.outbound.replies import ReplyTarget, write_web_reply
from desk.records.designations import random_designation
from desk.records.instance import load_instance
from desk.records.models import Item, Reply, Source, SourceSession
from desk.services import Services, open_services
from desk.web.sessions import IDLE_TIMEOUT, REFRESH_AFTER
from desk.web.source import login as auth
from desk.web.source.views import GENERATE_THROTTLE, THROTTLE
from desk.web.throttle import Limits, LoginThrottle
from tests.harness.desks import CHEAP_KDF, find_markers
from tests.harness.forms import CSRF_RE, csrf_token
from tests.harness.web import SourceBrowser, set_idle_deadline, source_log_in, source_log_out

COOKIE = "desk_source"
NOT_RECOGNISED = "That codename was not recognised"
TOO_MANY = "Too many attempts right now"
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
REPLY_TEXT = "SLR-7f3a-marker: can you send the uncut file?"


# --- Counting Argon2id derivations -------------------------------------------------------------


@dataclass
class Derivations:
    """What the login code asked Argon2id for, as seen through wrappers."""

    lookups: list[str] = field(default_factory=list)  # codename text given to lookup_id
    seeds: list[str] = field(default_factory=list)  # codename text given to reply_seed
    argon2: int = 0  # every Argon2id derivation in crypto/, whatever called it

    def snapshot(self) -> tuple[int, int, int]:
        """(lookup ids, reply seeds, all Argon2id derivations) so far."""
        return len(self.lookups), len(self.seeds), self.argon2

    def since(self, before: tuple[int, int, int]) -> tuple[int, int, int]:
        """The derivations run since `before` was taken."""
        lookups, seeds, argon2 = before
        return len(self.lookups) - lookups, len(self.seeds) - seeds, self.argon2 - argon2


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> Derivations:
    """Count the derivations the source views run, delegating each to the real function."""
    seen = Derivations()
    real_lookup, real_seed = auth.lookup_id, auth.reply_seed

    def counting_lookup(codename: Codename, *args: Any, **kwargs: Any) -> str:
        seen.lookups.append(codename.reveal())
        return real_lookup(codename, *args, **kwargs)

    def counting_seed(codename: Codename, *args: Any, **kwargs: Any) -> bytes:
        seen.seeds.append(codename.reveal())
        return real_seed(codename, *args, **kwargs)

    class CountingArgon2id:
        """Argon2id that counts its derivations: catches any derivation the wrappers miss."""

        def __init__(self, **kwargs: Any) -> None:
            self._kdf = Argon2id(**kwargs)

        def derive(self, data: bytes) -> bytes:
            seen.argon2 += 1
            return self._kdf.derive(data)

    monkeypatch.setattr(auth, "lookup_id", counting_lookup)
    monkeypatch.setattr(auth, "reply_seed", counting_seed)
    monkeypatch.setattr(crypto.kdf, "Argon2id", CountingArgon2id)
    return seen


# --- Walking a source through the login ---------------------------------------------------------


def log_in_fresh(app: Flask, codename: str) -> tuple[FlaskClient, TestResponse]:
    """A new browser (its own session) that tries `codename`."""
    client = app.test_client()
    return client, source_log_in(client, codename)


def masked(html: str) -> str:
    """A page with its CSRF token value blanked: the one part meant to differ per session."""
    return CSRF_RE.sub('name="csrf_token" value="*"', html)


def cookie_token(client: FlaskClient) -> str | None:
    """The value of the source session cookie, if the browser has one."""
    cookie = client.get_cookie(COOKIE)
    return None if cookie is None else cookie.value


def row_id(token: str) -> str:
    """The key of the session row a cookie token names: its SHA-256."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def session_row(desk: Services, token: str) -> SourceSession | None:
    """The session row that `token` names, looked up the way the desk does."""
    with desk.sessions() as db:
        return db.get(SourceSession, row_id(token))


def set_expiry(desk: Services, token: str, expires_at: datetime) -> None:
    """Move the idle deadline of the session `token` names (naive UTC)."""
    set_idle_deadline(desk, SourceSession, token, expires_at.replace(tzinfo=UTC).timestamp())


def utc_now() -> datetime:
    """Now, as the session rows store it (naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def only_source(desk: Services) -> Source:
    """The one source of the desk."""
    with desk.sessions() as db:
        return db.scalars(select(Source)).one()


def is_logged_out(response: TestResponse) -> bool:
    """True if the submit page sent this browser back to the landing page."""
    return response.status_code == 302 and response.headers["Location"] == "/"


def returning_source(app: Flask, source: SourceBrowser) -> FlaskClient:
    """The source leaves the browser that made the codename and logs in from a new one."""
    assert source.codename is not None
    assert source_log_out(source.client).status_code == 302
    client, answer = log_in_fresh(app, source.codename)
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/submit"
    return client


def send_reply(desk: Services, source_id: str, text: str) -> str:
    """A journalist's web reply to the source; returns the reply id."""
    with desk.sessions() as db:
        row = db.get(Source, source_id)
        assert row is not None
        target = ReplyTarget.of(row)
    return write_web_reply(desk, target, text, "alice").id


def hkdf(material: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 to 32 bytes with no salt, as desk/web/sessions.py derives cookie keys."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


def session_data(token: str, row: SourceSession) -> dict[str, Any]:
    """A source session row's data, opened with the cookie's token as desk/web/sessions.py seals it
    (AES-256-GCM under HKDF(token, "desk session data"), the row id as associated data)."""
    blob = base64.b64decode(row.data)
    key = hkdf(token.encode("ascii"), b"desk session data")
    data: dict[str, Any] = json.loads(AESGCM(key).decrypt(blob[:12], blob[12:],
                                                          row.id.encode("ascii")))
    return data


def unseal(key: bytes, sealed: bytes) -> bytes:
    """Open a sealed reply-key seed (nonce, then AES-256-GCM ciphertext) with `key`."""
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], auth.SEAL_AAD)


# --- 1. What a login costs -------------------------------------------------------------------


def add_sources(desk: Services, count: int) -> None:
    """Insert `count` sources with random lookup ids and designations, no derivation needed."""
    if count == 0:
        return
    today = datetime.now(UTC).date()
    rows = [{"id": secrets.token_hex(16), "lookup_id": secrets.token_hex(32),
             "designation": f"{random_designation()} {n}", "created_on": today,
             "last_activity_on": today} for n in range(count)]
    with desk.writers() as db:
        db.execute(insert(Source), rows)
        db.commit()


@pytest.mark.parametrize("sources", [1, 2000])
def test_login_costs_one_derivation_whatever_the_number_of_sources(
        app: Flask, desk: Services, source: SourceBrowser, derivations: Derivations,
        sources: int) -> None:
    assert source.codename is not None
    add_sources(desk, sources - 1)
    with desk.sessions() as db:
        assert len(db.scalars(select(Source.id)).all()) == sources

    before = derivations.snapshot()
    _client, wrong = log_in_fresh(app, generate_passphrase())
    assert wrong.status_code == 401
    assert derivations.since(before) == (1, 0, 1)

    before = derivations.snapshot()
    _client, right = log_in_fresh(app, source.codename)
    assert right.status_code == 302
    assert derivations.since(before) == (1, 1, 2)


def test_derivations_run_one_at_a_time_under_concurrent_logins(
        app: Flask, source: SourceBrowser, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two multi-lane Argon2id derivations at once in one process never return (crypto/kdf.py);
    six logins at once must still run them one by one, and all be answered."""
    lock, running, peak = threading.Lock(), [0], [0]

    class WatchedArgon2id:
        def __init__(self, **kwargs: Any) -> None:
            self._kdf = Argon2id(**kwargs)

        def derive(self, data: bytes) -> bytes:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            try:
                time.sleep(0.05)  # long enough for a second one to start, were it allowed
                return self._kdf.derive(data)
            finally:
                with lock:
                    running[0] -= 1

    monkeypatch.setattr(crypto.kdf, "Argon2id", WatchedArgon2id)
    logins = 6
    start = threading.Barrier(logins)

    def attempt() -> int:
        client = app.test_client()
        token = csrf_token(client.get("/login").text)
        start.wait(timeout=30)
        answer = client.post("/login", data={"csrf_token": token,
                                             "codename": generate_passphrase()})
        return answer.status_code

    with ThreadPoolExecutor(logins) as pool:
        answers = list(pool.map(lambda _n: attempt(), range(logins)))
    assert answers == [401] * logins
    assert peak[0] == 1


def test_login_derives_with_no_database_lock_held(
        app: Flask, desk: Services, source: SourceBrowser,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert source.codename is not None
    database = desk.config.data_dir / "desk.db"
    writable: list[bool] = []

    def can_write() -> bool:
        # Another process's writer, not willing to wait: fails if the login holds the lock.
        other = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            other.close()

    def watching(derive: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            writable.append(can_write())
            return derive(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(auth, "lookup_id", watching(auth.lookup_id))
    monkeypatch.setattr(auth, "reply_seed", watching(auth.reply_seed))
    _client, answer = log_in_fresh(app, source.codename)
    assert answer.status_code == 302
    assert writable == [True, True]


def test_login_gives_a_source_from_before_replies_its_reply_key(
        app: Flask, desk: Services, source: SourceBrowser) -> None:
    assert source.codename is not None
    row = only_source(desk)
    with desk.writers() as db:
        db.execute(update(Source).where(Source.id == row.id).values(reply_public_key=None))
        db.commit()
    client = returning_source(app, source)
    with desk.sessions() as db:
        salt = load_instance(db).reply_salt
    expected = key_from_seed(reply_seed(Codename(source.codename), salt, CHEAP_KDF))[1]
    assert only_source(desk).reply_public_key == expected
    send_reply(desk, row.id, REPLY_TEXT)
    assert REPLY_TEXT in client.get("/submit").text


# --- 2. Every codename that is not one gets the same answer -------------------------------------


def one_word_changed(codename: str) -> str:
    """The codename with its fourth word replaced by another EFF word."""
    words = codename.split()
    words[3] = next(w for w in wordlist() if w != words[3])
    return " ".join(words)


def one_word_missing(codename: str) -> str:
    """The codename without its last word."""
    return " ".join(codename.split()[:-1])


def one_word_more(codename: str) -> str:
    """The codename with an eighth word."""
    return codename + " " + wordlist()[0]


def comparable_headers(response: TestResponse) -> list[tuple[str, str]]:
    """A response's headers, less those that differ with the clock or the session."""
    return sorted((k, v) for k, v in response.headers.items()
                  if k not in ("Date", "Content-Length", "Set-Cookie"))


WRONG_CODENAMES: dict[str, Callable[[str], str]] = {
    "seven words never issued": lambda _codename: generate_passphrase(),
    "one word changed": one_word_changed,
    "one word missing": one_word_missing,
    "one word more": one_word_more,
    "garbage": lambda _codename: "<b>x</b> ' OR 1=1 -- \u202e\u0000 \U0001f600",
    "only spaces": lambda _codename: "   \t ",
}


@pytest.mark.parametrize("variant", list(WRONG_CODENAMES))
def test_wrong_and_unknown_codename_look_the_same(
        app: Flask, source: SourceBrowser, variant: str) -> None:
    assert source.codename is not None
    typed = WRONG_CODENAMES[variant](source.codename)
    assert Codename(typed).reveal() != source.codename
    _client, unknown = log_in_fresh(app, generate_passphrase())
    _client, answer = log_in_fresh(app, typed)
    assert unknown.status_code == 401
    assert answer.status_code == unknown.status_code
    assert NOT_RECOGNISED in answer.text
    assert masked(answer.text) == masked(unknown.text)
    assert comparable_headers(answer) == comparable_headers(unknown)
    # The page never echoes what was typed.
    if typed.strip():
        assert typed not in answer.text


@pytest.mark.parametrize("retype", [
    str.upper,
    str.title,
    lambda codename: "  " + codename.replace(" ", "   ") + "  ",
    lambda codename: "\t" + codename.replace(" ", "\n").upper() + "\r\n",
], ids=["upper case", "title case", "extra spaces", "tabs and newlines"])
def test_codename_logs_in_whatever_its_case_and_spacing(
        app: Flask, desk: Services, source: SourceBrowser, retype: Callable[[str], str]) -> None:
    assert source.codename is not None
    client, answer = log_in_fresh(app, retype(source.codename))
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/submit"
    token = cookie_token(client) or ""
    row = session_row(desk, token)
    assert row is not None
    assert row.source_id is None  # whose session it is, only the cookie can tell
    assert session_data(token, row)["source_id"] == only_source(desk).id


# --- 3. Input is capped before any derivation ---------------------------------------------------


@pytest.mark.parametrize("typed", [
    "a" * 1_000_000,
    "abandon " * 125_000,
    "é" * 1_000_000,
], ids=["one long word", "many words", "multibyte"])
def test_a_huge_codename_is_cut_before_derivation(
        app: Flask, source: SourceBrowser, derivations: Derivations, typed: str) -> None:
    _client, unknown = log_in_fresh(app, generate_passphrase())
    before = derivations.snapshot()
    _client, huge = log_in_fresh(app, typed)
    assert huge.status_code == 401
    assert masked(huge.text) == masked(unknown.text)
    assert derivations.since(before) == (1, 0, 1)
    assert len(derivations.lookups[-1]) <= MAX_CODENAME_CHARS
    assert derivations.lookups[-1] == Codename(typed[:MAX_CODENAME_CHARS]).reveal()


# --- 4. Throttling ------------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass."""
        self.now += seconds


def install_throttle(app: Flask, limits: Limits, which: str = THROTTLE) -> FakeClock:
    """Replace one of the app's throttles with one of `limits` on a fake clock."""
    clock = FakeClock()
    app.extensions[which] = LoginThrottle(limits, clock=clock)
    return clock


def test_desk_throttle_stops_many_sessions_without_deriving(
        app: Flask, source: SourceBrowser, derivations: Derivations) -> None:
    assert source.codename is not None
    clock = install_throttle(app, Limits(desk_capacity=3, desk_per_second=0.5,
                                         session_capacity=5, session_per_second=1))
    answers = [log_in_fresh(app, generate_passphrase())[1].status_code for _ in range(3)]
    assert answers == [401, 401, 401]
    spent = derivations.snapshot()

    _client, throttled = log_in_fresh(app, source.codename)
    assert throttled.status_code == 429
    assert TOO_MANY in throttled.text
    assert derivations.since(spent) == (0, 0, 0)

    # Two seconds refill one token: the desk lets one more login through, then none.
    clock.advance(2)
    _client, again = log_in_fresh(app, source.codename)
    assert again.status_code == 302
    _client, next_one = log_in_fresh(app, generate_passphrase())
    assert next_one.status_code == 429


def test_new_codenames_are_throttled_in_buckets_of_their_own(
        app: Flask, desk: Services, derivations: Derivations) -> None:
    install_throttle(app, Limits(desk_capacity=2, desk_per_second=0.001,
                                 session_capacity=5, session_per_second=1), GENERATE_THROTTLE)
    answers = []
    for _ in range(3):
        client = app.test_client()
        token = csrf_token(client.get("/").text)
        answers.append(client.post("/generate", data={"csrf_token": token}))
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert TOO_MANY in answers[2].text
    with desk.sessions() as session:
        assert len(session.scalars(select(Source)).all()) == 2


def test_guessing_codenames_does_not_stop_new_sources(
        app: Flask, desk: Services, derivations: Derivations) -> None:
    install_throttle(app, Limits(desk_capacity=1, desk_per_second=0.001))
    assert log_in_fresh(app, generate_passphrase())[1].status_code == 401
    assert log_in_fresh(app, generate_passphrase())[1].status_code == 429
    newcomer = app.test_client()
    token = csrf_token(newcomer.get("/").text)
    assert newcomer.post("/generate", data={"csrf_token": token}).status_code == 200


def test_one_guessing_session_does_not_lock_out_other_sources(
        app: Flask, source: SourceBrowser, derivations: Derivations) -> None:
    assert source.codename is not None
    clock = install_throttle(app, Limits(desk_capacity=5, desk_per_second=0.001,
                                         session_capacity=2, session_per_second=0.01))
    guesser = app.test_client()
    answers = [source_log_in(guesser, generate_passphrase()).status_code for _ in range(2)]
    assert answers == [401, 401]
    spent = derivations.snapshot()
    # Over its own limit the guessing session is refused even the right codename, and its
    # refused attempts spend none of the desk's tokens: three of five are left.
    refused = [source_log_in(guesser, source.codename).status_code for _ in range(10)]
    assert refused == [429] * 10
    assert derivations.since(spent) == (0, 0, 0)

    _other, answer = log_in_fresh(app, source.codename)
    assert answer.status_code == 302
    _third, answer = log_in_fresh(app, generate_passphrase())
    assert answer.status_code == 401

    # The guessing session's own bucket refills with time, and the desk's last token is its.
    clock.advance(100)
    assert source_log_in(guesser, generate_passphrase()).status_code == 401


# --- 5. Sessions --------------------------------------------------------------------------------


def test_cookie_holds_only_a_random_token(
        app: Flask, desk: Services, source: SourceBrowser) -> None:
    assert source.codename is not None
    assert source_log_out(source.client).status_code == 302
    client, answer = log_in_fresh(app, source.codename)
    assert answer.status_code == 302
    token = cookie_token(client)
    assert token is not None
    assert TOKEN_RE.fullmatch(token)
    # Script cannot read it, and no other site's page can make the browser send it.
    attributes = [part.strip().lower() for part in answer.headers["Set-Cookie"].split(";")]
    assert attributes[0] == f"{COOKIE}={token}".lower()
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/" in attributes
    row = only_source(desk)
    for secret in (source.codename, *source.codename.split(), row.id, row.lookup_id,
                   row.designation):
        assert secret not in token
    with desk.sessions() as db:
        stored = db.get(SourceSession, hashlib.sha256(token.encode()).hexdigest())
        others = db.scalars(select(SourceSession).where(SourceSession.source_id.is_not(None)))
        assert list(others) == []
    assert stored is not None
    # The row's data is sealed under the token: no codename, no source id, no language.
    assert source.codename not in stored.data
    assert row.id not in stored.data
    assert "source_id" not in stored.data
    # The database keeps the token's hash, never the token.
    assert find_markers([token.encode()], desk.config.data_dir) == []


def test_login_issues_a_new_token_so_a_planted_one_gets_nothing(
        app: Flask, desk: Services, source: SourceBrowser) -> None:
    assert source.codename is not None
    attacker = app.test_client()
    attacker.get("/login")
    planted = cookie_token(attacker)
    assert planted is not None
    assert session_row(desk, planted) is None  # a page view keeps no row, only the cookie

    victim = app.test_client()
    victim.set_cookie(COOKIE, planted)
    assert source_log_in(victim, source.codename).status_code == 302
    issued = cookie_token(victim)
    assert issued is not None
    assert issued != planted
    assert session_row(desk, planted) is None
    assert victim.get("/submit").status_code == 200
    assert is_logged_out(attacker.get("/submit"))


def test_logout_deletes_the_session_row_and_the_cookie(
        app: Flask, desk: Services, source: SourceBrowser) -> None:
    client = returning_source(app, source)
    token = cookie_token(client)
    assert token is not None
    assert session_row(desk, token) is not None

    assert source_log_out(client).status_code == 302
    assert session_row(desk, token) is None
    assert cookie_token(client) is None
    replayed = app.test_client()
    replayed.set_cookie(COOKIE, token)
    assert is_logged_out(replayed.get("/submit"))


def test_expired_session_is_not_honoured(
        app: Flask, desk: Services, source: SourceBrowser) -> None:
    client = returning_source(app, source)
    token = cookie_token(client)
    assert token is not None
    assert client.get("/submit").status_code == 200
    set_expiry(desk, token, utc_now() - timedelta(seconds=1))
    assert is_logged_out(client.get("/submit"))
    # Idle 30 minutes logs out; the row keeps only the day, and goes once that day is over.
    row = session_row(desk, token)
    assert row is not None
    assert row.expires_on == datetime.now(UTC).date()
    set_expiry(desk, token, utc_now() - timedelta(days=1))
    assert source.codename is not None
    # The next session that keeps a row (a login) sweeps it away.
    assert log_in_fresh(app, source.codename)[1].status_code == 302
    assert session_row(desk, token) is None


def test_logout_is_not_undone_by_a_request_already_in_flight(
        app: Flask, desk: Services, source: SourceBrowser) -> None:
    client = returning_source(app, source)
    token = cookie_token(client)
    assert token is not None
    # The browser's last request was two minutes ago, so its next one refreshes the expiry.
    set_expiry(desk, token, utc_now() + IDLE_TIMEOUT - 2 * REFRESH_AFTER)
    # A long upload from another tab opened the session before the source pressed "Log out"...
    with app.test_request_context("/submit", headers={"Cookie": f"{COOKIE}={token}"}):
        in_flight = app.session_interface.open_session(app, request)
    assert in_flight is not None
    assert in_flight.get("source_id") == only_source(desk).id
    assert source_log_out(client).status_code == 302
    assert session_row(desk, token) is None
    # ...and ends after it.
    with app.test_request_context("/submit"):
        app.session_interface.save_session(app, in_flight, app.response_class())
    assert session_row(desk, token) is None
    replayed = app.test_client()
    replayed.set_cookie(COOKIE, token)
    assert is_logged_out(replayed.get("/submit"))


# --- 6. Neither the disk nor the cookie alone opens a reply -------------------------------------

@dataclass(frozen=True)
class RepliedSource:
    """A source logged in with its codename, a web reply waiting, and what each side holds."""

    client: FlaskClient
    codename: str
    seed: bytes  # the true 96-byte reply key seed, computed by the test from the codename
    token: str  # the cookie
    session_id: str  # the session row's key
    sealed: bytes  # the sealed seed from the session row
    box: bytes  # the reply box in the store


@pytest.fixture
def replied(app: Flask, desk: Services, source: SourceBrowser) -> RepliedSource:
    """The source logs in again from a new browser and a journalist replies to it."""
    assert source.codename is not None
    client = returning_source(app, source)
    row = only_source(desk)
    reply_id = send_reply(desk, row.id, REPLY_TEXT)
    with desk.sessions() as db:
        salt = load_instance(db).reply_salt
    seed = reply_seed(Codename(source.codename), salt, CHEAP_KDF)
    # This is the seed of the key the desk seals replies to.
    assert key_from_seed(seed)[1] == row.reply_public_key
    token = cookie_token(client)
    assert token is not None
    stored = session_row(desk, token)
    assert stored is not None
    sealed = base64.b64decode(session_data(token, stored)[auth.SEALED_FIELD])
    box = (desk.store.reply_path(reply_id) / "box").read_bytes()
    return RepliedSource(client, source.codename, seed, token, stored.id, sealed, box)


def test_cookie_and_session_row_together_open_the_reply(
        desk: Services, replied: RepliedSource) -> None:
    assert REPLY_TEXT in replied.client.get("/submit").text
    key = hkdf(replied.token.encode("ascii"), b"desk session " + auth.SEAL_PURPOSE.encode())
    seed = unseal(key, replied.sealed)
    assert seed == replied.seed
    assert reply_text(key_from_seed(seed)[0].open(replied.box)) == REPLY_TEXT


def test_disk_alone_cannot_open_the_reply(desk: Services, replied: RepliedSource) -> None:
    seed, codename = replied.seed, replied.codename
    markers = [seed, seed[:64], seed[64:], seed.hex().encode(), base64.b64encode(seed),
               codename.encode(), replied.token.encode()]
    assert find_markers(markers, desk.config.data_dir) == []

    # Keys a thief could make from the disk do not unseal the seed.
    secret_key = desk.config.secret_key_file.read_text().strip()
    info = b"desk session " + auth.SEAL_PURPOSE.encode()
    candidates = [
        hkdf(secret_key.encode(), info),
        hkdf(bytes.fromhex(secret_key), info),
        bytes.fromhex(secret_key),
        hashlib.sha256(secret_key.encode()).digest(),
        hkdf(replied.session_id.encode(), info),
        hkdf(bytes.fromhex(replied.session_id), info),
        bytes.fromhex(replied.session_id),
    ]
    for key in candidates:
        with pytest.raises(InvalidTag):
            unseal(key, replied.sealed)
    # And the row's data, which holds the sealed seed, is itself sealed under the token.
    with desk.sessions() as db:
        row = db.get(SourceSession, replied.session_id)
    assert row is not None
    blob = base64.b64decode(row.data)
    for key in [*candidates, hkdf(secret_key.encode(), b"desk session data"),
                hkdf(replied.session_id.encode(), b"desk session data")]:
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(blob[:12], blob[12:], replied.session_id.encode("ascii"))
    # Nor does any 96 bytes of the sealed seed itself serve as the seed.
    for start in range(len(replied.sealed) - 96 + 1):
        window_key = key_from_seed(replied.sealed[start:start + 96])[0]
        with pytest.raises(FormatError):
            window_key.open(replied.box)


def test_cookie_alone_cannot_open_the_reply(desk: Services, replied: RepliedSource) -> None:
    raw = base64.urlsafe_b64decode(replied.token + "=")
    assert len(raw) == 32
    for secret in (replied.seed, replied.seed[:64], replied.seed[64:]):
        assert secret not in raw
    assert all(word not in replied.token for word in replied.codename.split())

    with desk.writers() as db:
        row = db.get(SourceSession, replied.session_id)
        assert row is not None
        db.delete(row)
        db.commit()
    services = open_services(desk.config)
    try:
        browser = create_app(desk.config, "source", services=services).test_client()
        browser.set_cookie(COOKIE, replied.token)
        answer = browser.get("/submit")
        assert is_logged_out(answer)
        assert REPLY_TEXT not in browser.get("/submit", follow_redirects=True).text
    finally:
        services.engine.dispose()


# --- 7. A returning source submits, reads and deletes replies -----------------------------------


def test_source_who_logged_in_with_codename_can_submit(
        app: Flask, desk: Services, source: SourceBrowser) -> None:
    browser = SourceBrowser(returning_source(app, source))
    sent = browser.send("the second clip is from the north gate")
    assert sent.status_code == 200
    assert "Your message was received" in sent.text
    row = only_source(desk)
    with desk.sessions() as db:
        submissions = db.scalars(select(Item)).all()
    assert [(s.source_id, s.kind) for s in submissions] == [(row.id, "message")]


def test_source_reads_replies_and_deletes_one_then_all(
        app: Flask, desk: Services, source: SourceBrowser) -> None:
    client = returning_source(app, source)
    source_id = only_source(desk).id
    texts = [f"reply {n}: which camera?" for n in range(3)]
    ids = [send_reply(desk, source_id, text) for text in texts]
    boxes = [desk.store.reply_path(reply_id) / "box" for reply_id in ids]
    page = client.get("/submit").text
    assert all(text in page for text in texts)

    deleted = client.post("/replies/delete", data={"csrf_token": csrf_token(page),
                                                   "reply": ids[1]})
    assert deleted.status_code == 302
    page = client.get("/submit").text
    assert [text in page for text in texts] == [True, False, True]
    assert [box.exists() for box in boxes] == [True, False, True]

    deleted = client.post("/replies/delete", data={"csrf_token": csrf_token(page), "all": "1"})
    assert deleted.status_code == 302
    page = client.get("/submit").text
    assert [text in page for text in texts] == [False, False, False]
    assert [box.exists() for box in boxes] == [False, False, False]
    with desk.sessions() as db:
        rows = db.scalars(select(Reply).order_by(Reply.number)).all()
    assert [r.source_deleted for r in rows] == [True, True, True]


def test_source_cannot_delete_another_sources_reply(
        app: Flask, desk: Services, source: SourceBrowser) -> None:
    owner = returning_source(app, source)
    reply_id = send_reply(desk, only_source(desk).id, REPLY_TEXT)
    other = SourceBrowser(app.test_client())
    other.get_codename()
    deleted = other.client.post("/replies/delete", data={"csrf_token": other.form_token(),
                                                         "reply": reply_id})
    assert deleted.status_code == 302
    assert (desk.store.reply_path(reply_id) / "box").exists()
    assert REPLY_TEXT in owner.get("/submit").text
