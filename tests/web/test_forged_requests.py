"""What a crafted form field or another site's page can make the journalist interface do:
nothing. A journalist's form goes back only to the desk's own pages."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from desk.records.models import Item, Source
from desk.services import Services
from desk.web.journalist.views import PAGE_SIZE
from tests.harness.bulk import fill_desk
from tests.harness.forms import page_form
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
