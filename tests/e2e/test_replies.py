"""Replies, end to end: a source submits, a journalist exports, the offline console writes an
end-to-end reply, the journalist uploads it, and the source logs in with the codename on a real
server and reads it. The reply's text never reaches the server's disk in any form."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import select

from desk.records.models import Reply, Source
from desk.services import Services
from tests.harness.console import ok, review
from tests.harness.desks import find_markers, run_desk
from tests.harness.forms import csrf_token
from tests.harness.gpg import Keypair
from tests.harness.http import HttpBrowser
from tests.harness.servers import Server
from tests.harness.web import SourceBrowser, upload_reply

REPLY_MARK = "RPL-93d1-marker: where exactly was this filmed? قطار"
WEB_MARK = "WEB-5c2e-marker: do you have the original file?"


def source_row(services: Services) -> Source:
    """The one source."""
    with services.sessions() as session:
        return session.scalars(select(Source)).one()


def server_disk(services: Services, server: Server | None = None) -> list[Path]:
    """Everything the server wrote: data dir (DB, WAL, store, keyring) and its temp dir."""
    roots = [services.config.data_dir]
    if server is not None:
        roots.append(server.tmpdir)
    return roots


def test_end_to_end_reply_reaches_the_source_and_never_the_disk(
        accounts: Services, alice: FlaskClient, server: Server, journalist: Keypair,
        tmp_path: Path) -> None:
    markers = [REPLY_MARK.encode(), REPLY_MARK.split(":")[0].encode()]
    # A source gets a codename and sends a message through the real server.
    source_browser = HttpBrowser(server.url)
    codename = source_browser.get_codename(timeout=60)
    token = source_browser.form_token()
    sent = source_browser.http.post(f"{server.url}/submit", files={
        "csrf_token": (None, token), "message": (None, "the platform footage")}, timeout=60)
    assert sent.status_code == 200
    source = source_row(accounts)
    assert source.reply_public_key is not None

    # The journalist exports; the offline machine imports and writes an end-to-end reply.
    bundle = tmp_path / "bundle.tar"
    exported = run_desk("export", "--out", str(bundle), "--all",
                        data_dir=accounts.config.data_dir)
    assert exported.returncode == 0, exported.stderr
    workspace = tmp_path / "ws"
    ok(review(workspace, journalist.home, "import", str(bundle)))
    message = tmp_path / "question.txt"
    message.write_text(REPLY_MARK + "\n", encoding="utf-8")
    reply_file = tmp_path / "reply.desk"
    out = ok(review(workspace, journalist.home, "reply", source.designation,
                    "--message-file", str(message), "--out", str(reply_file)))
    assert source.designation in out
    data = reply_file.read_bytes()
    assert not any(marker in data for marker in markers)

    # Uploaded through the journalist interface: stored, recorded, unreadable to the desk.
    page = upload_reply(alice, source, data)
    assert "Reply 1 to" in page
    assert "offline (end to end)" in page
    with accounts.sessions() as session:
        reply = session.scalars(select(Reply)).one()
        assert (reply.via, reply.author, reply.number) == ("console", "alice", 1)
    assert find_markers(markers, *server_disk(accounts, server)) == []
    verified = run_desk("custody", "verify", data_dir=accounts.config.data_dir)
    assert verified.returncode == 0, verified.stderr
    assert "1 replies match" in verified.stdout

    # The source comes back in a fresh browser, logs in and reads it.
    returning = HttpBrowser(server.url)
    returning.log_in(codename)
    shown = returning.http.get(f"{server.url}/submit", timeout=30)
    assert REPLY_MARK in shown.text
    assert find_markers(markers, *server_disk(accounts, server)) == []

    # And can still send more after logging in.
    token = csrf_token(shown.text)
    more = returning.http.post(f"{server.url}/submit", files={
        "csrf_token": (None, token), "message": (None, "the original is on my phone")},
        timeout=60)
    assert more.status_code == 200
    with accounts.sessions() as session:
        assert len(session.scalars(select(Source)).all()) == 1

    # The reply's journalists' copy travels in the next bundle and the console shows it.
    second = tmp_path / "bundle2.tar"
    assert run_desk("export", "--out", str(second), "--all",
                    data_dir=accounts.config.data_dir).returncode == 0
    ok(review(workspace, journalist.home, "import", str(second)))
    history = ok(review(workspace, journalist.home, "replies", source.designation))
    assert REPLY_MARK in history
    assert "#1" in history
    assert "by alice" in history


def test_a_reply_file_cannot_be_uploaded_twice_or_for_another_source(
        accounts: Services, alice: FlaskClient, journalist: Keypair, tmp_path: Path) -> None:
    app_client = _source_client(accounts)
    first, second = SourceBrowser(app_client), SourceBrowser(_source_client(accounts))
    first.get_codename()
    first.send("one")
    second.get_codename()
    second.send("two")
    bundle = tmp_path / "b.tar"
    assert run_desk("export", "--out", str(bundle), "--all",
                    data_dir=accounts.config.data_dir).returncode == 0
    workspace = tmp_path / "ws"
    ok(review(workspace, journalist.home, "import", str(bundle)))
    with accounts.sessions() as session:
        sources = session.scalars(select(Source).order_by(Source.designation)).all()
    message = tmp_path / "m.txt"
    message.write_text("a question")
    reply_file = tmp_path / "r.desk"
    ok(review(workspace, journalist.home, "reply", sources[0].designation,
              "--message-file", str(message), "--out", str(reply_file)))
    data = reply_file.read_bytes()
    wrong = upload_reply(alice, sources[1], data)
    assert "written for another source" in wrong
    assert "Reply 1 to" in upload_reply(alice, sources[0], data)
    again = upload_reply(alice, sources[0], data)
    assert "already sent" in again
    with accounts.sessions() as session:
        assert len(session.scalars(select(Reply)).all()) == 1


def _source_client(services: Services) -> FlaskClient:
    from desk.app import create_app
    return create_app(services.config, "source", services=services).test_client()


def test_web_reply_is_sealed_and_the_source_can_delete_it(
        accounts: Services, alice: FlaskClient, tmp_path: Path) -> None:
    source_client = _source_client(accounts)
    browser = SourceBrowser(source_client)
    browser.get_codename()
    browser.send("hello")
    source = source_row(accounts)
    page = alice.get(f"/sources/{source.id}")
    assert "This server sees what you type here" in page.text
    sent = alice.post(f"/sources/{source.id}/replies", data={
        "csrf_token": csrf_token(page.text), "text": WEB_MARK}, follow_redirects=True)
    assert "Reply 1 to" in sent.text
    assert "in this interface" in sent.text
    assert find_markers([WEB_MARK.encode()], accounts.config.data_dir) == []

    shown = source_client.get("/submit")
    assert WEB_MARK in shown.text
    with accounts.sessions() as session:
        reply = session.scalars(select(Reply)).one()
    box = accounts.store.reply_path(reply.id) / "box"
    assert box.exists()
    deleted = source_client.post("/replies/delete", data={
        "csrf_token": csrf_token(shown.text), "reply": reply.id})
    assert deleted.status_code == 302
    assert WEB_MARK not in source_client.get("/submit").text
    assert not box.exists()
    history = alice.get(f"/sources/{source.id}").text
    assert "deleted it" in history
    # The journalists' copy stays, and custody still verifies it.
    verified = run_desk("custody", "verify", data_dir=accounts.config.data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
