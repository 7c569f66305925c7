"""The source interface's other forms, malformed: the codename button, the login, the reply
deletion and the logout; and codenames that are not one get the same answer as a wrong one."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.assurance.bad_input.cases import CODENAMES, OTHER_SOURCE_CASES, Build
from tests.harness.forms import csrf_token
from tests.harness.refusals import (
    Bad,
    Target,
    assert_desk_page,
    assert_login_refused,
    nothing_stored,
    send,
)


@pytest.mark.parametrize(("who", "build"), [
    pytest.param(who, build, id=name) for name, who, build in OTHER_SOURCE_CASES])
def test_malformed_source_form_gets_a_4xx_page(
        target: Target, tokens: dict[str, str], who: str, build: Build) -> None:
    client = target.source.client if who == "source" else target.anonymous()
    with nothing_stored(target.desk):
        response = send(client, who, "source forms", build(tokens))
    assert_desk_page(response)
    # Nothing was undone either: the target's source is still logged in.
    assert target.source.client.get("/submit").status_code == 200


@pytest.mark.parametrize("codename", [pytest.param(c, id=name) for name, c in CODENAMES])
def test_malformed_codename_gets_the_same_401_as_a_wrong_one(
        target: Target, codename: str) -> None:
    client = target.anonymous()
    token = csrf_token(client.get("/login").text)
    bad = Bad(path="/login", body=b"csrf_token=" + token.encode() + b"&codename="
              + quote(codename).encode(), content_type="application/x-www-form-urlencoded")
    with nothing_stored(target.desk):
        response = send(client, "anonymous", "source forms", bad)
    assert_login_refused(response)


