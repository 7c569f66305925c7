"""Journalists' login values date nothing once their window is over (invariant 5).

`totp_last_step` and `failures_since` are the database's only values finer than a day. A
settle clears each one that can no longer change an answer (`forget_expired_logins`), and
`authenticate` clears an expired step on the row it touches; a code still works once and five
failures a minute still lock the account, exactly as before. The desk's count of failures for
unknown names, kept only so that such a failure writes as much as one on an account, goes at
every settle too.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from crypto.names import DATABASE_NAME
from desk.records.credentials import (
    FAILURE_WINDOW,
    MAX_FAILURES,
    TOTP_DRIFT_STEPS,
    TOTP_STEP_SECONDS,
    LoginFailed,
    accepted_step,
    authenticate,
    current_step,
    forget_expired_logins,
    oldest_live_step,
    totp_code,
)
from desk.records.instance import load_instance
from desk.records.models import Journalist
from desk.services import Services
from tests.harness.desks import CHEAP_KDF, PASSWORDS, run_desk

STEP = timedelta(seconds=TOTP_STEP_SECONDS)
# The start of a TOTP step, so that `START + n * STEP` lies in step `current_step(START) + n`.
START = datetime(2031, 5, 6, 7, 8, 0, tzinfo=UTC)


def row(services: Services, username: str) -> Journalist:
    """The account's row as stored now."""
    with services.sessions() as db:
        journalist = db.scalars(select(Journalist).where(Journalist.username == username)).one()
        db.expunge(journalist)
    return journalist


def set_columns(services: Services, username: str, **values: object) -> None:
    """Change one journalist's row directly in the database."""
    with services.sessions() as db:
        db.execute(update(Journalist).where(Journalist.username == username).values(**values))
        db.commit()


def log_in(services: Services, username: str, now: datetime, *, code_at: datetime | None = None,
           password: str | None = None) -> None:
    """`authenticate` at `now` with the code of `code_at` (default `now`); LoginFailed if
    refused."""
    secret = row(services, username).totp_secret
    assert secret is not None
    code = totp_code(secret, code_at or now)
    with services.sessions() as db:
        authenticate(db, username, password or PASSWORDS[username], code, kdf=CHEAP_KDF,
                     now=now)


def forget(services: Services, now: datetime) -> int:
    """`forget_expired_logins` at `now`, committed."""
    with services.sessions() as db:
        forgotten = forget_expired_logins(db, now)
        db.commit()
    return forgotten


def unknown_user_failures(services: Services) -> int:
    """The desk's count of failed logins for names with no account."""
    with services.sessions() as db:
        return load_instance(db).unknown_user_failures


def naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def test_forgetting_an_expired_step_changes_no_answer() -> None:
    secret = bytes(range(20))
    now = START + timedelta(seconds=7)
    current = current_step(now)
    for last in range(current - 4, current + 3):
        kept = None if last < oldest_live_step(now) else last
        for offset in range(-3, 4):
            code = totp_code(secret, now + offset * STEP)
            assert accepted_step(secret, code, last, now) == \
                accepted_step(secret, code, kept, now), (last, offset)


def test_a_code_works_once_before_and_after_a_settle_inside_its_window(
        accounts: Services) -> None:
    log_in(accounts, "alice", START)
    used = current_step(START)
    assert row(accounts, "alice").totp_last_step == used
    with pytest.raises(LoginFailed):
        log_in(accounts, "alice", START + timedelta(seconds=5), code_at=START)

    # A settle while the code could still be typed keeps the step: it is still refused.
    for later in (STEP, 2 * STEP - timedelta(seconds=1)):
        forget(accounts, START + later)
        assert row(accounts, "alice").totp_last_step == used
        with pytest.raises(LoginFailed):
            log_in(accounts, "alice", START + later, code_at=START)

    # Past the drift the step goes, and the code is refused as too old all the same.
    past = START + (TOTP_DRIFT_STEPS + 1) * STEP
    assert forget(accounts, past) == 1
    assert row(accounts, "alice").totp_last_step is None
    with pytest.raises(LoginFailed):
        log_in(accounts, "alice", past, code_at=START)
    log_in(accounts, "alice", past)


def test_a_step_from_a_clock_ahead_still_refuses_the_older_codes(accounts: Services) -> None:
    log_in(accounts, "alice", START, code_at=START + STEP)
    forget(accounts, START)
    forget(accounts, START + 2 * STEP)
    assert row(accounts, "alice").totp_last_step == current_step(START) + 1
    for moment in (START, START + STEP):
        with pytest.raises(LoginFailed):
            log_in(accounts, "alice", moment)


def test_five_failures_a_minute_still_lock_the_account_across_settles(
        accounts: Services) -> None:
    for second in range(MAX_FAILURES):
        with pytest.raises(LoginFailed):
            log_in(accounts, "alice", START + timedelta(seconds=second), password="wrong-guess")
    stored = row(accounts, "alice")
    assert (stored.failed_logins, stored.failures_since) == (MAX_FAILURES, naive(START))

    # Inside the minute a settle keeps the count, and the right password is refused.
    inside = START + FAILURE_WINDOW
    assert forget(accounts, inside) == 0
    with pytest.raises(LoginFailed):
        log_in(accounts, "alice", inside)
    stored = row(accounts, "alice")
    assert (stored.failed_logins, stored.failures_since) == (MAX_FAILURES + 1, naive(START))

    # Once the minute is over, the settle clears both, and alice logs in.
    over = inside + timedelta(microseconds=1)
    assert forget(accounts, over) == 1
    stored = row(accounts, "alice")
    assert (stored.failed_logins, stored.failures_since) == (0, None)
    log_in(accounts, "alice", over)


def test_failures_cleared_by_a_settle_count_again_from_zero(accounts: Services) -> None:
    for second in range(MAX_FAILURES - 1):
        with pytest.raises(LoginFailed):
            log_in(accounts, "alice", START + timedelta(seconds=second), password="wrong-guess")
    later = START + FAILURE_WINDOW + timedelta(seconds=1)
    forget(accounts, later)
    # Four new failures in a new minute do not lock: the old four no longer count.
    for second in range(MAX_FAILURES - 1):
        with pytest.raises(LoginFailed):
            log_in(accounts, "alice", later + timedelta(seconds=second), password="wrong-guess")
    log_in(accounts, "alice", later + timedelta(seconds=10))


def test_a_settle_clears_every_expired_value_and_keeps_live_ones(accounts: Services) -> None:
    now = START + timedelta(seconds=12)
    set_columns(accounts, "alice", totp_last_step=current_step(now) - TOTP_DRIFT_STEPS - 1,
                failed_logins=3, failures_since=naive(now - FAILURE_WINDOW
                                                      - timedelta(microseconds=1)))
    set_columns(accounts, "bob", totp_last_step=current_step(now) - TOTP_DRIFT_STEPS,
                failed_logins=2, failures_since=naive(now - FAILURE_WINDOW))

    assert forget(accounts, now) == 2

    alice, bob = row(accounts, "alice"), row(accounts, "bob")
    assert (alice.totp_last_step, alice.failed_logins, alice.failures_since) == (None, 0, None)
    assert (bob.totp_last_step, bob.failed_logins, bob.failures_since) == \
        (current_step(now) - TOTP_DRIFT_STEPS, 2, naive(now - FAILURE_WINDOW))


def test_failures_for_unknown_names_are_counted_until_a_settle(accounts: Services) -> None:
    for name in ("mallory", "nobody"):
        with accounts.sessions() as db, pytest.raises(LoginFailed):
            authenticate(db, name, "some-long-passphrase", "000000", kdf=CHEAP_KDF, now=START)
    assert unknown_user_failures(accounts) == 2

    assert forget(accounts, START) == 1

    assert unknown_user_failures(accounts) == 0


def test_a_failed_login_forgets_an_expired_step(accounts: Services) -> None:
    set_columns(accounts, "alice", totp_last_step=current_step(START) - 2 - TOTP_DRIFT_STEPS)
    with pytest.raises(LoginFailed):
        log_in(accounts, "alice", START, password="wrong-guess")
    assert row(accounts, "alice").totp_last_step is None


def test_desk_settle_leaves_no_expired_login_time_in_the_database_or_its_log(
        accounts: Services) -> None:
    now = datetime.now(UTC)
    # An instant with a recognisable fraction, to find its text in the database's bytes.
    stale = naive(now - timedelta(days=1)).replace(microsecond=271828)
    set_columns(accounts, "alice", totp_last_step=current_step(now) - 1000, failed_logins=4,
                failures_since=stale)
    set_columns(accounts, "bob", totp_last_step=current_step(now), failed_logins=1,
                failures_since=naive(now))
    with accounts.engine.connect() as connection:
        stored = connection.execute(text(
            "SELECT failures_since FROM journalists WHERE username = 'alice'")).scalar_one()
    assert stored.endswith(".271828")
    data_dir = accounts.config.data_dir
    assert any(stored.encode("ascii") in path.read_bytes()
               for path in data_dir.glob(f"{DATABASE_NAME}*"))
    accounts.engine.dispose()
    # A connection kept open, as a running server's is: the settle's is then not the last,
    # and closing it does not checkpoint and remove the log.
    server = sqlite3.connect(data_dir / DATABASE_NAME)
    try:
        server.execute("SELECT count(*) FROM journalists").fetchone()

        settled = run_desk("settle", data_dir=data_dir)

        assert settled.returncode == 0, settled.stdout + settled.stderr
        assert "2 expired login value(s) cleared" in settled.stdout
        for path in sorted(data_dir.glob(f"{DATABASE_NAME}*")):
            assert stored.encode("ascii") not in path.read_bytes(), path.name
        assert (data_dir / f"{DATABASE_NAME}-wal").stat().st_size == 0
    finally:
        server.close()
    alice, bob = row(accounts, "alice"), row(accounts, "bob")
    assert (alice.totp_last_step, alice.failed_logins, alice.failures_since) == (None, 0, None)
    assert bob.totp_last_step == current_step(now)
    assert bob.failures_since == naive(now)
    accounts.engine.dispose()
