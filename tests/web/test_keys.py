"""Journalist key policy: which keys the desk pins, which it refuses and why, and what happens to
sources when no pinned key is usable. Keys are made and checked with stock gpg."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask, session
from flask.testing import FlaskClient
from flask_wtf.csrf import generate_csrf
from sqlalchemy import select

from crypto.items import padme
from desk.app import create_app
from desk.config import Config, load_config
from desk.errors import JournalistError
from desk.records.accounts import add_journalist
from desk.records.models import Item, Journalist, Source
from desk.services import Services, open_services
from tests.harness.desks import files_under, run_desk
from tests.harness.forms import FormBody
from tests.harness.gpg import Keypair, gpg, make_keypair, revoke
from tests.harness.web import SourceBrowser

SPACED_FINGERPRINT_RE = re.compile(r"\b(?:[0-9A-F]{4} ){9}[0-9A-F]{4}\b")

@dataclass(frozen=True)
class RefusedKey:
    """A key file the desk must refuse, and a word its refusal must contain."""

    path: Path
    reason: str


@pytest.fixture(scope="module")
def refused_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RefusedKey]:
    """Every kind of key file the desk refuses, made once for the module."""
    base = tmp_path_factory.mktemp("refused-keys")
    weak = make_keypair(base / "weak", "Weak", algorithm="rsa2048", subkey="rsa2048")
    weak_subkey = make_keypair(base / "weaksub", "Weaksub", algorithm="rsa3072",
                               subkey="rsa2048")
    expired = make_keypair(base / "expired", "Expired", expire="1d",
                           faked_time="20200101T000000")
    sign_only = make_keypair(base / "signonly", "Signonly", usage="sign", subkey=None)
    cert_only = make_keypair(base / "certonly", "Certonly", usage="cert", subkey=None)
    revoked = make_keypair(base / "revoked", "Revoked")
    revoke(revoked)
    holder = make_keypair(base / "holder", "Holder")
    other = make_keypair(base / "other", "Other")
    secret = base / "secret.asc"
    secret.write_bytes(gpg(holder.home, "--armor", "--export-secret-keys").stdout)
    two = base / "two.asc"
    two.write_bytes(holder.public_key.read_bytes() + other.public_key.read_bytes())
    garbage = base / "garbage.asc"
    garbage.write_bytes(b"-----BEGIN NOTHING-----\n\x00\xff not a key \x01\x02" * 20)
    return {
        "weak": RefusedKey(weak.public_key, "RSA-2048 is too weak"),
        "weak-subkey": RefusedKey(weak_subkey.public_key, "RSA-2048 is too weak"),
        "expired": RefusedKey(expired.public_key, "expired"),
        "sign-only": RefusedKey(sign_only.public_key, "cannot encrypt"),
        "cert-only": RefusedKey(cert_only.public_key, "cannot encrypt"),
        "revoked": RefusedKey(revoked.public_key, "revoked"),
        "secret": RefusedKey(secret, "secret key"),
        "two-keys": RefusedKey(two, "holds 2 keys"),
        "garbage": RefusedKey(garbage, "no OpenPGP key"),
    }


@pytest.fixture(scope="module")
def other_keypair(tmp_path_factory: pytest.TempPathFactory) -> Keypair:
    """A valid key that no journalist account pins."""
    return make_keypair(tmp_path_factory.mktemp("other") / "mallory", "Mallory")


@pytest.fixture(scope="module")
def expiring_keypair(tmp_path_factory: pytest.TempPathFactory) -> Keypair:
    """A valid key (primary and subkey) that expires in ten days."""
    return make_keypair(tmp_path_factory.mktemp("expiring") / "carol", "Carol", expire="10d")


@pytest.fixture
def fresh_keypair(tmp_path: Path) -> Keypair:
    """A valid key of this test alone, free to revoke."""
    return make_keypair(tmp_path / "keys" / "dave", "Dave")


@pytest.fixture
def cli_desk(tmp_path: Path) -> Path:
    """A data directory set up by `desk init`."""
    data = tmp_path / "cli-data"
    run_desk("init", data_dir=data, check=True)
    return data


@pytest.fixture(scope="module")
def refusing_cli_desk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory set up by `desk init`, shared by tests that only see refusals."""
    data = tmp_path_factory.mktemp("refusing") / "cli-data"
    run_desk("init", data_dir=data, check=True)
    return data


def cli_journalists(data_dir: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """The accounts (username, fingerprint) and the keyring's fingerprints at `data_dir`.

    Read through the desk's own GnuPG wrapper, as the desk itself sees them.
    """
    services = open_services(load_config({"DESK_DATA": str(data_dir)}))
    try:
        return journalist_rows(services), [k.fingerprint for k in services.gpg.list_keys()]
    finally:
        services.engine.dispose()


def journalist_rows(services: Services) -> list[tuple[str, str]]:
    """(username, fingerprint) of every journalist account."""
    with services.sessions() as session:
        return [(j.username, j.fingerprint) for j in session.scalars(select(Journalist))]


def add(services: Services, username: str, key_file: Path) -> None:
    """Add a journalist and commit, as `desk journalist add` does."""
    with services.sessions() as session:
        add_journalist(session, services.gpg, username, key_file.read_bytes())
        session.commit()


def revoke_in_desk(config: Config, keypair: Keypair) -> None:
    """Revoke `keypair` and import only its revocation certificate into the desk's keyring."""
    gpg(config.gnupg_home, "--import", stdin=revoke(keypair))


def spaced(fingerprint: str) -> str:
    """A fingerprint in groups of four, as the CLI prints it."""
    return " ".join(fingerprint[i:i + 4] for i in range(0, 40, 4))


# Refused keys

ALL_REFUSED = ["weak", "weak-subkey", "expired", "sign-only", "cert-only", "revoked", "secret",
               "two-keys", "garbage"]
REASON_CASES = ALL_REFUSED


@pytest.mark.parametrize("case", ALL_REFUSED)
def test_refused_key_is_not_imported_and_no_account_is_made(
        empty_desk: Services, refused_keys: dict[str, RefusedKey], case: str) -> None:
    with empty_desk.sessions() as session, pytest.raises(JournalistError, match="key refused"):
        add_journalist(session, empty_desk.gpg, "bob", refused_keys[case].path.read_bytes())

    assert empty_desk.gpg.list_keys() == []
    assert journalist_rows(empty_desk) == []
    assert empty_desk.recipients.current() == []


@pytest.mark.parametrize("case", REASON_CASES)
def test_refusal_names_the_problem(
        empty_desk: Services, refused_keys: dict[str, RefusedKey], case: str) -> None:
    with empty_desk.sessions() as session, pytest.raises(JournalistError) as refused:
        add_journalist(session, empty_desk.gpg, "bob", refused_keys[case].path.read_bytes())

    assert refused_keys[case].reason in str(refused.value)


def test_weak_rsa_refusal_names_both_sizes(
        empty_desk: Services, refused_keys: dict[str, RefusedKey]) -> None:
    for case in ("weak", "weak-subkey"):
        with empty_desk.sessions() as session, pytest.raises(JournalistError) as refused:
            add_journalist(session, empty_desk.gpg, "bob", refused_keys[case].path.read_bytes())
        assert "2048" in str(refused.value)
        assert "3072" in str(refused.value)


@pytest.mark.parametrize("case", [
    "weak", "sign-only", "secret", "two-keys", "garbage", "expired",
])
def test_cli_refuses_key_with_one_line_naming_the_problem(
        refusing_cli_desk: Path, refused_keys: dict[str, RefusedKey], case: str) -> None:
    result = run_desk("journalist", "add", "bob", "--key", str(refused_keys[case].path),
                      data_dir=refusing_cli_desk)

    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("desk: ")
    assert refused_keys[case].reason in lines[0]
    assert "Pinned" not in result.stdout
    assert cli_journalists(refusing_cli_desk) == ([], [])


# Accepted keys


@pytest.mark.parametrize("name", ["journalist", "second_journalist"])
def test_ed25519_and_rsa3072_keys_are_pinned(
        empty_desk: Services, request: pytest.FixtureRequest, name: str) -> None:
    keypair: Keypair = request.getfixturevalue(name)
    add(empty_desk, "bob", keypair.public_key)

    assert journalist_rows(empty_desk) == [("bob", keypair.fingerprint)]
    assert [key.fingerprint for key in empty_desk.gpg.list_keys()] == [keypair.fingerprint]
    empty_desk.recipients.invalidate()
    assert empty_desk.recipients.current() == [keypair.fingerprint]


def test_cli_prints_and_lists_the_pinned_fingerprint(
        cli_desk: Path, second_journalist: Keypair) -> None:
    result = run_desk("journalist", "add", "bob", "--key", str(second_journalist.public_key),
                      "--admin", data_dir=cli_desk)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"Pinned key fingerprint: {spaced(second_journalist.fingerprint)}" in result.stdout
    assert SPACED_FINGERPRINT_RE.findall(result.stdout) == [spaced(second_journalist.fingerprint)]
    listing = run_desk("journalist", "list", data_dir=cli_desk, check=True)
    assert listing.stdout.splitlines() == [f"bob\tadmin\t{second_journalist.fingerprint}"]


def test_same_username_twice_is_refused(
        empty_desk: Services, journalist: Keypair, second_journalist: Keypair) -> None:
    add(empty_desk, "bob", journalist.public_key)

    with pytest.raises(JournalistError, match="'bob' already exists"):
        add(empty_desk, "bob", second_journalist.public_key)
    assert journalist_rows(empty_desk) == [("bob", journalist.fingerprint)]
    assert [key.fingerprint for key in empty_desk.gpg.list_keys()] == [journalist.fingerprint]


@pytest.mark.parametrize(("username", "reason"), [
    ("retention", "reserved"), ("desk-cli", "reserved"), ("alice\n", "usernames are"),
    ("Alice", "usernames are"), ("a" * 65, "usernames are"),
])
def test_usernames_that_custody_could_not_tell_apart_are_refused(
        empty_desk: Services, journalist: Keypair, username: str, reason: str) -> None:
    with pytest.raises(JournalistError, match=reason):
        add(empty_desk, username, journalist.public_key)
    assert journalist_rows(empty_desk) == []
    assert empty_desk.gpg.list_keys() == []


def test_same_key_for_a_second_username_is_refused(
        empty_desk: Services, journalist: Keypair) -> None:
    add(empty_desk, "bob", journalist.public_key)

    with pytest.raises(JournalistError, match=f"{journalist.fingerprint} already belongs"):
        add(empty_desk, "carol", journalist.public_key)
    assert journalist_rows(empty_desk) == [("bob", journalist.fingerprint)]


def test_cli_refuses_same_key_for_a_second_username(
        cli_desk: Path, journalist: Keypair) -> None:
    run_desk("journalist", "add", "bob", "--key", str(journalist.public_key), data_dir=cli_desk,
             check=True)
    result = run_desk("journalist", "add", "carol", "--key", str(journalist.public_key),
                      data_dir=cli_desk)

    assert result.returncode != 0
    assert result.stderr.startswith("desk: ")
    assert "already belongs to 'bob'" in result.stderr
    assert cli_journalists(cli_desk) == ([("bob", journalist.fingerprint)],
                                         [journalist.fingerprint])


# Encrypting only to pinned keys


def encryption_key_ids(keypair: Keypair) -> set[str]:
    """The long key ids of `keypair`'s encryption subkeys."""
    listing = gpg(keypair.home, "--with-colons", "--list-keys").stdout.decode()
    return {line.split(":")[4] for line in listing.splitlines()
            if line.startswith("sub:") and "e" in line.split(":")[11]}


def test_desk_encrypts_only_to_pinned_keys(
        desk: Services, source: SourceBrowser, journalist: Keypair,
        other_keypair: Keypair) -> None:
    gpg(desk.config.gnupg_home, "--import", str(other_keypair.public_key))
    assert other_keypair.fingerprint in {key.fingerprint for key in desk.gpg.list_keys()}
    desk.recipients.invalidate()
    assert desk.recipients.current() == [journalist.fingerprint]

    assert source.send("to alice only", (("clip.mp4", b"frames" * 1000),)).status_code == 200

    stored = sorted((desk.config.store_dir / "objects").rglob("*.gpg"))
    assert len(stored) == 4  # meta.gpg and one part for the message and for the file
    plaintexts = []
    for part in stored:
        assert gpg(other_keypair.home, "--decrypt", str(part), check=False).returncode != 0
        plaintexts.append(journalist.decrypt(part))
        packets = gpg(journalist.home, "--list-packets", str(part)).stdout.decode()
        key_ids = set(re.findall(r":pubkey enc packet: .*keyid ([0-9A-F]{16})", packets))
        assert key_ids == encryption_key_ids(journalist)
    # Each part is the item padded with zeros to Padmé of its size.
    for item in (b"to alice only", b"frames" * 1000):
        assert item + bytes(padme(len(item)) - len(item)) in plaintexts


# `desk keys check`


def test_keys_check_reports_a_valid_key_as_ok(desk: Services, journalist: Keypair) -> None:
    result = run_desk("keys", "check", data_dir=desk.config.data_dir)

    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("alice\t")]
    assert line.split("\t") == ["alice", journalist.fingerprint, "EdDSA ed25519", "no expiry",
                                "ok"]
    assert "Accepting submissions: encrypting to 1 key(s)." in result.stdout


def test_keys_check_warns_about_a_key_expiring_soon(
        empty_desk: Services, expiring_keypair: Keypair) -> None:
    add(empty_desk, "carol", expiring_keypair.public_key)

    result = run_desk("keys", "check", data_dir=empty_desk.config.data_dir)

    assert result.returncode == 1
    assert expiring_keypair.fingerprint in result.stdout
    assert re.search(r"WARNING: expires in (9|10) days", result.stdout), result.stdout
    soon = (datetime.now(UTC) + timedelta(days=10)).date()
    assert f"expires {soon:%Y-%m-%d}" in result.stdout \
        or f"expires {soon - timedelta(days=1):%Y-%m-%d}" in result.stdout
    # Still usable until it expires.
    assert "Accepting submissions" in result.stdout


def test_keys_check_without_journalists_says_not_accepting(empty_desk: Services) -> None:
    result = run_desk("keys", "check", data_dir=empty_desk.config.data_dir)

    assert result.returncode == 1
    assert "NOT accepting submissions" in result.stdout


def test_keys_check_reports_a_revoked_pinned_key_as_unusable(
        empty_desk: Services, fresh_keypair: Keypair) -> None:
    add(empty_desk, "dave", fresh_keypair.public_key)
    revoke_in_desk(empty_desk.config, fresh_keypair)

    result = run_desk("keys", "check", data_dir=empty_desk.config.data_dir)

    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("dave\t")]
    assert fresh_keypair.fingerprint in line
    assert "UNUSABLE" in line
    assert "revoked" in line
    assert "NOT accepting submissions" in result.stdout


# No valid key: the source interface refuses everything


def assert_not_accepting(client: FlaskClient, token: str) -> None:
    """Every source page answers 503 with the calm not-accepting message."""
    body = FormBody().field("csrf_token", token).field("message", "hello") \
        .file("clip.mp4", b"frames" * 100)
    responses = {
        "GET /": client.get("/"),
        "POST /generate": client.post("/generate", data={"csrf_token": token}),
        "GET /submit": client.get("/submit"),
        "POST /submit": client.post("/submit", data=body.encode(),
                                    content_type=body.content_type),
    }
    for name, response in responses.items():
        assert response.status_code == 503, name
        assert "not accepting submissions" in response.text, name


def stored_rows(services: Services) -> tuple[int, int]:
    """How many Submission and Source rows the desk holds."""
    with services.sessions() as session:
        return (len(session.scalars(select(Item)).all()),
                len(session.scalars(select(Source)).all()))


def csrf_token_for(app: Flask, client: FlaskClient) -> str:
    """A valid CSRF token in `client`'s session, as if a page had been opened earlier."""
    with app.test_request_context():
        token = generate_csrf()
        raw = session["csrf_token"]
    with client.session_transaction() as cookie_session:
        cookie_session["csrf_token"] = raw
    return token


def test_desk_without_journalists_refuses_every_source_page(empty_desk: Services) -> None:
    app = create_app(empty_desk.config, "source", services=empty_desk)
    client = app.test_client()

    assert_not_accepting(client, csrf_token_for(app, client))

    assert files_under(empty_desk.config.store_dir) == []
    assert stored_rows(empty_desk) == (0, 0)


def test_tokenless_generate_answers_503_without_keys(empty_desk: Services) -> None:
    client = create_app(empty_desk.config, "source", services=empty_desk).test_client()

    response = client.post("/generate", data={})

    assert response.status_code == 503
    assert "not accepting submissions" in response.text
    assert stored_rows(empty_desk) == (0, 0)


def test_desk_whose_only_key_is_revoked_refuses_every_source_page(
        empty_desk: Services, fresh_keypair: Keypair) -> None:
    add(empty_desk, "dave", fresh_keypair.public_key)
    client = create_app(empty_desk.config, "source", services=empty_desk).test_client()
    browser = SourceBrowser(client)
    browser.get_codename()
    token = browser.form_token()  # a source who opened the form while the key was valid

    revoke_in_desk(empty_desk.config, fresh_keypair)
    empty_desk.recipients.invalidate()

    assert empty_desk.recipients.current() == []
    assert_not_accepting(client, token)
    assert files_under(empty_desk.config.store_dir) == []
    assert stored_rows(empty_desk) == (0, 1)
