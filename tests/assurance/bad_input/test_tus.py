"""The tus endpoint, malformed: creations, PATCHes and terminations that are refused and
change nothing, uploads that are not there or not the browser's, numbers in Python's int
syntax, and a hostile filename stored only as ciphertext."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

import pytest

from tests.assurance.bad_input.cases import (
    TUS_CREATE_CASES,
    TUS_IDS,
    TUS_METHODS,
    TUS_PATCH_CASES,
)
from tests.harness.forms import csrf_token
from tests.harness.refusals import (
    Bad,
    Target,
    assert_refused,
    assert_stored_safely,
    assert_tus_refusal,
    create,
    nothing_stored,
    patch,
    send,
    stored,
    tus_headers,
)
from tests.harness.tus import OCTETS, TUS


@pytest.mark.parametrize("build", [pytest.param(b, id=name) for name, b in TUS_CREATE_CASES])
def test_malformed_tus_creation_is_refused_and_makes_no_upload(
        target: Target, tokens: dict[str, str], build: Callable[[dict[str, str]], Bad]) -> None:
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "tus headers", build(tokens))
    assert_refused(response)



@pytest.mark.parametrize("build", [pytest.param(b, id=name) for name, b in TUS_PATCH_CASES])
def test_malformed_tus_request_is_refused_and_the_upload_stays_where_it_was(
        target: Target, tokens: dict[str, str],
        build: Callable[[str, dict[str, str]], Bad]) -> None:
    bad = build(target.upload, tokens)
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "tus offsets", bad)
    assert_refused(response, bad.method)



@pytest.mark.parametrize("method", TUS_METHODS)
@pytest.mark.parametrize("upload_id", TUS_IDS, ids=lambda i: i[:24])
def test_tus_request_for_an_upload_that_is_not_there_is_refused(
        target: Target, tokens: dict[str, str], method: str, upload_id: str) -> None:
    bad = Bad(method=method, path="/uploads/" + upload_id, body=b"1",
              content_type=OCTETS if method == "PATCH" else None,
              headers=tus_headers(tokens, **{"Upload-Offset": "0"}))
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "tus ids", bad)
    assert_refused(response, method)


@pytest.mark.parametrize("method", TUS_METHODS)
def test_tus_request_from_a_browser_without_the_upload_is_refused(
        target: Target, tokens: dict[str, str], method: str) -> None:
    stranger = target.anonymous()
    token = csrf_token(stranger.get("/").text)
    bad = Bad(method=method, path=target.upload, body=b"1",
              content_type=OCTETS if method == "PATCH" else None,
              headers=(*TUS.items(), ("X-CSRFToken", token), ("Upload-Offset", "1")))
    with nothing_stored(target.desk):
        response = send(stranger, "anonymous", "tus ids", bad)
    assert_tus_refusal(response, 404)


def test_tus_upload_with_a_hostile_name_is_stored_only_as_a_ciphertext_object(
        target: Target, tokens: dict[str, str]) -> None:
    # As for the form: the tus filename is sealed in the upload's row, then written into the
    # encrypted metadata record; a zero-length upload is published at creation.
    marker = b"marker" + os.urandom(6).hex().encode()
    name = b"../../../../" + marker + b"\xff\xfe.mp4"
    bad = create(tokens, **{"Upload-Length": "0",
                            "Upload-Metadata": "filename " + base64.b64encode(name).decode()
                            + ",filetype " + base64.b64encode(b"../\xff").decode()})
    before = stored(target.desk)
    response = send(target.source.client, "source", "accepted filenames", bad)
    assert response.status_code == 201
    assert_stored_safely(target, before, marker)



# Numbers in Python's int syntax (what the generated lengths and offsets found first)


@pytest.mark.parametrize("length", ["0\xa0", "7000000_0", "+5", "-0"])
def test_upload_length_in_pythons_int_syntax_makes_no_upload(
        target: Target, tokens: dict[str, str], length: str) -> None:
    # The first two are what test_upload_length_that_is_not_a_number_makes_no_upload found
    # without its filter: an upload made (stored) for '0\xa0', and 413 for '7000000_0'.
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "tus headers",
                        create(tokens, **{"Upload-Length": length}))
    assert_tus_refusal(response, 400)


@pytest.mark.parametrize("offset", ["0_0", "+0", "\xa00"])
def test_upload_offset_in_pythons_int_syntax_moves_nothing(
        target: Target, tokens: dict[str, str], offset: str) -> None:
    created = target.source.client.post("/uploads/", headers=dict(
        tus_headers(tokens, **{"Upload-Length": "10"})))
    assert created.status_code == 201
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "tus offsets",
                        patch(created.headers["Location"], tokens, {"Upload-Offset": offset}))
    assert_tus_refusal(response, 400)


