"""Methods a page does not take get the desk's 405 page, and paths that name nothing its 404
page, on both interfaces."""

from __future__ import annotations

import pytest

from tests.assurance.bad_input.cases import (
    JOURNALIST_METHODS,
    JOURNALIST_PATHS,
    SOURCE_METHODS,
    SOURCE_PATHS,
)
from tests.harness.refusals import Bad, Target, assert_desk_page, nothing_stored, send
from tests.harness.tus import TUS


@pytest.mark.parametrize(("interface", "method", "path"), [
    *[pytest.param("source", m, p, id=f"source {m} {p}") for m, p in SOURCE_METHODS],
    *[pytest.param("journalist", m, p, id=f"journalist {m} {p}") for m, p in JOURNALIST_METHODS],
])
def test_wrong_method_gets_a_405_page(target: Target, tokens: dict[str, str], interface: str,
                                      method: str, path: str) -> None:
    client = target.source.client if interface == "source" else target.alice
    path = path.format(upload=target.upload.rsplit("/", 1)[-1], source=target.source_id,
                       item=target.item_id)
    bad = Bad(method=method, path=path, body=b"x=1", content_type=None,
              headers=(*TUS.items(), ("X-CSRFToken", tokens["own"])))
    with nothing_stored(target.desk):
        response = send(client, interface, "method", bad)
    assert_desk_page(response, 405)



@pytest.mark.parametrize(("interface", "method", "path"), [
    *[pytest.param("source", m, p, id=f"source {m} {p[:40]}") for m, p in SOURCE_PATHS],
    *[pytest.param("journalist", m, p, id=f"journalist {m} {p[:40]}")
      for m, p in JOURNALIST_PATHS],
])
def test_path_that_names_nothing_gets_a_404_page(
        target: Target, tokens: dict[str, str], interface: str, method: str, path: str) -> None:
    client = target.source.client if interface == "source" else target.alice
    token = tokens["own" if interface == "source" else "journalist"]
    bad = Bad(method=method, path=path, body=b"csrf_token=" + token.encode(),
              content_type="application/x-www-form-urlencoded")
    with nothing_stored(target.desk):
        response = send(client, interface, "path", bad)
    assert_desk_page(response, 404)


