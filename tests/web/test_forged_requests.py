"""What a crafted form field, another site's link or a forged Host header can make either
interface do: nothing. A journalist's form goes back only to the desk's own pages, a link
cannot download an item (which marks it seen and signs a custody entry), and no answer repeats
the Host a request named. Static files' dates are in tests/web/test_pages.py."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from desk.records.models import Base, CustodyRecord, Item, Journalist, Source
from desk.services import Services
from desk.web.headers import local_location
from desk.web.journalist.views import PAGE_SIZE
from tests.harness.bulk import fill_desk
from tests.harness.forms import csrf_token, page_form, page_forms
from tests.harness.web import SourceBrowser

EVIL = "evil.example"
# `next` values that passed the old check for a path on this site, or would pass a naive one.
CRAFTED_NEXT = ["/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "//evil.example",
                "/\\evil.example", "/\t\\evil.example", "https://evil.example/"]


def _sources(services: Services) -> list[tuple[str, str]]:
    """(source id, id of its first item) of every source, as the list orders them."""
    with services.sessions() as db:
        return [(source_id, db.scalars(select(Item.id).where(Item.source_id == source_id)
                                       .order_by(Item.id)).first() or "")
                for source_id in db.scalars(select(Source.id).order_by(
                    Source.starred.desc(), Source.last_activity_on.desc(), Source.id))]


def _state(services: Services, item_id: str) -> tuple[bool, int]:
    """Whether the item is seen, and how long the custody chain is."""
    with services.sessions() as db:
        item = db.get(Item, item_id)
        assert item is not None
        return item.seen, db.scalar(select(func.count()).select_from(CustodyRecord)) or 0


# --- returning after a form ------------------------------------------------------------------


@pytest.mark.parametrize("crafted", CRAFTED_NEXT)
def test_starring_goes_back_to_the_page_of_the_form_whatever_next_says(
        alice: FlaskClient, accounts: Services, source: SourceBrowser, crafted: str) -> None:
    """The review's reproduction: next="/\\t/evil.example" passed the check for a path on this
    site, and the redirect, with the tab cut out, was Location: //evil.example."""
    assert source.send("star me").status_code == 200
    ((source_id, _),) = _sources(accounts)
    action = f"/sources/{source_id}/star"
    for page, back in (("/", "/?page=1"), (f"/sources/{source_id}", f"/sources/{source_id}")):
        form = page_form(alice.get(page).text, action)
        answer = alice.post(action, data={**form.fields, "next": crafted})
        assert (answer.status_code, answer.location) == (302, back), page
        assert EVIL not in str(answer.headers)


def test_starring_on_a_later_page_of_sources_goes_back_to_that_page(
        alice: FlaskClient, accounts: Services) -> None:
    fill_desk(accounts, PAGE_SIZE + 1, per_source=1)
    last_id, _ = _sources(accounts)[-1]
    action = f"/sources/{last_id}/star"
    form = page_form(alice.get("/?page=2").text, action)
    assert form.method == "post"
    assert "next" not in form.fields
    starred = alice.post(action, data=form.fields)
    assert (starred.status_code, starred.location) == (302, "/?page=2")
    # Starred, it leads the list: its form on the first page goes back to the first page.
    form = page_form(alice.get("/").text, action)
    assert alice.post(action, data=form.fields).location == "/?page=1"
    # A page number is all the form can say about where to go back to.
    for page in ("0", "-3", "2x", "/\t/evil.example", ""):
        answer = alice.post(action, data={**form.fields, "page": page})
        assert (answer.status_code, answer.location) == (302, "/"), page


# --- downloading one item --------------------------------------------------------------------


def test_a_link_or_another_sites_form_cannot_download_an_item(
        alice: FlaskClient, accounts: Services, source: SourceBrowser) -> None:
    """The review: GET /items/<id>/download marked the item seen and signed a custody entry,
    with no CSRF token, so any page a journalist opened could make it happen."""
    assert source.send("download me").status_code == 200
    ((source_id, item_id),) = _sources(accounts)
    path = f"/items/{item_id}/download"
    before = _state(accounts, item_id)
    assert before[0] is False

    assert alice.get(path).status_code == 405
    assert alice.post(path).status_code == 400  # another site's form has no token
    assert alice.post(path, data={"csrf_token": "forged"}).status_code == 400
    assert _state(accounts, item_id) == before

    # The source's page has a form for it: a Download button, its token, nothing else.
    page = alice.get(f"/sources/{source_id}").text
    form = page_form(page, path)
    assert (form.method, form.buttons, set(form.fields)) == ("post", ["Download"],
                                                             {"csrf_token"})
    answer = alice.post(path, data=form.fields)
    assert answer.status_code == 200
    assert answer.mimetype == "application/x-tar"
    assert answer.headers["Content-Disposition"].startswith("attachment; ")
    seen, custody = _state(accounts, item_id)
    assert (seen, custody) == (True, before[1] + 1)
    # The items form around the table does not take the download buttons for its own.
    items_form = page_form(page, f"/sources/{source_id}/items")
    assert "Download" not in items_form.buttons
    assert len([f for f in page_forms(page) if f.action.endswith("/download")]) == 1


def _rows(services: Services) -> dict[str, list[str]]:
    """Every row of every table but the sessions' (a GET renews its own session and may keep
    a language or a two-factor secret being set up in it), and every file of the store."""
    with services.sessions() as db:
        rows = {table.name: sorted(repr(tuple(row)) for row in db.execute(table.select()))
                for table in Base.metadata.sorted_tables
                if table.name not in ("journalist_sessions", "source_sessions")}
    rows["store"] = sorted(f"{path}:{path.stat().st_size}"
                           for path in services.config.store_dir.rglob("*"))
    return rows


def test_no_get_of_either_interface_changes_the_desk(
        app: Flask, journalist_app: Flask, alice: FlaskClient, accounts: Services,
        source: SourceBrowser) -> None:
    """Everything that changes the desk is a POST with its form's token; a GET of any route,
    which any page a journalist or source opens can make their browser send, changes nothing."""
    assert source.send("for every page", (("clip.mp4", b"\x00" * 3000),)).status_code == 200
    ((source_id, item_id),) = _sources(accounts)
    with accounts.sessions() as db:
        alice_id = db.scalar(select(Journalist.id).where(Journalist.username == "alice"))
    values = {"source_id": source_id, "item_id": item_id, "journalist_id": str(alice_id),
              "upload_id": "0" * 32, "token": "x", "filename": "desk.css"}
    asked = []
    before = _rows(accounts)
    for interface, browsers in ((app, [source.client, app.test_client()]),
                                (journalist_app, [alice, journalist_app.test_client()])):
        for rule in interface.url_map.iter_rules():
            path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], rule.rule)
            for browser in browsers:
                asked.append((rule.endpoint, browser.get(path).status_code))
    assert _rows(accounts) == before
    assert ("journalist.download", 405) in asked
    assert {("journalist.source", 200), ("admin.index", 200), ("source.submit_form", 200),
            ("account.account", 200)} <= set(asked)


# --- the Host header -------------------------------------------------------------------------


def _named_host(answer: TestResponse) -> list[str]:
    """The headers of `answer` that carry the forged host, and its body if it does."""
    return [f"{name}: {value}" for name, value in answer.headers.items() if EVIL in value] + \
        (["body"] if EVIL.encode() in answer.get_data() else [])


def _under_forged_host(client: FlaskClient, method: str, path: str,
                       data: dict[str, str]) -> TestResponse:
    """`method path` from `client`'s browser, as if the desk's name were EVIL (the test client
    keeps cookies by host: the session cookie goes along by hand)."""
    cookies = "; ".join(f"{cookie.key}={cookie.value}" for cookie in (
        client.get_cookie(name) for name in ("desk_source", "desk_journalist"))
        if cookie is not None)
    forged = client.application.test_client(use_cookies=False)
    return forged.open(path, method=method, data=data,
                       headers={"Host": EVIL, **({"Cookie": cookies} if cookies else {})})


def test_no_answer_of_either_interface_repeats_a_forged_host(
        app: Flask, source: SourceBrowser, journalist_app: Flask, alice: FlaskClient,
        accounts: Services) -> None:
    """The review: OPTIONS /uploads with Host: evil.example got a 308 whose Location was
    http://evil.example/uploads/ (the router's redirect to the path with a slash)."""
    assert source.send("hosts").status_code == 200
    ((source_id, _),) = _sources(accounts)
    browsers = {"visitor": app.test_client(), "source": source.client, "alice": alice,
                "anonymous": journalist_app.test_client()}
    token = csrf_token(alice.get("/").text)
    requests = [
        ("visitor", "OPTIONS", "/uploads", {}), ("visitor", "POST", "/uploads", {}),
        ("visitor", "GET", "/static//desk.css", {}), ("visitor", "GET", "/static/desk.css", {}),
        ("visitor", "GET", "/submit", {}), ("visitor", "GET", "/?l=fr", {}),
        ("source", "GET", "/submit", {}),
        ("source", "POST", "/logout", {"csrf_token": source.form_token()}),
        ("anonymous", "GET", "/admin", {}), ("anonymous", "GET", "/", {}),
        ("alice", "GET", "/admin", {}), ("alice", "GET", f"/sources//{source_id}", {}),
        ("alice", "POST", f"/sources/{source_id}/star", {"csrf_token": token, "page": "1"}),
        ("alice", "POST", "/export", {"csrf_token": token, "scope": "unseen"}),
    ]
    answers = {(who, method, path): _under_forged_host(browsers[who], method, path, data)
               for who, method, path, data in requests}
    assert {asked: answer.status_code for asked, answer in answers.items()} == {
        ("visitor", "OPTIONS", "/uploads"): 308, ("visitor", "POST", "/uploads"): 308,
        ("visitor", "GET", "/static//desk.css"): 308, ("visitor", "GET", "/static/desk.css"): 200,
        ("visitor", "GET", "/submit"): 302, ("visitor", "GET", "/?l=fr"): 200,
        ("source", "GET", "/submit"): 200, ("source", "POST", "/logout"): 302,
        ("anonymous", "GET", "/admin"): 308, ("anonymous", "GET", "/"): 302,
        ("alice", "GET", "/admin"): 308, ("alice", "GET", f"/sources//{source_id}"): 308,
        ("alice", "POST", f"/sources/{source_id}/star"): 302, ("alice", "POST", "/export"): 200}
    assert {asked: _named_host(answer) for asked, answer in answers.items()
            if _named_host(answer)} == {}
    # Every redirect leads to a path on the desk, whatever host it was asked under.
    for asked, answer in answers.items():
        if answer.location:
            assert answer.location.startswith("/"), (asked, answer.location)
            assert not answer.location.startswith(("//", "/\\")), (asked, answer.location)


@pytest.mark.parametrize(("location", "path"), [
    ("http://evil.example/uploads/", "/uploads/"), ("http://evil.example", "/"),
    ("https://evil.example/sources/ab?page=2#top", "/sources/ab?page=2#top"),
    ("//evil.example", "/"), ("//evil.example/x", "/x"), ("/\\evil.example", "/evil.example"),
    ("/\t/evil.example", "/"), ("///evil.example", "/evil.example"),
    ("https:evil.example", "/evil.example"), ("/uploads/0123", "/uploads/0123"),
    ("/?page=1", "/?page=1"), ("/sources/a%2Fb", "/sources/a%2Fb"),
])
def test_a_location_is_always_a_path_on_the_desk(location: str, path: str) -> None:
    assert local_location(location) == path
