"""Clients of the apps in-process, through Flask's test client: a source walking through the
interface (codename, form, tus, login with the codename) and a journalist enrolling, logging in
and uploading a reply file."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from desk.records.credentials import TOTP_STEP_SECONDS, totp_code
from desk.records.models import JournalistSession, Source, SourceSession
from desk.services import Services
from desk.web.sessions import IDLE_FIELD, ServerSession, seal_data, token_hash, unseal_data
from tests.harness.desks import PASSWORDS, fresh_code
from tests.harness.forms import CODENAME_RE, FormBody, csrf_token
from tests.harness.tus import OCTETS, TUS


class SourceBrowser:
    """A source walking through the interface in one browser session."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.codename: str | None = None

    def get_codename(self) -> str:
        """Open the landing page and press the codename button."""
        token = csrf_token(self.client.get("/").text)
        page = self.client.post("/generate", data={"csrf_token": token})
        assert page.status_code == 200
        match = CODENAME_RE.search(page.text)
        assert match, "no codename shown"
        self.codename = match.group(1)
        return self.codename

    def form_token(self) -> str:
        """The CSRF token of a freshly opened submit form."""
        page = self.client.get("/submit")
        assert page.status_code == 200, page.status_code
        return csrf_token(page.text)

    def submit(self, body: FormBody) -> TestResponse:
        """Post a hand-built form body."""
        return self.client.post("/submit", data=body.encode(),
                                content_type=body.content_type)

    def send(self, message: str = "", files: tuple[tuple[bytes | str, bytes], ...] = ()
             ) -> TestResponse:
        """Fill in the submit form as a browser would and send it."""
        body = FormBody().field("csrf_token", self.form_token()).field("message", message)
        for name, data in files:
            body.file(name, data)
        return self.submit(body)


class TusTestSource:
    """A source with a codename speaking tus through the Flask test client."""

    def __init__(self, browser: SourceBrowser) -> None:
        self.client = browser.client
        self.token = browser.form_token()

    def headers(self, **extra: str) -> dict[str, str]:
        """The tus and CSRF headers every request of this source carries."""
        return {**TUS, "X-CSRFToken": self.token, **extra}

    def create(self, length: int, meta: str = "", **extra: str) -> TestResponse:
        """POST a new upload."""
        return self.client.post("/uploads/", headers=self.headers(
            **{"Upload-Length": str(length), "Upload-Metadata": meta, **extra}))

    def new(self, length: int, meta: str = "") -> str:
        """A new upload's Location."""
        response = self.create(length, meta)
        assert response.status_code == 201, response.text
        return response.headers["Location"]

    def patch(self, location: str, offset: int, body: bytes, content_type: str = OCTETS,
              **extra: str) -> TestResponse:
        """PATCH `body` at `offset`."""
        return self.client.patch(location, data=body, content_type=content_type,
                                 headers=self.headers(**{"Upload-Offset": str(offset), **extra}))

    def head(self, location: str) -> TestResponse:
        """HEAD the upload."""
        return self.client.head(location, headers=self.headers())

    def offset(self, location: str) -> int:
        """The upload's offset as HEAD reports it."""
        response = self.head(location)
        assert response.status_code == 200, response.status_code
        return int(response.headers["Upload-Offset"])

    def delete(self, location: str) -> TestResponse:
        """Terminate the upload."""
        return self.client.delete(location, headers=self.headers())

    def upload(self, chunks: list[bytes], meta: str = "") -> str:
        """A whole upload, one PATCH (one stored part) per chunk; its Location."""
        location = self.new(sum(map(len, chunks)), meta)
        offset = 0
        for chunk in chunks:
            patched = self.patch(location, offset, chunk)
            assert patched.status_code == 204, patched.text
            offset += len(chunk)
        return location


def source_log_in(client: FlaskClient, codename: str) -> TestResponse:
    """Open the login form in `client` and post `codename` with its CSRF token."""
    token = csrf_token(client.get("/login").text)
    return client.post("/login", data={"csrf_token": token, "codename": codename})


def source_log_out(client: FlaskClient) -> TestResponse:
    """Press "Log out" on the submit page."""
    token = csrf_token(client.get("/submit").text)
    return client.post("/logout", data={"csrf_token": token})


def journalist_log_in(client: FlaskClient, services: Services, username: str,
                      password: str | None = None, code: str | None = None) -> TestResponse:
    """Post the journalist login form: the account's password from PASSWORDS and a fresh TOTP
    code unless given."""
    token = csrf_token(client.get("/login").text)
    return client.post("/login", data={
        "csrf_token": token, "username": username,
        "password": PASSWORDS.get(username, "") if password is None else password,
        "code": fresh_code(services, username) if code is None else code})


SECRET_ON_PAGE_RE = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7]+=*)<')


@dataclass(frozen=True)
class Enrolment:
    """What a journalist's enrolment through a link gave: the answer to the form, and the
    two-factor secret the page showed (the journalist's alone)."""

    page: TestResponse
    secret: bytes

    @property
    def secret_text(self) -> str:
        """The secret in base32, as the page showed it."""
        return base64.b32encode(self.secret).decode("ascii")


def shown_secret(page: TestResponse) -> bytes:
    """The two-factor secret a page shows (the enrolment and account pages)."""
    match = SECRET_ON_PAGE_RE.search(page.text)
    assert match, "no two-factor secret on the page"
    return base64.b32decode(html.unescape(match.group(1)))


def code_now(secret: bytes) -> str:
    """A code for `secret` that the server still reads in the same step (waiting out the last
    second of a step)."""
    remaining = TOTP_STEP_SECONDS - time.time() % TOTP_STEP_SECONDS
    if remaining < 1:
        time.sleep(remaining + 0.05)
    return totp_code(secret, datetime.now(UTC))


def journalist_enrol(client: FlaskClient, link: str, passphrase: str, *, kept: bool = False,
                     repeated: str | None = None, code: str | None = None) -> Enrolment:
    """Open an enrolment link in `client`, choose `passphrase` (or type the kept one), add the
    secret shown to an "authenticator" and send its code."""
    path = urlsplit(link).path
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    secret = shown_secret(page)
    answer = client.post(path, data={
        "csrf_token": csrf_token(page.text), "passphrase": passphrase,
        "repeated": "" if kept else (passphrase if repeated is None else repeated),
        "code": code_now(secret) if code is None else code})
    return Enrolment(answer, secret)


def upload_reply(client: FlaskClient, source: Source, data: bytes) -> str:
    """Upload a reply file on the source's page as a logged-in journalist; return the page
    after the redirect."""
    page = client.get(f"/sources/{source.id}")
    answer = client.post(f"/sources/{source.id}/replies/upload", data={
        "csrf_token": csrf_token(page.text), "reply_file": (io.BytesIO(data), "reply.desk")},
        content_type="multipart/form-data", follow_redirects=True)
    assert answer.status_code == 200
    return answer.text


def idle_deadline(services: Services, model: type[JournalistSession] | type[SourceSession],
                  token: str) -> float:
    """The idle deadline sealed in the session row `token` names (seconds since the epoch)."""
    with services.sessions() as db:
        row = cast("JournalistSession | SourceSession | None", db.get(model, token_hash(token)))
        assert row is not None
        data = unseal_data(ServerSession(None, token), row.data)
    assert data is not None
    return float(data[IDLE_FIELD])


def set_idle_deadline(services: Services, model: type[JournalistSession] | type[SourceSession],
                      token: str, deadline: float) -> None:
    """Move the idle deadline sealed in the session row `token` names, as the cookie's holder
    (the only one who can) would; the row's clear day follows it."""
    session = ServerSession(None, token)
    with services.writers() as db:
        row = cast("JournalistSession | SourceSession | None", db.get(model, token_hash(token)))
        assert row is not None
        data = unseal_data(session, row.data)
        assert data is not None
        data[IDLE_FIELD] = int(deadline)
        row.data = seal_data(session, json.dumps(data))
        row.expires_on = datetime.fromtimestamp(deadline, UTC).date()
        db.commit()
