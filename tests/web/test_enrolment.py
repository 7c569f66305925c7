"""Finding 8 of the second security review: an admin saw the passphrase and TOTP secret of every
journalist it created, journalists could not change either, and what the admin then did as the
journalist went into custody under the journalist's name.

Now an admin (on the web or the server's command line) gets a one-time enrolment link; the
journalist chooses the passphrase and sets up two-factor through it, and can change both later;
every change to an account is recorded under the name of whoever made it. Real apps, a real
database, real gpg and the real `desk` command."""

from __future__ import annotations

import base64
import io
import time
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from desk.records.accounts import find_journalist
from desk.records.credentials import (
    TOTP_STEP_SECONDS,
    totp_code,
    totp_secret_text,
    totp_uri,
)
from desk.records.models import AccountEvent, CustodyRecord, Item, Journalist
from desk.services import Services
from tests.harness.desks import PASSWORDS, fresh_code, run_desk
from tests.harness.forms import csrf_token
from tests.harness.gpg import Keypair, make_keypair
from tests.harness.web import (
    SourceBrowser,
    code_now,
    journalist_enrol,
    journalist_log_in,
    shown_secret,
)

CAROL = "carols-own-long-passphrase"


@pytest.fixture(scope="module")
def carol_key(tmp_path_factory: pytest.TempPathFactory) -> Keypair:
    """A key no fixture desk holds yet."""
    return make_keypair(tmp_path_factory.mktemp("carol") / "carol", "Carol")


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> Keypair:
    """Another key, to replace carol's with."""
    return make_keypair(tmp_path_factory.mktemp("carol2") / "carol2", "Carol Two")


def add_on_admin_page(admin: FlaskClient, username: str, key: Keypair) -> TestResponse:
    """Post the admin page's add-a-journalist form."""
    return admin.post("/admin/journalists", content_type="multipart/form-data", data={
        "csrf_token": csrf_token(admin.get("/admin/").text), "username": username,
        "key": (io.BytesIO(key.public_key.read_bytes()), f"{username}.asc")})


def post_admin(admin: FlaskClient, path: str, **fields: str) -> TestResponse:
    """Post an admin form with its CSRF token."""
    return admin.post(path, data={"csrf_token": csrf_token(admin.get("/admin/").text),
                                  **fields})


def link_on(page: TestResponse) -> str:
    """The enrolment link a page shows."""
    marker = 'id="enrolment-link" class="hash">'
    assert marker in page.text, page.text
    return page.text.split(marker, 1)[1].split("<", 1)[0]


def account(services: Services, username: str) -> Journalist:
    """The account's row as stored."""
    with services.sessions() as db:
        found = find_journalist(db, username)
        db.expunge(found)
    return found


def events(services: Services) -> list[tuple[str, str, str]]:
    """(actor, action, account) of every account event, oldest first."""
    with services.sessions() as db:
        return [(e.actor, e.action, e.account)
                for e in db.scalars(select(AccountEvent).order_by(AccountEvent.id))]


def log_in(app: Flask, services: Services, username: str, password: str,
           secret: bytes) -> tuple[FlaskClient, int]:
    """A fresh client that tried to log in; the status of the answer."""
    client = app.test_client()
    code = next_code(services, username, secret)
    page = journalist_log_in(client, services, username, password=password, code=code)
    return client, page.status_code


def next_code(services: Services, username: str, secret: bytes) -> str:
    """A code for `secret` in a step the account has not used (waiting for the next step when
    every step the server accepts now is used), that stays acceptable for a second."""
    with services.sessions() as db:
        last = find_journalist(db, username).totp_last_step
    while True:
        moment = time.time()
        now = int(moment) // TOTP_STEP_SECONDS
        usable = [s for s in (now, now + 1) if last is None or s > last]
        if usable and (usable[0] > now or TOTP_STEP_SECONDS - moment % TOTP_STEP_SECONDS > 1):
            return totp_code(secret, datetime.fromtimestamp(usable[0] * TOTP_STEP_SECONDS, UTC))
        time.sleep(TOTP_STEP_SECONDS - moment % TOTP_STEP_SECONDS + 0.05)


# --- the report's reproduction ----------------------------------------------------------------


def test_the_admin_never_sees_carols_passphrase_or_secret_and_cannot_act_as_her(
        journalist_app: Flask, accounts: Services, alice: FlaskClient, carol_key: Keypair,
        source: SourceBrowser) -> None:
    """exp12_admin_knows.py: the admin saw carol's passphrase and TOTP secret, logged in as
    carol and downloaded an item, recorded in custody as carol's download."""
    seen_by_admin = [add_on_admin_page(alice, "carol", carol_key)]
    assert seen_by_admin[0].status_code == 200
    link = link_on(seen_by_admin[0])
    assert 'id="password"' not in seen_by_admin[0].text
    assert 'id="totp-secret"' not in seen_by_admin[0].text

    carol = journalist_app.test_client()
    enrolled = journalist_enrol(carol, link, CAROL)
    assert (enrolled.page.status_code, enrolled.page.location) == (302, "/")
    assert carol.get("/").status_code == 200  # enrolled and logged in

    seen_by_admin += [alice.get("/admin/"), alice.get(link)]
    secret_forms = [CAROL, totp_secret_text(enrolled.secret), enrolled.secret.hex(),
                    totp_uri(enrolled.secret, "carol")]
    for page in seen_by_admin:
        for secret in secret_forms:
            assert secret not in page.text
    # The link the admin held is spent: the admin cannot enrol in carol's place.
    assert seen_by_admin[-1].status_code == 404
    assert 'id="enrol-invalid"' in seen_by_admin[-1].text
    # What the admin knew is no login; carol's own is.
    for password in ("", PASSWORDS["alice"]):
        assert log_in(journalist_app, accounts, "carol", password, enrolled.secret)[1] == 401
    _, status = log_in(journalist_app, accounts, "carol", CAROL, enrolled.secret)
    assert status == 302

    # Carol's download is carol's; the admin's changes to her account are the admin's.
    assert source.send(message="for carol").status_code == 200
    with accounts.sessions() as db:
        item = db.scalars(select(Item)).one()
    assert carol.post(f"/items/{item.id}/download", data={
        "csrf_token": csrf_token(carol.get("/").text)}).status_code == 200
    with accounts.sessions() as db:
        last = db.scalars(select(CustodyRecord).order_by(CustodyRecord.seq.desc())).first()
    assert last is not None
    assert (last.event, last.actor) == ("download", "carol")
    assert events(accounts)[-3:] == [("alice", "added", "carol"),
                                     ("alice", "enrolment-link", "carol"),
                                     ("carol", "enrolled", "carol")]


def test_journalists_have_routes_to_change_their_own_passphrase_and_two_factor(
        journalist_app: Flask) -> None:
    rules = {(rule.rule, method) for rule in journalist_app.url_map.iter_rules()
             for method in rule.methods or ()}
    assert {("/account", "GET"), ("/account/passphrase", "POST"),
            ("/account/two-factor", "POST")} <= rules


# --- the link ---------------------------------------------------------------------------------


def test_the_link_works_once(journalist_app: Flask, alice: FlaskClient,
                             carol_key: Keypair) -> None:
    link = link_on(add_on_admin_page(alice, "carol", carol_key))
    assert journalist_enrol(journalist_app.test_client(), link, CAROL).page.status_code == 302

    again = journalist_app.test_client()
    page = again.get(link)
    assert page.status_code == 404
    assert 'id="enrol-invalid"' in page.text
    token = csrf_token(again.get("/login").text)
    posted = again.post(link, data={"csrf_token": token, "passphrase": "x" * 20,
                                    "repeated": "x" * 20, "code": "000000"})
    assert posted.status_code == 404


@pytest.mark.parametrize(("days_left", "status"), [(0, 200), (-1, 404)])
def test_the_link_works_until_the_end_of_its_last_day(
        journalist_app: Flask, accounts: Services, alice: FlaskClient, carol_key: Keypair,
        days_left: int, status: int) -> None:
    link = link_on(add_on_admin_page(alice, "carol", carol_key))
    until = account(accounts, "carol").enrolment_until
    assert until == datetime.now(UTC).date() + timedelta(days=3)  # 72 to 96 hours
    with accounts.sessions() as db:
        db.execute(update(Journalist).where(Journalist.username == "carol").values(
            enrolment_until=datetime.now(UTC).date() + timedelta(days=days_left)))
        db.commit()

    assert journalist_app.test_client().get(link).status_code == status


def test_the_database_keeps_only_the_links_hash_and_day(
        alice: FlaskClient, accounts: Services, carol_key: Keypair) -> None:
    link = link_on(add_on_admin_page(alice, "carol", carol_key))
    token = link.rsplit("/", 1)[1]

    row = account(accounts, "carol")

    assert len(token) >= 43  # 32 random bytes
    assert row.enrolment_hash is not None
    assert token not in row.enrolment_hash
    database = (accounts.config.data_dir / "desk.db").read_bytes()
    wal = accounts.config.data_dir / "desk.db-wal"
    assert token.encode() not in database + (wal.read_bytes() if wal.exists() else b"")


def test_a_newer_link_replaces_the_older_one(
        journalist_app: Flask, accounts: Services, alice: FlaskClient,
        carol_key: Keypair) -> None:
    first = link_on(add_on_admin_page(alice, "carol", carol_key))
    carol_id = account(accounts, "carol").id

    second = link_on(post_admin(alice, f"/admin/journalists/{carol_id}/reset-login"))

    assert journalist_app.test_client().get(first).status_code == 404
    assert journalist_app.test_client().get(second).status_code == 200


@pytest.mark.parametrize(("passphrase", "repeated", "code", "error"), [
    ("short", "short", None, "passwords need at least 12 characters"),
    (CAROL, CAROL + "!", None, "the two new passphrases differ"),
    (CAROL, CAROL, "wrong", "that code does not match the new two-factor secret"),
])
def test_a_mistake_is_named_and_the_link_still_works(
        journalist_app: Flask, accounts: Services, alice: FlaskClient, carol_key: Keypair,
        passphrase: str, repeated: str, code: str | None, error: str) -> None:
    link = link_on(add_on_admin_page(alice, "carol", carol_key))
    client = journalist_app.test_client()
    if code == "wrong":
        secret = shown_secret(client.get(link))
        valid = {totp_code(secret, datetime.now(UTC) + timedelta(seconds=30 * k))
                 for k in range(-2, 3)}
        code = next(c for c in ("000000", "123456", "999999") if c not in valid)

    failed = journalist_enrol(client, link, passphrase, repeated=repeated, code=code)

    assert failed.page.status_code == 400
    assert f"Not enrolled: {error}" in failed.page.text
    assert account(accounts, "carol").password_hash is None
    # The same browser sees the same secret again, and can finish.
    retried = journalist_enrol(client, link, CAROL)
    assert retried.secret == failed.secret
    assert retried.page.status_code == 302


def test_a_two_factor_reset_link_needs_the_passphrase_carol_keeps(
        journalist_app: Flask, accounts: Services, alice: FlaskClient,
        carol_key: Keypair) -> None:
    link = link_on(add_on_admin_page(alice, "carol", carol_key))
    old = journalist_enrol(journalist_app.test_client(), link, CAROL).secret
    carol_id = account(accounts, "carol").id

    reset = post_admin(alice, f"/admin/journalists/{carol_id}/reset-2fa")

    assert reset.status_code == 200
    second = link_on(reset)
    assert account(accounts, "carol").totp_secret is None
    assert log_in(journalist_app, accounts, "carol", CAROL, old)[1] == 401
    # Whoever holds the link without the passphrase gets nowhere, and is throttled.
    holder = journalist_app.test_client()
    for _ in range(5):
        guess = journalist_enrol(holder, second, "a-guessed-passphrase", kept=True)
        assert guess.page.status_code == 400
        assert "the passphrase or the code is wrong" in guess.page.text
    assert account(accounts, "carol").failed_logins == 5
    throttled = journalist_enrol(holder, second, CAROL, kept=True)
    assert throttled.page.status_code == 400
    assert account(accounts, "carol").totp_secret is None

    with accounts.sessions() as db:
        db.execute(update(Journalist).where(Journalist.username == "carol").values(
            failures_since=datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=2)))
        db.commit()
    carol = journalist_app.test_client()
    enrolled = journalist_enrol(carol, second, CAROL, kept=True)
    assert enrolled.page.status_code == 302
    assert log_in(journalist_app, accounts, "carol", CAROL, enrolled.secret)[1] == 302


# --- changing them later ----------------------------------------------------------------------


@pytest.fixture
def carol(journalist_app: Flask, accounts: Services, alice: FlaskClient,
          carol_key: Keypair) -> tuple[FlaskClient, bytes]:
    """Carol, enrolled through the admin's link and logged in; her secret."""
    link = link_on(add_on_admin_page(alice, "carol", carol_key))
    client = journalist_app.test_client()
    enrolled = journalist_enrol(client, link, CAROL)
    assert enrolled.page.status_code == 302
    return client, enrolled.secret


def post_account(client: FlaskClient, path: str, **fields: str) -> TestResponse:
    """Post a form of the account page and follow it back there."""
    token = csrf_token(client.get("/account").text)
    return client.post(path, data={"csrf_token": token, **fields}, follow_redirects=True)


def test_carol_changes_her_passphrase_with_the_current_one_and_a_code(
        journalist_app: Flask, accounts: Services, carol: tuple[FlaskClient, bytes]) -> None:
    client, secret = carol
    elsewhere, status = log_in(journalist_app, accounts, "carol", CAROL, secret)
    assert status == 302
    new = "carols-second-passphrase"

    wrong = post_account(client, "/account/passphrase", current="not-her-passphrase",
                         code=next_code(accounts, "carol", secret), passphrase=new,
                         repeated=new)
    assert "Passphrase not changed: your current passphrase or two-factor code is wrong" \
        in wrong.text
    assert account(accounts, "carol").failed_logins == 1

    page = post_account(client, "/account/passphrase", current=CAROL,
                        code=next_code(accounts, "carol", secret), passphrase=new,
                        repeated=new)

    assert "Passphrase changed." in page.text
    assert client.get("/").status_code == 200  # this session stays
    assert elsewhere.get("/").status_code == 302  # the other one ended
    assert log_in(journalist_app, accounts, "carol", CAROL, secret)[1] == 401
    assert log_in(journalist_app, accounts, "carol", new, secret)[1] == 302
    assert ("carol", "passphrase", "carol") in events(accounts)


def test_carol_sets_up_two_factor_again_and_the_old_secret_stops_working(
        journalist_app: Flask, accounts: Services, carol: tuple[FlaskClient, bytes]) -> None:
    client, old = carol
    new = shown_secret(client.get("/account"))
    assert new != old
    assert shown_secret(client.get("/account")) == new  # the same until used

    page = post_account(client, "/account/two-factor", current=CAROL,
                        code=next_code(accounts, "carol", old), new_code=code_now(new))

    assert "Two-factor changed" in page.text
    assert account(accounts, "carol").totp_secret == new
    assert log_in(journalist_app, accounts, "carol", CAROL, old)[1] == 401
    assert log_in(journalist_app, accounts, "carol", CAROL, new)[1] == 302
    assert ("carol", "two-factor", "carol") in events(accounts)


def test_two_factor_is_not_changed_without_a_code_from_the_old_secret(
        accounts: Services, carol: tuple[FlaskClient, bytes]) -> None:
    client, old = carol
    new = shown_secret(client.get("/account"))

    page = post_account(client, "/account/two-factor", current=CAROL, code="",
                        new_code=code_now(new))

    assert "Two-factor not changed" in page.text
    assert account(accounts, "carol").totp_secret == old


@pytest.mark.parametrize("path", ["/account/passphrase", "/account/two-factor"])
def test_account_forms_need_a_csrf_token(carol: tuple[FlaskClient, bytes], path: str) -> None:
    client, _ = carol
    assert client.post(path, data={"current": CAROL}).status_code == 400


# --- who did it -------------------------------------------------------------------------------


def test_every_admin_action_on_carols_account_is_recorded_under_the_admins_name(
        accounts: Services, alice: FlaskClient,
        carol: tuple[FlaskClient, bytes], other_key: Keypair) -> None:
    carol_client, _ = carol
    carol_id = account(accounts, "carol").id
    assert post_admin(alice, f"/admin/journalists/{carol_id}/reset-2fa").status_code == 200
    page = alice.post(f"/admin/journalists/{carol_id}/key", content_type="multipart/form-data",
                      data={"csrf_token": csrf_token(alice.get("/admin/").text),
                            "key": (io.BytesIO(other_key.public_key.read_bytes()), "k.asc")})
    assert page.status_code == 302

    mine = [e for e in events(accounts) if e[2] == "carol"]
    assert mine == [("alice", "added", "carol"), ("alice", "enrolment-link", "carol"),
                    ("carol", "enrolled", "carol"), ("alice", "two-factor-link", "carol"),
                    ("alice", "key", "carol")]
    # Carol was logged out by the reset; once back, her account page names alice.
    assert carol_client.get("/").status_code == 302
    assert post_admin(alice, f"/admin/journalists/{carol_id}/remove",
                      confirm="yes").status_code == 302
    assert events(accounts)[-1] == ("alice", "removed", "carol")
    history = alice.get("/admin/").text
    assert "replaced the key" in history
    assert "removed the account" in history


def test_carol_sees_who_changed_her_account(carol: tuple[FlaskClient, bytes]) -> None:
    client, _ = carol
    page = client.get("/account")
    assert page.status_code == 200
    table = page.text.split('id="account-events"', 1)[1]
    assert "alice" in table
    assert "issued an enrolment link" in table


# --- the server's command line ----------------------------------------------------------------


def test_cli_add_prints_an_enrolment_link_and_no_secret(
        journalist_app: Flask, accounts: Services, carol_key: Keypair) -> None:
    result = run_desk("journalist", "add", "carol", "--key", str(carol_key.public_key),
                      "--base-url", "http://example.onion/",
                      data_dir=accounts.config.data_dir)

    assert result.returncode == 0, result.stderr
    assert "TOTP secret" not in result.stdout
    lines = [line.strip() for line in result.stdout.splitlines() if "/enrol/" in line]
    assert len(lines) == 1
    assert lines[0].startswith("http://example.onion/enrol/")
    row = account(accounts, "carol")
    assert (row.password_hash, row.totp_secret) == (None, None)
    enrolled = journalist_enrol(journalist_app.test_client(), lines[0], CAROL)
    assert enrolled.page.status_code == 302
    assert events(accounts)[-3:] == [("desk-cli", "added", "carol"),
                                     ("desk-cli", "enrolment-link", "carol"),
                                     ("carol", "enrolled", "carol")]
    assert base64.b32encode(enrolled.secret).decode() not in result.stdout


def test_cli_reset_login_prints_a_link_for_a_new_passphrase(
        journalist_app: Flask, accounts: Services) -> None:
    result = run_desk("journalist", "reset-login", "bob", data_dir=accounts.config.data_dir)

    assert result.returncode == 0, result.stderr
    link = next(line.strip() for line in result.stdout.splitlines() if "/enrol/" in line)
    assert link.startswith("http://<journalist-onion-address>/enrol/")
    bob = journalist_app.test_client()
    assert journalist_log_in(bob, accounts, "bob", code="000000").status_code == 401
    enrolled = journalist_enrol(bob, link, "bobs-brand-new-passphrase")
    assert enrolled.page.status_code == 302
    assert fresh_code(accounts, "bob")  # bob has a secret again: his own
