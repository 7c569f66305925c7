"""Page views through a real server cost the desk no durable write (review 2, finding 14).

A visitor without a cookie who opens the landing and login pages gets a cookie whose token
derives the forms' CSRF secret, and no session row: nothing is inserted, nothing committed, so
a flood of cookieless views cannot keep SQLite writing and fsyncing. The forms still work, and
a session gets its row once it has something to keep (a codename).
"""

from __future__ import annotations

from pathlib import Path

import requests
from sqlalchemy import func, select

from desk.records.models import SourceSession
from desk.services import Services
from tests.harness.forms import CODENAME_RE, csrf_token
from tests.harness.http import COOKIE, TIMEOUT
from tests.harness.servers import Server

VIEWS = 60  # bounded: each kind of page, thirty times, from a client that keeps no cookie


def session_rows(desk: Services) -> int:
    """How many source session rows the database holds."""
    with desk.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(SourceSession)) or 0)


def wal_bytes(desk: Services) -> bytes:
    """The database's write-ahead log as it is now: every commit appends to it."""
    wal = Path(f"{desk.config.database_url.removeprefix('sqlite:///')}-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_cookieless_page_views_write_no_session_row(desk: Services, server: Server) -> None:
    before, log_before = session_rows(desk), wal_bytes(desk)

    cookies = set()
    for number in range(VIEWS):
        page = requests.get(server.url + ("/", "/login")[number % 2], timeout=TIMEOUT)
        assert page.status_code == 200
        assert csrf_token(page.text)
        cookies.add(page.cookies[COOKIE])

    assert session_rows(desk) == before
    assert wal_bytes(desk) == log_before  # not one commit
    assert len(cookies) == VIEWS  # each visitor still got a token of its own
    # The landing page's form works with the cookie alone, and the session that now holds a
    # codename has its row.
    with requests.Session() as browser:
        landing = browser.get(server.url + "/", timeout=TIMEOUT)
        made = browser.post(server.url + "/generate", timeout=TIMEOUT,
                            data={"csrf_token": csrf_token(landing.text)})
        assert made.status_code == 200
        assert CODENAME_RE.search(made.text)
        assert browser.get(server.url + "/submit", timeout=TIMEOUT,
                           allow_redirects=False).status_code == 200
    assert session_rows(desk) == before + 1
