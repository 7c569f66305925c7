"""Every page of both interfaces, as a browser receives it: the security headers, nothing
loaded from anywhere else, no inline script or style, and uniform error pages. That the logs
hold nothing about the people using the desk is checked on a real server, in
tests/e2e/test_logs.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from zlib import adler32

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.http import http_date
from werkzeug.test import TestResponse

from desk.app import Interface, create_app
from desk.records.models import Source
from desk.services import Services
from desk.web.throttle import Limits, LoginThrottle
from tests.harness.forms import FormBody, csrf_token
from tests.harness.paths import REPO
from tests.harness.web import SourceBrowser

STATIC = REPO / "desk" / "static"
REQUIRED_CSP = ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                "img-src 'self'", "form-action 'self'", "frame-ancestors 'none'",
                "base-uri 'none'")
EXACT_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "srcset", "poster", "data",
                  "background", "cite", "manifest"}


# --- reading a page --------------------------------------------------------------------------


@dataclass
class PageScan(HTMLParser):
    """What a page would make a browser load or run."""

    urls: list[str] = field(default_factory=list)
    inline_scripts: int = 0
    style_elements: int = 0
    style_attributes: list[str] = field(default_factory=list)
    handlers: list[str] = field(default_factory=list)
    _in_script: bool = False

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value is not None:
                self.urls += [part.strip().split(" ")[0] for part in value.split(",")] \
                    if name == "srcset" else [value]
            if name == "style":
                self.style_attributes.append(tag)
            if name.startswith("on"):
                self.handlers.append(f"{tag} {name}")
        if tag == "style":
            self.style_elements += 1
        if tag == "script":
            self._in_script = True
            if not values.get("src"):
                self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


def scan(html: str) -> PageScan:
    """Parse a page."""
    page = PageScan()
    page.feed(html)
    page.close()
    return page


def is_elsewhere(url: str) -> bool:
    """True if a browser would fetch or follow `url` to another host or scheme."""
    lowered = url.strip().lower()
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", lowered)) or lowered.startswith("//") or \
        lowered.startswith("\\\\")


def assert_hardened(response: TestResponse, html: bool = True) -> None:
    """The headers every response carries, and for pages, nothing from elsewhere."""
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    missing = [d for d in REQUIRED_CSP if d not in csp]
    assert missing == [], (response.request.path, csp)
    for name, value in EXACT_HEADERS.items():
        assert headers.get(name) == value, (response.request.path, name)
    policy = headers.get("Permissions-Policy", "")
    for feature in ("camera", "microphone", "geolocation", "usb", "payment", "fullscreen"):
        assert f"{feature}=()" in policy, feature
    assert "Server" not in headers
    assert "X-Powered-By" not in headers
    assert "ETag" not in headers
    assert "Last-Modified" not in headers
    if not html:
        return
    page = scan(response.get_data(as_text=True))
    assert [u for u in page.urls if is_elsewhere(u)] == [], response.request.path
    assert page.inline_scripts == 0
    assert page.style_elements == 0
    assert page.style_attributes == []
    assert page.handlers == []
    text = response.get_data(as_text=True).lower()
    assert ".woff" not in text
    assert "@font-face" not in text
    assert "traceback" not in text


def set_cookies(response: TestResponse) -> list[str]:
    """The Set-Cookie headers of a response."""
    return response.headers.getlist("Set-Cookie")


# --- the source interface --------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One response, and what it was."""

    what: str
    response: TestResponse
    html: bool = True


def source_pages(app: Flask, desk: Services) -> Iterator[Seen]:
    """Every page and error a source can reach, in the order a source meets them."""
    client = app.test_client()
    yield Seen("landing", client.get("/"))
    yield Seen("landing in Uyghur", client.get("/?l=ug"))
    yield Seen("login form", client.get("/login"))
    browser = SourceBrowser(client)
    token = csrf_token(client.get("/").text)
    yield Seen("codename", client.post("/generate", data={"csrf_token": token}))
    yield Seen("submit form", client.get("/submit"))
    body = FormBody().field("csrf_token", browser.form_token()).field("message", "hello")
    body.file("clip.mp4", b"\x00" * 2000)
    yield Seen("received", browser.submit(body))
    yield Seen("wrong codename", client.post("/login", data={
        "csrf_token": csrf_token(client.get("/login").text), "codename": "not a codename"}))
    yield Seen("404", client.get("/no/such/page"))
    yield Seen("405", client.put("/"))
    yield Seen("expired form (400)", client.post("/generate", data={"csrf_token": "stale"}))
    big = FormBody().field("csrf_token", browser.form_token()).file(
        "big.bin", b"\x00" * (desk.config.max_upload_bytes + 1))
    yield Seen("413", browser.submit(big))
    app.extensions["desk_login_throttle"] = LoginThrottle(
        Limits(desk_capacity=0, desk_per_second=0.0001))
    yield Seen("429", client.post("/login", data={
        "csrf_token": csrf_token(client.get("/login").text), "codename": "a b c"}))
    yield Seen("stylesheet", client.get("/static/desk.css"), html=False)
    yield Seen("script", client.get("/static/detect.js"), html=False)


def test_every_source_page_is_hardened_and_loads_nothing_from_elsewhere(
        app: Flask, desk: Services) -> None:
    seen = list(source_pages(app, desk))
    statuses = {s.what: s.response.status_code for s in seen}
    assert statuses == {
        "landing": 200, "landing in Uyghur": 200, "login form": 200, "codename": 200,
        "submit form": 200, "received": 200, "wrong codename": 401, "404": 404, "405": 405,
        "expired form (400)": 400, "413": 413, "429": 429, "stylesheet": 200, "script": 200}
    for page in seen:
        assert_hardened(page.response, page.html)


def test_source_cookies_are_http_only_and_strict(client: FlaskClient) -> None:
    cookies = set_cookies(client.get("/"))
    assert len(cookies) == 1
    attributes = [a.strip().lower() for a in cookies[0].split(";")]
    assert attributes[0].startswith("desk_source=")
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert not any(a.startswith(("expires=", "max-age=", "domain=")) for a in attributes)


def test_error_pages_look_like_the_desk_and_say_the_same_for_the_same_status(
        app: Flask, desk: Services) -> None:
    pages = {s.what: s.response for s in source_pages(app, desk) if s.html}
    for what in ("404", "405", "expired form (400)", "413", "429"):
        html = pages[what].text
        assert 'id="error-message"' in html, what
        assert "/static/desk.css" in html, what
    assert _message(pages["404"]) == _message(pages["405"])


def _message(response: TestResponse) -> str:
    found = re.search(r'id="error-message">([^<]*)<', response.text)
    assert found is not None
    return found.group(1)


def test_an_unexpected_failure_is_a_calm_500_without_a_traceback(desk: Services) -> None:
    app = create_app(desk.config, "source", services=desk)

    def broken() -> str:
        raise RuntimeError("secret detail in an exception")

    app.add_url_rule("/broken", "broken", broken)
    answer = app.test_client().get("/broken")
    assert answer.status_code == 500
    assert_hardened(answer)
    assert "secret detail" not in answer.text
    assert "Something went wrong" in answer.text


def test_a_desk_without_valid_keys_answers_503_on_every_page(empty_desk: Services) -> None:
    client = create_app(empty_desk.config, "source", services=empty_desk).test_client()
    for path in ("/", "/login", "/submit"):
        answer = client.get(path)
        assert answer.status_code == 503
        assert_hardened(answer)
        assert "not accepting submissions" in answer.text


@pytest.mark.parametrize("interface", ["source", "journalist"])
def test_static_files_carry_no_date_and_answer_every_condition_in_full(
        desk: Services, interface: Interface) -> None:
    """The review: /static/desk.css came with Last-Modified and an ETag made of the file's
    mtime, which date the desk's last install or upgrade to the second; and an answer that
    turns 304 at some If-Modified-Since would tell the same."""
    client = create_app(desk.config, interface, services=desk).test_client()
    path = STATIC / "desk.css"
    body, mtime = path.read_bytes(), path.stat().st_mtime
    # What Werkzeug made the ETag of, for a request that has it from elsewhere.
    old_etag = f'"{mtime}-{len(body)}-{adler32(str(path).encode()) & 0xFFFFFFFF}"'
    conditions: list[dict[str, str]] = [
        {}, {"If-Modified-Since": http_date(mtime + 3600)},
        {"If-Modified-Since": http_date(mtime - 3600)}, {"If-None-Match": "*"},
        {"If-None-Match": old_etag}, {"If-Unmodified-Since": http_date(mtime - 3600)},
        {"Range": "bytes=0-9"}, {"Range": "bytes=0-9", "If-Range": http_date(mtime)},
        {"Range": "bytes=0-9", "If-Range": old_etag},
    ]
    for condition in conditions:
        for method in ("GET", "HEAD"):
            answer = client.open("/static/desk.css", method=method, headers=condition)
            assert answer.status_code == 200, (method, condition)
            assert answer.data == (body if method == "GET" else b""), (method, condition)
            assert answer.content_length == len(body)
            assert_hardened(answer, html=False)
            assert "Accept-Ranges" not in answer.headers


def test_static_files_load_nothing_from_elsewhere() -> None:
    for path in sorted(STATIC.glob("*.css")):
        text = path.read_text()
        assert "@import" not in text, path.name
        assert "@font-face" not in text, path.name
        assert re.findall(r"url\(\s*['\"]?(?:[a-z]+:|//)", text, re.IGNORECASE) == [], \
            path.name
    for path in sorted(STATIC.glob("*.js")):
        assert re.findall(r"https?://", path.read_text()) == [], path.name


# --- the journalist interface ----------------------------------------------------------------


def test_every_journalist_page_is_hardened(journalist_app: Flask, alice: FlaskClient,
                                           source: SourceBrowser, accounts: Services) -> None:
    assert source.send("for the journalist pages").status_code == 200
    with accounts.sessions() as session:
        source_id = session.scalars(select(Source.id)).one()
    visitor = journalist_app.test_client()
    pages = [visitor.get("/login"), visitor.get("/no/such/page"), alice.get("/"),
             alice.get(f"/sources/{source_id}"), alice.get("/admin/"),
             alice.get("/sources/" + "0" * 32)]
    assert [p.status_code for p in pages] == [200, 404, 200, 200, 200, 404]
    for page in pages:
        assert_hardened(page)
    first_visit = journalist_app.test_client().get("/login")
    attributes = [a.strip().lower() for a in set_cookies(first_visit)[0].split(";")]
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
