"""Deleting forgets: after journalists delete a source and an item on a real journalist
interface, a source deletes a reply on a real source interface, and `desk purge` runs, the raw
bytes of the database and its journals hold none of what was deleted: no id, lookup id or
designation, no ciphertext digest and no custody key, the custody log included (its entries
about a deleted item are commitments under the key that went with the item's row)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from desk.records.models import Item, Reply, Source
from desk.services import Services
from tests.harness.desks import PASSWORDS, fresh_code, run_desk
from tests.harness.http import HttpBrowser, journalist_session, post_journalist_form
from tests.harness.servers import Server, start_server

pytestmark = pytest.mark.slow

def database_files(data_dir: Path) -> list[Path]:
    """desk.db and every journal beside it (-wal, -shm, -journal)."""
    return sorted(path for path in data_dir.iterdir() if path.name.startswith("desk.db"))


def readable(data_dir: Path, needles: dict[str, str | bytes]) -> list[str]:
    """Which needles appear in the raw bytes of the database files (text as UTF-8; a hex
    digest also as its 32 raw bytes)."""
    found = []
    for path in database_files(data_dir):
        data = path.read_bytes()
        for label, needle in needles.items():
            forms = [needle] if isinstance(needle, bytes) else [needle.encode()]
            if isinstance(needle, str) and len(needle) == 64:
                forms.append(bytes.fromhex(needle))
            if any(form in data for form in forms):
                found.append(f"{label} in {path.name}")
    return found


@pytest.fixture
def newsroom(accounts: Services, tmp_path: Path) -> Iterator[Server]:
    """The journalist interface of `accounts` under gunicorn."""
    started = start_server(accounts.config.data_dir, "journalist",
                           log=tmp_path / "journalist.log", timeout=30)
    yield started
    started.stop(timeout=30)


def send(browser: HttpBrowser, message: str) -> None:
    fields: dict[str, tuple[str | None, bytes]] = {
        "csrf_token": (None, browser.form_token().encode()),
        "message": (None, message.encode()), "files": ("f.txt", message.encode())}
    sent = browser.http.post(f"{browser.url}/submit", files=fields, timeout=60)
    assert sent.status_code == 200, sent.status_code


def backdate(data_dir: Path, statement: str, *args: object) -> None:
    with sqlite3.connect(data_dir / "desk.db") as connection:
        connection.execute(statement, args)


def test_deleted_sources_items_and_replies_leave_no_trace_in_the_database(
        accounts: Services, server: Server, newsroom: Server) -> None:
    data_dir = accounts.config.data_dir
    doomed, kept, unused, expiring = (HttpBrowser(server.url) for _ in range(4))
    for browser in (doomed, kept, unused, expiring):
        browser.get_codename(timeout=60)
    for browser in (doomed, kept, expiring):
        send(browser, "the platform footage")
    send(kept, "and another")
    with accounts.sessions() as db:
        rows = list(db.scalars(select(Source)))
        items = {item.id: item for item in db.scalars(select(Item))}
    by_items: dict[int, list[Source]] = {}
    for row in rows:
        by_items.setdefault(sum(i.source_id == row.id for i in items.values()), []).append(row)
    kept_row, unused_row = by_items[4][0], by_items[0][0]
    doomed_row, expiring_row = by_items[2]

    alice = journalist_session(newsroom.url, "alice", PASSWORDS["alice"],
                               fresh_code(accounts, "alice"))
    for row in (doomed_row, kept_row, kept_row, expiring_row):
        page = f"/sources/{row.id}"
        assert post_journalist_form(alice, newsroom.url, page, f"{page}/replies",
                                    {"text": "thank you"}).status_code == 302
    with accounts.sessions() as db:
        replies = {reply.id: reply for reply in db.scalars(select(Reply))}

    def needles(source: Source, *, ids: bool = True) -> dict[str, str | bytes]:
        found: dict[str, str | bytes] = {"source id": source.id, "lookup id": source.lookup_id,
                                         "designation": source.designation}
        if ids:
            rows: list[Item | Reply] = [*items.values(), *replies.values()]
            for row in rows:
                if row.source_id == source.id:
                    found[f"id {row.id}"] = row.id
                    found[f"digest {row.id}"] = row.ciphertext_sha256
                    assert row.custody_key is not None
                    found[f"custody key {row.id}"] = row.custody_key
        return found

    everything = {**needles(doomed_row), **needles(unused_row), **needles(expiring_row)}
    assert readable(data_dir, everything)  # the scan finds what is there

    # A journalist deletes a source, and one item of another.
    page = f"/sources/{doomed_row.id}"
    assert post_journalist_form(alice, newsroom.url, page, f"{page}/delete",
                                {"confirm": "yes"}).status_code == 302
    gone_item = next(i for i in items.values() if i.source_id == kept_row.id)
    page = f"/sources/{kept_row.id}"
    assert post_journalist_form(alice, newsroom.url, page, f"{page}/items", {
        "item": gone_item.id, "action": "delete", "confirm": "yes"}).status_code == 302
    assert gone_item.custody_key is not None
    gone = {**needles(doomed_row), f"id {gone_item.id}": gone_item.id,
            f"digest {gone_item.id}": gone_item.ciphertext_sha256,
            f"custody key {gone_item.id}": gone_item.custody_key}
    assert readable(data_dir, gone) == []

    # The source deletes a reply: its box goes; the row (the journalists' copy) stays.
    kept_replies = [r for r in replies.values() if r.source_id == kept_row.id]
    token = kept.form_token()
    assert kept.http.post(f"{server.url}/replies/delete", data={
        "csrf_token": token, "reply": kept_replies[0].id}, timeout=60).status_code == 200
    assert not (accounts.store.reply_path(kept_replies[0].id) / "box").exists()

    # Retention takes one source's items and replies; the codename never used is two days
    # old. `desk purge` removes both sources and nothing else.
    long_ago = (datetime.now(UTC).date() - timedelta(days=40)).isoformat()
    two_days_ago = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
    backdate(data_dir, "UPDATE submissions SET received_on = ? WHERE source_id = ?",
             long_ago, expiring_row.id)
    backdate(data_dir, "UPDATE replies SET created_on = ? WHERE source_id = ?",
             long_ago, expiring_row.id)
    backdate(data_dir, "UPDATE sources SET created_on = ?, last_activity_on = ? WHERE id = ?",
             long_ago, long_ago, expiring_row.id)
    backdate(data_dir, "UPDATE sources SET created_on = ?, last_activity_on = ? WHERE id = ?",
             two_days_ago, two_days_ago, unused_row.id)
    assert run_desk("settings", "--retention-days", "30", data_dir=data_dir).returncode == 0
    purged = run_desk("purge", data_dir=data_dir)
    assert purged.returncode == 0, purged.stderr
    assert "2 source(s) with nothing left" in purged.stdout

    with accounts.sessions() as db:
        assert set(db.scalars(select(Source.id))) == {kept_row.id}
        assert len(list(db.scalars(select(Item).where(Item.source_id == kept_row.id)))) == 3
    gone.update(needles(unused_row))
    gone.update(needles(expiring_row))
    identities = {**needles(doomed_row, ids=False), **needles(unused_row, ids=False),
                  **needles(expiring_row, ids=False)}
    assert readable(data_dir, identities) == []
    assert readable(data_dir, gone) == []
    wal = data_dir / "desk.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    # The kept source is still there, and so is its scan's evidence of working.
    assert readable(data_dir, needles(kept_row, ids=False))

