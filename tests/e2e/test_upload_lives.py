"""How long a tus upload lives and who may reach it, through a real server (review 2, findings
12 and 13).

An upload belongs to its source's codename, not to the session that made it: after the session
ends (30 idle minutes, as when Tor Browser backs off for a while), the same codename logs in
again and the upload resumes where it stopped; no other codename can see or touch it. Deleting
the source removes its uploads in progress, their rows and their ciphertext.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import update

from desk.records.models import SourceSession, Upload
from desk.services import Services
from desk.web.sessions import token_hash
from tests.harness.data import KiB
from tests.harness.desks import PASSWORDS, fresh_code
from tests.harness.gpg import Keypair
from tests.harness.http import (
    COOKIE,
    TIMEOUT,
    HttpBrowser,
    journalist_session,
    post_journalist_form,
)
from tests.harness.servers import Server, start_server
from tests.harness.tus import metadata, only_object, upload_folder, upload_rows


@pytest.fixture
def newsroom(accounts: Services, tmp_path: Path) -> Iterator[Server]:
    """The journalist interface of `accounts` under gunicorn."""
    started = start_server(accounts.config.data_dir, "journalist",
                           log=tmp_path / "newsroom.log", timeout=30)
    yield started
    started.stop(timeout=30)


def end_session(desk: Services, browser: HttpBrowser) -> None:
    """Make the browser's session end as 30 idle minutes end it: its row's day is past."""
    token = browser.http.cookies.get(COOKIE)
    assert token is not None
    with desk.writers() as db:
        db.execute(update(SourceSession).where(SourceSession.id == token_hash(token))
                   .values(expires_on=datetime.now(UTC).date() - timedelta(days=1)))
        db.commit()


def test_an_upload_resumes_after_its_session_ends_and_the_codename_logs_in_again(
        desk: Services, server: Server, journalist: Keypair) -> None:
    clip = os.urandom(300 * KiB)
    first = HttpBrowser.with_codename(server.url)
    assert first.codename is not None
    tus = first.session()
    location = tus.new_upload(len(clip), metadata("clip.mp4", "video/mp4"))
    assert tus.patch(location, 0, clip[:100 * KiB]).status_code == 204

    end_session(desk, first)
    ended = tus.request("HEAD", location)
    again = HttpBrowser(server.url)
    again.log_in(first.codename)
    resumed = again.session()
    other = HttpBrowser.with_codename(server.url).session()

    assert ended.status_code == 404  # the ended session itself reaches nothing
    # Another codename can neither see, write nor delete it.
    assert other.request("HEAD", location).status_code == 404
    assert other.patch(location, 100 * KiB, clip[100 * KiB:]).status_code == 404
    assert other.request("DELETE", location).status_code == 404
    # The same codename, in a new session, resumes at the offset it had reached.
    assert resumed.offset(location) == 100 * KiB
    assert resumed.patch(location, 100 * KiB, clip[100 * KiB:]).status_code == 204
    stored = only_object(desk, journalist)
    assert stored.plaintext == clip
    assert stored.record["filename"] == "clip.mp4"
    assert upload_rows(desk) == []


def test_deleting_a_source_removes_its_uploads_files_and_rows(
        accounts: Services, server: Server, newsroom: Server) -> None:
    desk = accounts
    source = HttpBrowser.with_codename(server.url)
    tus = source.session()
    started = tus.new_upload(300 * KiB, metadata("half.mp4"))
    assert tus.patch(started, 0, os.urandom(100 * KiB)).status_code == 204
    empty = tus.new_upload(300 * KiB, metadata("none.mp4"))
    folders = [upload_folder(desk, started), upload_folder(desk, empty)]
    assert all(folder.is_dir() for folder in folders)
    with desk.sessions() as db:
        source_id = db.get(Upload, folders[0].name).source_id  # type: ignore[union-attr]
    assert any(folders[0].iterdir())

    alice = journalist_session(newsroom.url, "alice", PASSWORDS["alice"],
                               fresh_code(accounts, "alice"))
    page = f"/sources/{source_id}"
    answer = post_journalist_form(alice, newsroom.url, page, f"{page}/delete",
                                  {"confirm": "yes"})

    assert answer.status_code == 302
    assert upload_rows(desk) == []
    assert [folder for folder in folders if folder.exists()] == []
    assert list(desk.store.uploads.iterdir()) == []
    # The deleted source's session reaches nothing any more.
    assert tus.request("HEAD", started).status_code in (403, 404)
    assert requests.get(server.url + "/submit", headers={"Cookie": tus.cookie},
                        timeout=TIMEOUT, allow_redirects=False).status_code == 302
