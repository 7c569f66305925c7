"""The journalist interface, malformed: garbage key files and reply files (refused with a
notice naming the problem), forms without their token or with someone else's, logins that are
not one, and numbers past SQLite's 64 bits."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from desk.records.models import Journalist
from tests.assurance.bad_input.cases import (
    GARBAGE_KEYS,
    GARBAGE_REPLIES,
    JOURNALIST_CASES,
    KEY_FORMS,
)
from tests.harness.forms import csrf_token
from tests.harness.refusals import (
    Bad,
    Target,
    assert_desk_page,
    assert_login_refused,
    error_notices,
    journalist_form,
    nothing_stored,
    send,
)


@pytest.mark.parametrize("key_form", KEY_FORMS)
@pytest.mark.parametrize("key", [pytest.param(k, id=n) for n, k in GARBAGE_KEYS])
def test_garbage_key_file_is_refused_naming_the_problem_and_nothing_changes(
        target: Target, tokens: dict[str, str], key_form: str, key: bytes) -> None:
    # Journalists get specific messages: the admin page refuses a key with a notice on the
    # page it redirects to (the desk's pattern for journalist forms), not an error page.
    with target.desk.sessions() as db:
        alice_id = db.scalars(select(Journalist.id).where(Journalist.username == "alice")).one()
    path = "/admin/journalists" if key_form == "add" else f"/admin/journalists/{alice_id}/key"
    bad = journalist_form(path, {"username": "mallory"}, {"key": key}, tokens["journalist"])
    with nothing_stored(target.desk):
        response = send(target.alice, "alice", "journalist keys", bad)
        assert (response.status_code, response.location) == (302, "/admin/")
        notice = target.alice.get("/admin/").text
    assert any("key" in text for text in error_notices(notice))



@pytest.mark.parametrize(("category", "build"), [
    pytest.param(category, build, id=f"{category}: {name}")
    for category, name, build in JOURNALIST_CASES])
def test_malformed_journalist_request_gets_a_4xx_page(
        target: Target, tokens: dict[str, str], category: str,
        build: Callable[[Target, dict[str, str]], Bad]) -> None:
    client = target.alice if category != "login" else target.journalist_app.test_client()
    with nothing_stored(target.desk):
        response = send(client, "alice" if category != "login" else "anonymous",
                        f"journalist {category}", build(target, tokens))
    assert_desk_page(response)


def test_login_form_without_its_fields_gets_the_failed_login_page(
        target: Target) -> None:
    client = target.journalist_app.test_client()
    token = csrf_token(client.get("/login").text)
    bad = Bad(path="/login", body=b"csrf_token=" + token.encode() + b"&username=&code=%00",
              content_type="application/x-www-form-urlencoded")
    with nothing_stored(target.desk):
        response = send(client, "anonymous", "journalist login", bad)
    assert_login_refused(response)



@pytest.mark.parametrize("reply", [pytest.param(r, id=n) for n, r in GARBAGE_REPLIES])
def test_garbage_reply_file_is_refused_with_a_notice_and_nothing_stored(
        target: Target, tokens: dict[str, str], reply: bytes) -> None:
    # As for keys: a refused reply file is named in a notice on the source's page.
    bad = journalist_form(f"/sources/{target.source_id}/replies/upload", {},
                          {"reply_file": reply}, tokens["journalist"])
    with nothing_stored(target.desk):
        response = send(target.alice, "alice", "journalist replies", bad)
        assert (response.status_code, response.location) == (
            302, f"/sources/{target.source_id}")
        notice = target.alice.get(response.location).text
    assert any(text.startswith(("Reply refused", "Choose the reply file"))
               for text in error_notices(notice))


@pytest.mark.parametrize("action", ["key", "remove", "reset-2fa", "reset-login"])
def test_journalist_id_past_64_bits_gets_a_404_page(
        target: Target, tokens: dict[str, str], action: str) -> None:
    bad = journalist_form(f"/admin/journalists/{2**64}/{action}", {"confirm": "yes"},
                          token=tokens["journalist"])
    with nothing_stored(target.desk):
        response = send(target.alice, "alice", "journalist other", bad)
    assert_desk_page(response, 404)


def test_page_number_past_64_bits_gets_a_4xx_page_or_the_last_page(target: Target) -> None:
    bad = Bad(method="GET", path=f"/?page={2**62}", content_type=None)
    with nothing_stored(target.desk):
        response = send(target.alice, "alice", "journalist other", bad)
    assert response.status_code < 500


@pytest.mark.parametrize("size", [pytest.param("9" * 5000, id="5000 digits"),
                                  pytest.param("99999999999999999999999TiB", id="2**96")])
def test_absurd_upload_limit_is_refused_with_a_notice(
        target: Target, tokens: dict[str, str], size: str) -> None:
    bad = journalist_form("/admin/settings", {"name": "desk", "max_upload": size,
                                              "retention_days": ""}, token=tokens["journalist"])
    with nothing_stored(target.desk):
        response = send(target.alice, "alice", "journalist other", bad)
    assert (response.status_code, response.location) == (302, "/admin/")


