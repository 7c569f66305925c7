"""The worst malformed requests over raw sockets to a real `desk serve source`: each gets the
desk's own 4xx (or gunicorn's refusal in the desk's page), nothing is stored, and the server
keeps serving with no traceback in its log."""

from __future__ import annotations

import pytest
import requests

from desk.services import Services
from tests.assurance.bad_input.cases import raw_cases
from tests.harness.data import KiB, MiB, noise
from tests.harness.http import TIMEOUT
from tests.harness.refusals import (
    MULTIPART,
    RawSource,
    exchange,
    file_part,
    form,
    hang_up,
    is_desk_answer,
    settled,
    stored,
    token_part,
    valid_form,
)
from tests.harness.servers import Server
from tests.harness.tus import OCTETS, TUS

pytestmark = pytest.mark.slow


def test_real_server_refuses_the_worst_requests_and_keeps_serving(
        desk: Services, server: Server, raw_source: RawSource) -> None:
    before = stored(desk)
    cases = raw_cases(raw_source)
    answers = {name: exchange(server.url, data) for name, data in cases}
    # Clients that stop: 64 KiB into a 1 MiB file, closed or reset; headers a byte at a time.
    file_body = form(token_part(raw_source.token), file_part(data=noise(64 * KiB)), close=False)
    abandoned = raw_source.request("POST", "/submit", file_body, length=str(MiB),
                                   Content_Type=MULTIPART)
    hang_up(server.url, abandoned)
    hang_up(server.url, abandoned, reset=True)
    hang_up(server.url, abandoned[:100], drip=True)

    refused = {name: answer.raw[:120] for name, answer in answers.items()
               if not is_desk_answer(answer)}
    assert refused == {}
    assert settled(desk, before) == before
    assert server.process.poll() is None
    assert requests.get(server.url + "/", timeout=TIMEOUT).status_code == 200
    assert "Traceback" not in server.log.read_text()
    assert list(server.tmpdir.iterdir()) == []



@pytest.mark.slow
def test_requests_gunicorn_refuses_get_the_desks_page(
        desk: Services, server: Server, raw_source: RawSource) -> None:
    s = raw_source
    body = valid_form(s.token)
    cases = {
        "20 KB header": s.request("GET", "/", X_Big="h" * 20_000),
        "200 headers": s.request("GET", "/", **{f"X_H{i}": "v" for i in range(200)}),
        "10 KB request line": s.request("GET", "/" + "p" * 10_000),
        "Content-Length -1": s.request("POST", "/submit", body, length="-1",
                                       Content_Type=MULTIPART),
        "Content-Length in words": s.request("POST", "/submit", body, length="lots",
                                             Content_Type=MULTIPART),
        "two Content-Lengths": s.request("POST", "/submit", body, Content_Type=MULTIPART,
                                         content_length="5"),
        "Transfer-Encoding gzip": s.request("POST", "/submit", body, length="",
                                            Transfer_Encoding="gzip", Content_Type=MULTIPART),
        "Content-Length and chunked": s.request("POST", "/submit", b"0\r\n\r\n",
                                                Transfer_Encoding="chunked",
                                                Content_Type=MULTIPART),
        "HTTP/9.9": b"GET / HTTP/9.9\r\nHost: desk.onion\r\n\r\n",
    }
    before = stored(desk)
    answers = {name: exchange(server.url, data) for name, data in cases.items()}
    assert settled(desk, before) == before
    assert server.process.poll() is None
    not_desk = {name: a.raw[:80] for name, a in answers.items() if not is_desk_answer(a)}
    assert not_desk == {}


@pytest.mark.slow
def test_broken_chunked_framing_gets_a_4xx_page_and_no_traceback(
        desk: Services, server: Server, raw_source: RawSource) -> None:
    s = raw_source
    body = valid_form(s.token)
    chunked = {"length": "", "Transfer_Encoding": "chunked"}
    mp = {**chunked, "Content_Type": MULTIPART}
    tus = {**chunked, **TUS, "X_CSRFToken": s.token, "Content_Type": OCTETS,
           "Upload_Offset": "1"}
    urlencoded = {**chunked, "Content_Type": "application/x-www-form-urlencoded"}
    cases = {
        "chunk size not hex": s.request("POST", "/submit", b"zz\r\nabc\r\n0\r\n\r\n", **mp),
        "chunk without its line break": s.request("POST", "/submit", b"3\r\nabcXX0\r\n\r\n",
                                                  **mp),
        "negative chunk size": s.request("POST", "/submit", b"-5\r\nabcde\r\n0\r\n\r\n", **mp),
        "trailer without a colon": s.request(
            "POST", "/submit", b"%x\r\n%s\r\n0\r\nbad trailer\r\n\r\n" % (len(body), body),
            **mp),
        "tus PATCH chunk size not hex": s.request("PATCH", s.upload, b"zz\r\n1\r\n0\r\n\r\n",
                                                  **tus),
        "codename form chunk size not hex": s.request("POST", "/generate",
                                                      b"zz\r\nabc\r\n0\r\n\r\n", **urlencoded),
        "login form chunk without its line break": s.request(
            "POST", "/login", b"5\r\nabc\r\n0\r\n\r\n", **urlencoded),
    }
    before = stored(desk)
    answers = {name: exchange(server.url, data) for name, data in cases.items()}
    assert settled(desk, before) == before
    assert server.process.poll() is None
    not_desk = {name: a.raw[:80] for name, a in answers.items() if not is_desk_answer(a)}
    assert not_desk == {}
    assert "Traceback" not in server.log.read_text()


