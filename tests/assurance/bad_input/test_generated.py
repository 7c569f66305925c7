"""Malformed requests generated with hypothesis: form bodies cut or damaged anywhere, any other
token, content type, length, offset, metadata, method or upload id, and any login body."""

from __future__ import annotations

import re
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.assurance.bad_input.cases import (
    HYPOTHESIS,
    broken_metadata,
    header_text,
    is_multipart_form,
    not_a_length,
    number_like,
    python_int_takes,
)
from tests.harness.refusals import (
    BOUNDARY,
    MULTIPART,
    Bad,
    Target,
    assert_desk_page,
    assert_refused,
    assert_tus_refusal,
    create,
    file_part,
    form,
    message_part,
    nothing_stored,
    part,
    patch,
    send,
    submit,
    token_part,
    tus_headers,
    valid_form,
)
from tests.harness.tus import OCTETS


@HYPOTHESIS
@given(data=st.data())
def test_form_body_cut_anywhere_before_its_end_stores_nothing(
        target: Target, tokens: dict[str, str], data: st.DataObject) -> None:
    body = valid_form(tokens["own"])
    # Up to "--boundary-": the closing delimiter's last dash and line break are the end.
    cut = data.draw(st.integers(min_value=0, max_value=len(body) - 3), label="cut")
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "boundary", submit(body[:cut]))
    assert_desk_page(response, 400)


@HYPOTHESIS
@given(data=st.data())
def test_form_with_a_delimiter_damaged_stores_nothing(
        target: Target, tokens: dict[str, str], data: st.DataObject) -> None:
    # Token and file only: damaging the delimiter between them merges the file into the
    # token, and damaging the first or last one leaves no valid form either.
    body = bytearray(form(token_part(tokens["own"]), file_part()))
    starts = [m.start() for m in re.finditer(re.escape(b"--" + BOUNDARY), body)]
    for _ in range(data.draw(st.integers(1, 3), label="damages")):
        start = data.draw(st.sampled_from(starts), label="delimiter")
        at = start + data.draw(st.integers(0, len(BOUNDARY) + 1), label="offset")
        body[at] = data.draw(st.integers(0, 255).filter(body[at].__ne__),
                             label="byte")
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "boundary", submit(bytes(body)))
    assert_desk_page(response, 400)


@HYPOTHESIS
@given(token=st.text(max_size=300))
def test_any_other_token_stores_nothing(target: Target, tokens: dict[str, str],
                                         token: str) -> None:
    body = form(part(b"csrf_token", token.encode("utf-8", "surrogatepass")), message_part())
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "csrf", submit(body))
    assert_desk_page(response, 400)


@HYPOTHESIS
@given(content_type=header_text.filter(lambda v: not is_multipart_form(v)))
def test_submit_with_any_other_content_type_stores_nothing(
        target: Target, tokens: dict[str, str], content_type: str) -> None:
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "content type",
                        submit(valid_form(tokens["own"]), content_type))
    assert_desk_page(response, 400)


@HYPOTHESIS
@given(length=number_like.filter(not_a_length))
def test_upload_length_that_is_not_a_number_makes_no_upload(
        target: Target, tokens: dict[str, str], length: str) -> None:
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "tus headers",
                        create(tokens, **{"Upload-Length": length}))
    assert_tus_refusal(response, 400)


@HYPOTHESIS
@given(offset=number_like.filter(lambda v: python_int_takes(v) != 1))
def test_upload_offset_other_than_the_uploads_moves_nothing(
        target: Target, tokens: dict[str, str], offset: str) -> None:
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "tus offsets",
                        patch(target.upload, tokens, {"Upload-Offset": offset}))
    assert_tus_refusal(response)
    assert response.status_code in (400, 409)


base64_breakers = st.sampled_from([*"!#$%&*-.:;<>?@[]^_`{|}~\xe9\xff", "===", "A"])
@HYPOTHESIS
@given(metadata=broken_metadata())
def test_broken_upload_metadata_makes_no_upload(
        target: Target, tokens: dict[str, str], metadata: str) -> None:
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "tus headers",
                        create(tokens, **{"Upload-Length": "10", "Upload-Metadata": metadata}))
    assert_tus_refusal(response, 400)


@settings(HYPOTHESIS, max_examples=15)
@given(method=st.from_regex(r"[A-Z]{3,10}", fullmatch=True).filter(
    lambda m: m not in {"GET", "HEAD", "POST", "OPTIONS"}))
def test_any_other_method_on_the_submit_page_gets_a_405_page(
        target: Target, method: str) -> None:
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "method", Bad(method=method))
    assert_desk_page(response, 405)


@HYPOTHESIS
@given(upload_id=st.text(min_size=1, max_size=80), method=st.sampled_from(
    ["HEAD", "PATCH", "DELETE"]))
def test_any_made_up_upload_id_is_refused(
        target: Target, tokens: dict[str, str], upload_id: str, method: str) -> None:
    path = "/uploads/" + quote(upload_id.encode("utf-8", "surrogatepass"), safe="")
    bad = Bad(method=method, path=path, body=b"1",
              content_type=OCTETS if method == "PATCH" else None,
              headers=tus_headers(tokens, **{"Upload-Offset": "0"}))
    with nothing_stored(target.desk):
        response = send(target.source.client, "source", "tus ids", bad)
    assert_refused(response, method)


@HYPOTHESIS
@given(body=st.binary(max_size=2000), multipart=st.booleans())
def test_journalist_login_with_any_body_and_no_token_gets_a_4xx_page(
        target: Target, body: bytes, multipart: bool) -> None:
    client = target.journalist_app.test_client()
    content_type = MULTIPART if multipart else "application/x-www-form-urlencoded"
    with nothing_stored(target.desk):
        response = send(client, "anonymous", "journalist login",
                        Bad(path="/login", body=body, content_type=content_type))
    assert_desk_page(response, 400)


