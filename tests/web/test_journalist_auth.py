"""Journalist login, throttling, server-side sessions, admin-only pages, the split between the
two interfaces, and the journalist CLI, through real Flask test clients on a real database."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask, has_request_context, request
from flask.testing import FlaskClient
from sqlalchemy import event, select, update
from werkzeug.test import TestResponse
from werkzeug.wrappers import Response

from crypto.names import DATABASE_NAME
from desk.app import create_app
from desk.config import Config
from desk.records.accounts import find_journalist
from desk.records.credentials import TOTP_STEP_SECONDS, totp_code
from desk.records.instance import load_instance
from desk.records.models import Journalist, JournalistSession
from desk.services import Services, open_services
from tests.harness.desks import CHEAP_KDF, PASSWORDS, find_markers, fresh_code, run_desk
from tests.harness.forms import CSRF_RE, csrf_token
from tests.harness.gpg import Keypair, make_keypair
from tests.harness.web import (
    SourceBrowser,
    idle_deadline,
    journalist_enrol,
    journalist_log_in,
    set_idle_deadline,
)

COOKIE = "desk_journalist"
LOGIN_FAILED_RE = re.compile(r'<p[^>]*\bid="login-failed"[^>]*>([^<]*)</p>')
FLASH_RE = re.compile(r'<p class="flash (\w+)" role="status">([^<]*)</p>')
TOTP_LINE_RE = re.compile(r"^TOTP secret: ([A-Z2-7]+=*)$", re.MULTILINE)
URI_LINE_RE = re.compile(r"^Authenticator URI: (otpauth://totp/\S+)$", re.MULTILINE)
ENROLMENT_LINK_RE = re.compile(r"^  \S*?(/enrol/[A-Za-z0-9_-]+)$", re.MULTILINE)
# Exactly the shortest password the desk accepts.
CAROL_PASSWORD = "twelve-chars"


# --- helpers -------------------------------------------------------------------------------


def at_step(offset: int) -> datetime:
    """A moment `offset` TOTP steps away from now."""
    return datetime.now(UTC) + timedelta(seconds=offset * TOTP_STEP_SECONDS)


def clear_of_step_end(margin: float = 1.0) -> None:
    """Wait for the next TOTP step if this one ends within `margin` seconds.

    A code computed now then still belongs to the same step when the server checks it.
    """
    remaining = TOTP_STEP_SECONDS - time.time() % TOTP_STEP_SECONDS
    if remaining < margin:
        time.sleep(remaining + 0.05)


def utc_naive(moment: datetime) -> datetime:
    """`moment` as the database stores it: UTC without a zone."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def secret_of(services: Services, username: str) -> bytes:
    """The account's current TOTP secret."""
    with services.sessions() as db:
        secret = find_journalist(db, username).totp_secret
    assert secret is not None
    return secret


def id_of(services: Services, username: str) -> int:
    """The account's id."""
    with services.sessions() as db:
        return find_journalist(db, username).id


def set_columns(services: Services, username: str, **values: object) -> None:
    """Change columns of one journalist's row directly in the database."""
    with services.sessions() as db:
        db.execute(update(Journalist).where(Journalist.username == username).values(**values))
        db.commit()


def journalist_names(services: Services) -> set[str]:
    """Every username in the database."""
    with services.sessions() as db:
        return set(db.scalars(select(Journalist.username)))


def wrong_code(secret: bytes) -> str:
    """A six-digit code that is not valid for `secret` anywhere near now."""
    valid = {totp_code(secret, at_step(offset)) for offset in range(-2, 3)}
    return next(code for code in ("000000", "123456", "999999") if code not in valid)


def session_rows(services: Services) -> list[JournalistSession]:
    """Every stored journalist session."""
    with services.sessions() as db:
        return list(db.scalars(select(JournalistSession)))


def sha256_hex(token: str) -> str:
    """What the desk stores for a cookie token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def token_of(client: FlaskClient) -> str | None:
    """The session token in the client's journalist cookie."""
    cookie = client.get_cookie(COOKIE)
    return None if cookie is None else cookie.value


def form_token(client: FlaskClient) -> str:
    """A CSRF token valid for the client's session, from a page it may open."""
    page = client.get("/")
    return csrf_token(page.text if page.status_code == 200 else client.get("/login").text)


def failure_text(page: TestResponse) -> str:
    """The text of the login-failed message."""
    match = LOGIN_FAILED_RE.search(page.text)
    assert match, "no login-failed message on the page"
    return match.group(1)


def without_csrf(body: str) -> str:
    """The page with every CSRF token value blanked out."""
    return CSRF_RE.sub('name="csrf_token" value=""', body)


def flashes(page: TestResponse) -> list[tuple[str, str]]:
    """(category, text) of every flashed message on the page."""
    return [(category, html.unescape(text)) for category, text in FLASH_RE.findall(page.text)]


def logged_in(client: FlaskClient) -> bool:
    """True when the client can open the sources page."""
    page = client.get("/")
    assert page.status_code in (200, 302), page.status_code
    return page.status_code == 200


def fill_rule(rule: str, journalist_id: int) -> str:
    """A path for `rule`: int arguments get `journalist_id`, any other argument gets 'x'."""
    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>",
                  lambda m: str(journalist_id) if m.group(1) == "int" else "x", rule)


def routes(app: Flask, keep: Callable[[str, str], bool]) -> list[tuple[str, str]]:
    """(rule, method) for every rule and method `keep(rule, endpoint)` selects."""
    return sorted((rule.rule, method) for rule in app.url_map.iter_rules()
                  if keep(rule.rule, rule.endpoint)
                  for method in (rule.methods or set()) - {"HEAD", "OPTIONS"})


def call(client: FlaskClient, method: str, path: str) -> TestResponse:
    """GET `path`, or POST it with a valid CSRF token and nothing else."""
    if method == "GET":
        return client.get(path)
    assert method == "POST", method
    return client.post(path, data={"csrf_token": form_token(client)})


# --- 1. login --------------------------------------------------------------------------------


def test_right_password_and_code_log_in_and_open_the_sources_page(
        journalist_app: Flask, accounts: Services) -> None:
    client = journalist_app.test_client()
    assert not logged_in(client)

    page = journalist_log_in(client, accounts, "alice")

    assert page.status_code == 302
    assert page.location == "/"
    sources = client.get("/")
    assert sources.status_code == 200
    assert "<h1>Sources" in sources.text
    assert '<span class="who">alice</span>' in sources.text


def _wrong_password(client: FlaskClient, services: Services) -> TestResponse:
    return journalist_log_in(client, services, "alice", password="not-alices-passphrase")


def _wrong_code(client: FlaskClient, services: Services) -> TestResponse:
    return journalist_log_in(client, services, "alice",
                             code=wrong_code(secret_of(services, "alice")))


def _reused_code(client: FlaskClient, services: Services) -> TestResponse:
    clear_of_step_end()
    code = fresh_code(services, "alice")
    assert journalist_log_in(client, services, "alice", code=code).status_code == 302
    assert client.post("/logout", data={"csrf_token": form_token(client)}).status_code == 302
    assert not logged_in(client)
    return journalist_log_in(client, services, "alice", code=code)


def _unknown_user(client: FlaskClient, services: Services) -> TestResponse:
    return journalist_log_in(client, services, "mallory", password=PASSWORDS["alice"],
                  code=fresh_code(services, "alice"))


def _account_without_password(client: FlaskClient, services: Services) -> TestResponse:
    set_columns(services, "bob", password_hash=None)
    return journalist_log_in(client, services, "bob")


def _account_without_two_factor(client: FlaskClient, services: Services) -> TestResponse:
    code = fresh_code(services, "bob")
    set_columns(services, "bob", totp_secret=None)
    return journalist_log_in(client, services, "bob", code=code)


FAILED_LOGINS: dict[str, Callable[[FlaskClient, Services], TestResponse]] = {
    "wrong password": _wrong_password,
    "wrong code": _wrong_code,
    "reused code": _reused_code,
    "unknown user": _unknown_user,
    "account without password": _account_without_password,
    "account without two-factor secret": _account_without_two_factor,
}


@pytest.mark.parametrize("case", list(FAILED_LOGINS))
def test_every_failed_login_gets_the_same_401_page(
        journalist_app: Flask, accounts: Services, case: str) -> None:
    reference = journalist_log_in(journalist_app.test_client(), accounts, "nobody",
                       password="some-other-passphrase", code="000000")
    client = journalist_app.test_client()

    page = FAILED_LOGINS[case](client, accounts)

    assert (page.status_code, reference.status_code) == (401, 401)
    assert failure_text(page) == failure_text(reference)
    assert failure_text(page).startswith("Login failed:")
    assert csrf_token(page.text) != csrf_token(reference.text)  # two sessions, two tokens
    assert without_csrf(page.text) == without_csrf(reference.text)
    assert not logged_in(client)


@dataclass(frozen=True)
class DatabaseWork:
    """What one request did to the database: its statements' verbs in order, its commits, and
    the pages its commits wrote to the write-ahead log (each commit that writes any is an
    fsync, as synchronous=FULL has it)."""

    verbs: tuple[str, ...]
    commits: int
    log_frames: int


def login_work(app: Flask, services: Services, attempt: Callable[[], TestResponse]
               ) -> DatabaseWork:
    """The database work of the last POST /login `attempt` makes."""
    database = services.config.data_dir / DATABASE_NAME
    verbs: list[str] = []
    commits: list[int] = []
    frames: list[int] = []

    def counted() -> bool:
        return has_request_context() and request.method == "POST" and request.path == "/login"

    def on_statement(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if counted():
            verbs.append(statement.split()[0].upper())

    def on_commit(_conn: object) -> None:
        if counted():
            commits.append(1)

    def checkpoint(mode: str) -> tuple[int, int]:
        """(busy, frames in the log) after a checkpoint in `mode`."""
        with closing(sqlite3.connect(database)) as db:
            busy, logged, _ = db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return busy, logged

    def before() -> None:
        if counted():
            verbs.clear()
            commits.clear()
            # An empty log: every frame in it after the view is this request's.
            assert checkpoint("TRUNCATE") == (0, 0)

    def after(response: Response) -> Response:
        if counted():  # PASSIVE: the request's own session may still be reading
            frames[:] = [checkpoint("PASSIVE")[1]]
        return response

    app.before_request(before)
    app.after_request(after)
    event.listen(services.engine, "before_cursor_execute", on_statement)
    event.listen(services.engine, "commit", on_commit)
    try:
        assert attempt().status_code == 401
    finally:
        event.remove(services.engine, "before_cursor_execute", on_statement)
        event.remove(services.engine, "commit", on_commit)
    return DatabaseWork(tuple(verbs), len(commits), frames[0])


@pytest.mark.parametrize("case", [case for case in FAILED_LOGINS if case != "wrong password"])
def test_every_failed_login_does_the_same_database_work(
        accounts: Services, case: str) -> None:
    """A failure on an account is counted on its row and committed: a failure for a name
    without one must write and commit as much, or the fsync it lacks would time it apart."""
    reference_app = create_app(accounts.config, "journalist", services=accounts)
    reference = login_work(reference_app, accounts,
                           lambda: _wrong_password(reference_app.test_client(), accounts))
    app = create_app(accounts.config, "journalist", services=accounts)

    work = login_work(app, accounts, lambda: FAILED_LOGINS[case](app.test_client(), accounts))

    assert work == reference
    assert reference.verbs.count("UPDATE") == 1
    assert (reference.commits, reference.log_frames) == (1, 1)


@pytest.mark.parametrize(("offset", "status"), [(-1, 302), (1, 302), (-2, 401), (2, 401)])
def test_codes_one_step_off_work_and_two_steps_off_do_not(
        journalist_app: Flask, accounts: Services, offset: int, status: int) -> None:
    client = journalist_app.test_client()
    clear_of_step_end()
    code = totp_code(secret_of(accounts, "alice"), at_step(offset))

    assert journalist_log_in(client, accounts, "alice", code=code).status_code == status
    assert logged_in(client) is (status == 302)


def test_code_typed_with_a_space_in_the_middle_logs_in(
        journalist_app: Flask, accounts: Services) -> None:
    client = journalist_app.test_client()
    clear_of_step_end()
    code = fresh_code(accounts, "alice")

    spaced = f"{code[:3]} {code[3:]}"
    assert journalist_log_in(client, accounts, "alice", code=spaced).status_code == 302


# --- 2. throttling ---------------------------------------------------------------------------


def fail_alice(journalist_app: Flask, accounts: Services, times: int) -> TestResponse:
    """Send `times` wrong passwords for alice; return the last failure page."""
    attacker = journalist_app.test_client()
    page = None
    for _ in range(times):
        page = journalist_log_in(attacker, accounts, "alice", password="guessed-passphrase")
        assert page.status_code == 401
    assert page is not None
    return page


def test_five_wrong_passwords_lock_alice_until_the_minute_is_over(
        journalist_app: Flask, accounts: Services) -> None:
    wrong = fail_alice(journalist_app, accounts, 5)
    client = journalist_app.test_client()

    throttled = journalist_log_in(client, accounts, "alice")

    assert throttled.status_code == 401
    assert failure_text(throttled) == failure_text(wrong)
    assert without_csrf(throttled.text) == without_csrf(wrong.text)
    assert not logged_in(client)

    set_columns(accounts, "alice",
                failures_since=utc_naive(datetime.now(UTC) - timedelta(seconds=61)))
    assert journalist_log_in(client, accounts, "alice").status_code == 302
    assert logged_in(client)


def test_four_wrong_passwords_do_not_lock_alice(
        journalist_app: Flask, accounts: Services) -> None:
    fail_alice(journalist_app, accounts, 4)
    client = journalist_app.test_client()

    assert journalist_log_in(client, accounts, "alice").status_code == 302
    assert logged_in(client)


def test_failures_on_alice_do_not_throttle_bob(
        journalist_app: Flask, accounts: Services) -> None:
    fail_alice(journalist_app, accounts, 5)
    assert journalist_log_in(journalist_app.test_client(), accounts, "alice").status_code == 401

    client = journalist_app.test_client()
    assert journalist_log_in(client, accounts, "bob").status_code == 302
    assert logged_in(client)


# --- 3. sessions -----------------------------------------------------------------------------


def test_session_cookie_is_httponly_and_samesite_strict(
        journalist_app: Flask, accounts: Services) -> None:
    page = journalist_log_in(journalist_app.test_client(), accounts, "alice")

    headers = [h for h in page.headers.getlist("Set-Cookie") if h.startswith(f"{COOKIE}=")]
    assert len(headers) == 1, page.headers.getlist("Set-Cookie")
    attributes = {part.strip().lower() for part in headers[0].split(";")[1:]}
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/" in attributes


def test_cookie_holds_a_random_token_and_the_database_only_its_hash(
        alice: FlaskClient, bob: FlaskClient, accounts: Services) -> None:
    tokens = [token_of(alice), token_of(bob)]
    assert all(token is not None and len(token) >= 43 for token in tokens)  # 32 random bytes
    assert tokens[0] != tokens[1]

    rows = session_rows(accounts)
    stored = {row.id: row for row in rows}
    for token, username in zip(tokens, ("alice", "bob"), strict=True):
        assert token is not None
        assert stored[sha256_hex(token)].journalist_id == id_of(accounts, username)
        assert token not in stored
        assert not any(token in row.data for row in rows)
    # Not in the database file, its WAL, or anywhere else the desk writes.
    assert find_markers([t.encode() for t in tokens if t], accounts.config.data_dir) == []


def test_login_issues_a_new_token_and_the_old_one_stays_anonymous(
        journalist_app: Flask, accounts: Services) -> None:
    client = journalist_app.test_client()
    client.get("/login")
    before = token_of(client)
    assert before is not None

    assert journalist_log_in(client, accounts, "alice").status_code == 302

    after = token_of(client)
    assert after is not None
    assert after != before
    assert sha256_hex(before) not in {row.id for row in session_rows(accounts)}
    planted = journalist_app.test_client()  # a browser the attacker gave the old token to
    planted.set_cookie(COOKIE, before)
    page = planted.get("/")
    assert (page.status_code, page.location) == (302, "/login")
    assert logged_in(client)


def test_each_request_extends_the_session_by_the_idle_timeout(
        alice: FlaskClient, accounts: Services) -> None:
    token = token_of(alice)
    assert token is not None
    set_idle_deadline(accounts, JournalistSession, token, time.time() + 60)

    assert logged_in(alice)

    left = idle_deadline(accounts, JournalistSession, token) - time.time()
    assert 29 * 60 < left <= 30 * 60 + 1


def test_idle_session_expires_and_sends_the_journalist_to_login(
        alice: FlaskClient, accounts: Services) -> None:
    assert logged_in(alice)
    token = token_of(alice)
    assert token is not None
    set_idle_deadline(accounts, JournalistSession, token, time.time() - 1)

    page = alice.get("/")

    assert (page.status_code, page.location) == (302, "/login")
    assert alice.get("/admin/").status_code == 302


def test_logout_needs_a_post_with_csrf_and_then_ends_the_session(
        journalist_app: Flask, alice: FlaskClient, accounts: Services) -> None:
    token = token_of(alice)
    assert token is not None

    assert alice.get("/logout").status_code == 405
    assert alice.post("/logout").status_code == 400
    assert alice.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert logged_in(alice)

    page = alice.post("/logout", data={"csrf_token": form_token(alice)})

    assert (page.status_code, page.location) == (302, "/login")
    assert not logged_in(alice)
    stored = {row.id: row for row in session_rows(accounts)}
    assert sha256_hex(token) not in stored
    assert id_of(accounts, "alice") not in {row.journalist_id for row in stored.values()}
    replay = journalist_app.test_client()
    replay.set_cookie(COOKIE, token)
    assert not logged_in(replay)


@pytest.mark.parametrize("how", ["admin page", "cli"])
def test_removing_a_journalist_ends_their_sessions(
        alice: FlaskClient, bob: FlaskClient, accounts: Services, how: str) -> None:
    bob_id, token = id_of(accounts, "bob"), token_of(bob)
    assert token is not None
    assert logged_in(bob)
    assert bob_id in {row.journalist_id for row in session_rows(accounts)}

    if how == "cli":
        result = run_desk("journalist", "remove", "bob", data_dir=accounts.config.data_dir)
        assert result.returncode == 0, result.stderr
    else:
        page = alice.post(f"/admin/journalists/{bob_id}/remove",
                          data={"csrf_token": form_token(alice), "confirm": "yes"})
        assert page.status_code == 302

    assert "bob" not in journalist_names(accounts)
    rows = session_rows(accounts)
    assert bob_id not in {row.journalist_id for row in rows}
    assert sha256_hex(token) not in {row.id for row in rows}
    assert not logged_in(bob)
    assert logged_in(alice)


# --- 4. authorization ------------------------------------------------------------------------


def test_every_admin_route_refuses_bob_and_serves_alice(
        journalist_app: Flask, accounts: Services, alice: FlaskClient,
        bob: FlaskClient) -> None:
    admin_routes = routes(journalist_app, lambda rule, _endpoint: rule.startswith("/admin"))
    assert {("/admin/", "GET"), ("/admin/journalists", "POST"),
            ("/admin/settings", "POST")} <= set(admin_routes)
    alice_id = id_of(accounts, "alice")

    as_bob = {(rule, method): call(bob, method, fill_rule(rule, alice_id)).status_code
              for rule, method in admin_routes}
    as_alice = {(rule, method): call(alice, method, fill_rule(rule, alice_id)).status_code
                for rule, method in admin_routes}

    assert as_bob == dict.fromkeys(admin_routes, 403)
    assert {route: status for route, status in as_alice.items() if status not in (200, 302)} \
        == {}
    assert logged_in(bob)
    assert "alice" in journalist_names(accounts)


def test_anonymous_client_is_sent_to_login_from_every_route(
        journalist_app: Flask, accounts: Services) -> None:
    # The enrolment link is the one other page open without a login (tests/web/test_enrolment.py).
    guarded = routes(journalist_app, lambda _rule, endpoint: endpoint not in (
        "journalist.login", "account.enrol", "static"))
    assert {("/", "GET"), ("/export", "POST"), ("/admin/", "GET"),
            ("/sources/<source_id>", "GET")} <= set(guarded)
    alice_id = id_of(accounts, "alice")
    client = journalist_app.test_client()

    answers = {}
    for rule, method in guarded:
        page = call(client, method, fill_rule(rule, alice_id))
        answers[(rule, method)] = (page.status_code, page.location)

    assert answers == dict.fromkeys(guarded, (302, "/login"))
    assert "alice" in journalist_names(accounts)


# --- 5. interface isolation ------------------------------------------------------------------


@pytest.mark.parametrize(("interface", "method", "path"), [
    ("source", "GET", "/admin/"),
    ("source", "GET", "/sources/x"),
    ("source", "GET", "/export"),
    ("source", "POST", "/export"),
    ("journalist", "GET", "/generate"),
    ("journalist", "POST", "/generate"),
    ("journalist", "GET", "/submit"),
    ("journalist", "POST", "/submit"),
])
def test_each_interface_answers_404_for_the_other_ones_pages(
        accounts: Services, interface: str, method: str, path: str) -> None:
    app = create_app(accounts.config, "source" if interface == "source" else "journalist",
                     services=accounts)

    assert app.test_client().open(path, method=method).status_code == 404


def test_source_cookie_is_not_a_journalist_session(
        journalist_app: Flask, source: SourceBrowser) -> None:
    source_cookie = source.client.get_cookie("desk_source")
    assert source_cookie is not None
    assert source.client.get_cookie(COOKIE) is None
    journalist = journalist_app.test_client()
    journalist.get("/login")
    assert journalist.get_cookie(COOKIE) is not None
    assert journalist.get_cookie("desk_source") is None

    for name in (COOKIE, "desk_source"):
        client = journalist_app.test_client()
        client.set_cookie(name, source_cookie.value)
        page = client.get("/")
        assert (page.status_code, page.location) == (302, "/login"), name


# --- 6. CLI ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def carol_key(tmp_path_factory: pytest.TempPathFactory) -> Keypair:
    """An Ed25519/Curve25519 key no fixture desk holds yet."""
    return make_keypair(tmp_path_factory.mktemp("carol-key") / "carol", "Carol")


@pytest.fixture
def cli_desk(tmp_path: Path) -> Iterator[Services]:
    """A data directory made by `desk init`, and its services for the journalist app."""
    data = tmp_path / "cli-desk"
    result = run_desk("init", data_dir=data)
    assert result.returncode == 0, result.stderr
    services = open_services(Config(data_dir=data, database_url=f"sqlite:///{data / 'desk.db'}",
                                    kdf=CHEAP_KDF))
    yield services
    services.engine.dispose()


def cli_add(services: Services, key: Keypair, password: str, tmp_path: Path,
            username: str = "carol") -> tuple[int, str, str]:
    """`desk journalist add USERNAME --key ... --password-file ...`: (status, stdout, stderr)."""
    password_file = tmp_path / f"{username}-password"
    password_file.write_text(password + "\n")
    result = run_desk("journalist", "add", username, "--key", str(key.public_key),
                      "--password-file", str(password_file), data_dir=services.config.data_dir)
    return result.returncode, result.stdout, result.stderr


def printed_link(stdout: str) -> str:
    """The path of the one enrolment link the command printed."""
    links = ENROLMENT_LINK_RE.findall(stdout)
    assert len(links) == 1, stdout
    return str(links[0])


def printed_secret(stdout: str) -> str:
    """The one base32 TOTP secret the command printed."""
    secrets = TOTP_LINE_RE.findall(stdout)
    assert len(secrets) == 1, stdout
    return str(secrets[0])


def listed(services: Services) -> str:
    """What `desk journalist list` prints."""
    result = run_desk("journalist", "list", data_dir=services.config.data_dir)
    assert result.returncode == 0, result.stderr
    return result.stdout


def log_in_with_secret(services: Services, username: str, password: str, secret: str,
                       offset: int = 0) -> tuple[int, bool]:
    """Log in through a fresh journalist app: (status, whether the sources page then opens)."""
    client = create_app(services.config, "journalist", services=services).test_client()
    code = totp_code(base64.b32decode(secret), at_step(offset))
    page = journalist_log_in(client, services, username, password=password, code=code)
    return page.status_code, logged_in(client)


def test_cli_added_carol_logs_in_with_the_printed_secret_until_removed(
        cli_desk: Services, carol_key: Keypair, tmp_path: Path) -> None:
    status, stdout, stderr = cli_add(cli_desk, carol_key, CAROL_PASSWORD, tmp_path)

    assert status == 0, stderr
    secret = printed_secret(stdout)
    assert len(base64.b32decode(secret)) == 20
    uris = URI_LINE_RE.findall(stdout)
    assert len(uris) == 1
    assert "carol" in uris[0]
    assert f"secret={secret}" in uris[0]
    assert f"carol\tjournalist\t{carol_key.fingerprint}" in listed(cli_desk).splitlines()
    clear_of_step_end()
    assert log_in_with_secret(cli_desk, "carol", CAROL_PASSWORD, secret) == (302, True)

    result = run_desk("journalist", "remove", "carol", data_dir=cli_desk.config.data_dir)

    assert result.returncode == 0, result.stderr
    assert "Removed carol." in result.stdout
    assert "carol" not in listed(cli_desk)
    clear_of_step_end()
    assert log_in_with_secret(cli_desk, "carol", CAROL_PASSWORD, secret, offset=1) == (401, False)


def test_cli_refuses_a_short_password_with_one_line(
        cli_desk: Services, carol_key: Keypair, tmp_path: Path) -> None:
    status, stdout, stderr = cli_add(cli_desk, carol_key, CAROL_PASSWORD[:-1], tmp_path)

    assert status == 1
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("desk: passwords need at least 12 characters")
    assert "TOTP secret" not in stdout
    assert "carol" not in journalist_names(cli_desk)


def test_cli_reset_2fa_prints_a_link_that_sets_up_two_factor_again_with_the_kept_passphrase(
        cli_desk: Services, carol_key: Keypair, tmp_path: Path) -> None:
    status, stdout, stderr = cli_add(cli_desk, carol_key, CAROL_PASSWORD, tmp_path)
    assert status == 0, stderr
    old = printed_secret(stdout)
    clear_of_step_end()
    assert log_in_with_secret(cli_desk, "carol", CAROL_PASSWORD, old) == (302, True)

    result = run_desk("journalist", "reset-2fa", "carol", data_dir=cli_desk.config.data_dir)

    assert result.returncode == 0, result.stderr
    assert "TOTP secret" not in result.stdout
    path = printed_link(result.stdout)
    clear_of_step_end()
    # The old secret works no more: the account has none until carol enrols again.
    assert log_in_with_secret(cli_desk, "carol", CAROL_PASSWORD, old, offset=1) == (401, False)
    app = create_app(cli_desk.config, "journalist", services=cli_desk)
    enrolled = journalist_enrol(app.test_client(), path, CAROL_PASSWORD, kept=True)
    assert enrolled.page.status_code == 302
    clear_of_step_end()
    assert log_in_with_secret(cli_desk, "carol", CAROL_PASSWORD, enrolled.secret_text,
                              offset=1) == (302, True)


# --- 7. admin web ----------------------------------------------------------------------------


def upload_journalist(client: FlaskClient, username: str, key_data: bytes) -> TestResponse:
    """Post the admin page's add-a-journalist form with a key file."""
    return client.post("/admin/journalists", content_type="multipart/form-data", data={
        "csrf_token": csrf_token(client.get("/admin/").text), "username": username,
        "key": (io.BytesIO(key_data), f"{username}.asc")})


def shown(page: TestResponse, element_id: str) -> str:
    """The text of the element with `element_id`."""
    match = re.search(rf'id="{element_id}"[^>]*>([^<]+)<', page.text)
    assert match, f"no #{element_id} on the page"
    return html.unescape(match.group(1))


def test_admin_adds_dave_by_uploading_his_key_and_he_can_enrol_and_log_in(
        journalist_app: Flask, accounts: Services, alice: FlaskClient,
        carol_key: Keypair) -> None:
    page = upload_journalist(alice, "dave", carol_key.public_key.read_bytes())

    assert page.status_code == 200
    link = shown(page, "enrolment-link")
    assert link.startswith("http://localhost/enrol/")
    with accounts.sessions() as db:
        dave = find_journalist(db, "dave")
    assert (dave.fingerprint, dave.is_admin) == (carol_key.fingerprint, False)
    enrolled = journalist_enrol(journalist_app.test_client(), link, "daves-own-passphrase")
    assert enrolled.page.status_code == 302
    client = journalist_app.test_client()
    clear_of_step_end()
    answer = journalist_log_in(client, accounts, "dave", password="daves-own-passphrase",
                               code=fresh_code(accounts, "dave"))
    assert answer.status_code == 302
    assert logged_in(client)
    assert client.get("/admin/").status_code == 403


@pytest.fixture(scope="module")
def refused_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Key files the admin page must refuse."""
    base = tmp_path_factory.mktemp("refused-keys")
    weak = make_keypair(base / "weak", "Weak", algorithm="rsa2048", subkey="rsa2048")
    cert_only = make_keypair(base / "certonly", "Certonly", usage="cert", subkey=None)
    return {
        "weak": weak.public_key.read_bytes(),
        "cannot encrypt": cert_only.public_key.read_bytes(),
        "garbage": b"-----BEGIN NOTHING-----\n\x00\xff not a key \x01\x02" * 20,
        "empty": b"",
    }


@pytest.mark.parametrize(("kind", "reason"), [
    ("weak", "key refused: RSA-2048 is too weak"),
    ("cannot encrypt", "key refused: the key cannot encrypt: it has no valid encryption subkey"),
    ("garbage", "key refused: the file holds no OpenPGP key"),
    ("empty", "choose the journalist's public key file (.asc)"),
])
def test_admin_page_refuses_a_bad_key_naming_the_problem(
        alice: FlaskClient, accounts: Services, refused_keys: dict[str, bytes], kind: str,
        reason: str) -> None:
    before = journalist_names(accounts)

    page = upload_journalist(alice, "dave", refused_keys[kind])

    assert (page.status_code, page.location) == (302, "/admin/")
    messages = flashes(alice.get("/admin/"))
    assert [c for c, text in messages if text.startswith(reason)] == ["error"], messages
    assert journalist_names(accounts) == before
    assert 'id="totp-secret"' not in page.text


def test_admin_cannot_remove_herself(alice: FlaskClient, accounts: Services) -> None:
    alice_id = id_of(accounts, "alice")

    page = alice.post(f"/admin/journalists/{alice_id}/remove",
                      data={"csrf_token": form_token(alice), "confirm": "yes"},
                      follow_redirects=True)

    assert page.status_code == 200
    assert ("error", "You cannot remove your own account.") in flashes(page)
    assert "alice" in journalist_names(accounts)
    assert logged_in(alice)


GOOD_SETTINGS = {"name": "Station Desk", "max_upload": "500MiB", "retention_days": "30"}


def post_settings(client: FlaskClient, **fields: str) -> TestResponse:
    """Post the admin settings form and follow it back to the admin page."""
    return client.post("/admin/settings", data={"csrf_token": form_token(client), **fields},
                       follow_redirects=True)


def test_settings_persist_and_the_source_page_states_the_new_limit(
        alice: FlaskClient, accounts: Services, source: SourceBrowser) -> None:
    assert "67.1 MB" in source.client.get("/submit").text  # the config's 64 MiB, before

    page = post_settings(alice, **GOOD_SETTINGS)

    assert ("info", "Settings saved.") in flashes(page)
    with accounts.sessions() as db:
        instance = load_instance(db)
    assert (instance.name, instance.max_upload_bytes, instance.retention_days) == (
        "Station Desk", 500 * 1024**2, 30)
    submit = source.client.get("/submit")
    assert "524.3 MB" in submit.text
    assert "67.1 MB" not in submit.text
    assert "Station Desk" in alice.get("/").text


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_upload", "lots", "the maximum upload must be a size of at least 1 MiB"),
    ("max_upload", "0", "the maximum upload must be a size of at least 1 MiB"),
    ("max_upload", "1023KiB", "the maximum upload must be a size of at least 1 MiB"),
    ("retention_days", "lots", "retention must be a number of days from 1 to 3650"),
    ("retention_days", "0", "retention must be a number of days from 1 to 3650"),
    ("retention_days", "3651", "retention must be a number of days from 1 to 3650"),
    ("name", "   ", "the desk's name must be 1 to 100 characters"),
])
def test_bad_settings_are_refused_with_a_specific_message(
        alice: FlaskClient, accounts: Services, field: str, value: str, message: str) -> None:
    page = post_settings(alice, **{**GOOD_SETTINGS, field: value})

    assert page.status_code == 200
    assert [c for c, text in flashes(page) if text.startswith(message)] == ["error"]
    with accounts.sessions() as db:
        instance = load_instance(db)
    assert (instance.name, instance.max_upload_bytes, instance.retention_days) == (
        "desk", None, None)


def test_superscript_digit_retention_is_refused_with_the_retention_message(
        alice: FlaskClient, accounts: Services) -> None:
    page = post_settings(alice, **{**GOOD_SETTINGS, "retention_days": "²"})

    assert page.status_code == 200
    assert [c for c, text in flashes(page) if text.startswith("retention must be")] == ["error"]


def test_new_password_or_two_factor_ends_existing_sessions(
        accounts: Services, alice: FlaskClient, bob: FlaskClient) -> None:
    from desk.records.accounts import issue_enrolment, set_password

    with accounts.sessions() as session:
        issue_enrolment(session, find_journalist(session, "alice"), "bob", keep_passphrase=True)
        set_password(session, find_journalist(session, "bob"), "a-new-long-passphrase",
                     CHEAP_KDF)
        session.commit()
    for client in (alice, bob):
        response = client.get("/")
        assert response.status_code == 302
        assert response.headers["Location"].endswith("/login")
