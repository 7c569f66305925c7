"""Resumable uploads: the tus 1.0.0 endpoint at /uploads/ (desk/web/source/tus_views.py and
desk/intake/tus.py).

Protocol answers are checked with the Flask test client. Everything that depends on real
network behaviour (an independent tus client, connections that die mid-body, two PATCHes at
once, what a real worker leaves on disk) runs against a real `desk serve source` process; raw
sockets send the bodies that must arrive slowly, in part, or twice. Every wait is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.client
import io
import os
import secrets
import select
import shutil
import socket
import sqlite3
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func
from sqlalchemy import select as sql_select
from tusclient.client import TusClient
from werkzeug.test import TestResponse

from desk.app import create_app
from desk.intake import tus
from desk.intake.ingest import ObjectWriter
from desk.records.models import CustodyRecord, Submission, Upload
from desk.services import Services
from desk.storage.store import Staging
from tests.conftest import (
    Server,
    SourceBrowser,
    StoredObject,
    files_under,
    find_markers,
    read_objects,
    run_desk,
)
from tests.forms import CODENAME_RE, csrf_token
from tests.gpgtool import Keypair

pytestmark = pytest.mark.slow

KiB = 1024
MiB = 1024 * KiB
TIMEOUT = 30  # seconds for any one HTTP exchange
OCTETS = "application/offset+octet-stream"
TUS = {"Tus-Resumable": "1.0.0"}


# Helpers


def b64(data: bytes | str) -> str:
    """Base64 as Upload-Metadata and Upload-Checksum carry it."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def metadata(filename: str | None = None, filetype: str | None = None) -> str:
    """An Upload-Metadata header value."""
    pairs = [("filename", filename), ("filetype", filetype)]
    return ",".join(f"{key} {b64(value)}" for key, value in pairs if value is not None)


def checksum(algorithm: str, data: bytes) -> str:
    """An Upload-Checksum header value."""
    return f"{algorithm} {b64(hashlib.new(algorithm, data).digest())}"


def sha256(data: bytes) -> str:
    """Hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def wait_for(predicate: Callable[[], bool], seconds: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds, at most `seconds` long; return its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def upload_id(location: str) -> str:
    """The upload id at the end of a Location."""
    return location.rstrip("/").rsplit("/", 1)[-1]


def upload_folder(desk: Services, location: str) -> Path:
    """Where an upload's parts wait."""
    return desk.store.uploads / upload_id(location)


def upload_rows(desk: Services) -> list[Upload]:
    """Every unfinished upload's row."""
    with desk.sessions() as session:
        return list(session.scalars(sql_select(Upload)))


def uploads_left(desk: Services) -> list[Path]:
    """Every upload folder in the store."""
    return sorted(desk.store.uploads.iterdir()) if desk.store.uploads.exists() else []


def only_object(desk: Services, keypair: Keypair) -> StoredObject:
    """The one published object, decrypted with stock gpg."""
    objects = read_objects(desk.config, keypair)
    assert len(objects) == 1, [o.path for o in objects]
    return objects[0]


def assert_parts(record: dict[str, object], chunks: list[bytes]) -> None:
    """The record lists one part per PATCH body, with its size and SHA-256."""
    parts = record["parts"]
    assert isinstance(parts, list)
    assert [(p["size"], p["sha256"]) for p in parts] == [(len(c), sha256(c)) for c in chunks]


def marked_data(size: int, markers: list[bytes], stride: int = 32 * KiB) -> bytes:
    """`size` random bytes with a marker (round robin) every `stride` bytes."""
    out = bytearray()
    while len(out) < size:
        marker = markers[(len(out) // stride) % len(markers)]
        out += marker + os.urandom(stride - len(marker))
    return bytes(out[:size])


# A source in the Flask test client


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


@pytest.fixture
def tus_source(source: SourceBrowser) -> TusTestSource:
    """A source with a codename and its submit page's CSRF token."""
    return TusTestSource(source)


def second_source(app: Flask) -> TusTestSource:
    """Another browser with its own, new codename."""
    browser = SourceBrowser(app.test_client())
    browser.get_codename()
    return TusTestSource(browser)


# A source against the real server


@dataclass(frozen=True)
class RemoteSource:
    """A source's session on the real server, handed to clients as two headers."""

    server: Server
    cookie: str
    token: str

    @classmethod
    def start(cls, server: Server) -> RemoteSource:
        """Landing page, codename, submit page: the cookie and the page's CSRF token."""
        with requests.Session() as http:
            landing = http.get(server.url + "/", timeout=TIMEOUT)
            page = http.post(server.url + "/generate",
                             data={"csrf_token": csrf_token(landing.text)}, timeout=TIMEOUT)
            assert page.status_code == 200
            assert CODENAME_RE.search(page.text), "no codename shown"
            form = http.get(server.url + "/submit", timeout=TIMEOUT, allow_redirects=False)
            assert form.status_code == 200, form.status_code
            return cls(server, str(http.cookies["desk_source"]), csrf_token(form.text))

    @property
    def address(self) -> tuple[str, int]:
        """The server's host and port."""
        parts = urlsplit(self.server.url)
        assert parts.hostname == "127.0.0.1"
        assert parts.port is not None
        return parts.hostname, parts.port

    def headers(self, **extra: str) -> dict[str, str]:
        """What an independent client sends with every request."""
        return {"Cookie": f"desk_source={self.cookie}", "X-CSRFToken": self.token, **TUS,
                **extra}

    def request(self, method: str, path: str, body: bytes | Iterator[bytes] = b"", /,
                **extra: str) -> requests.Response:
        """One tus request with these headers."""
        return requests.request(method, self.server.url + path, data=body,
                                headers=self.headers(**extra), timeout=TIMEOUT)

    def new(self, length: int, meta: str = "") -> str:
        """A new upload's Location (a path)."""
        response = self.request("POST", "/uploads/", **{"Upload-Length": str(length),
                                                        "Upload-Metadata": meta})
        assert response.status_code == 201, response.text
        return response.headers["Location"]

    def offset(self, location: str) -> int:
        """The upload's offset as HEAD reports it."""
        response = self.request("HEAD", location)
        assert response.status_code == 200, response.status_code
        return int(response.headers["Upload-Offset"])

    def begin_patch(self, location: str, offset: int, length: int, **extra: str
                    ) -> socket.socket:
        """A raw connection that has sent a PATCH's headers; the caller sends the body."""
        host, port = self.address
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        headers = self.headers(**{"Host": f"{host}:{port}", "Content-Type": OCTETS,
                                  "Content-Length": str(length), "Upload-Offset": str(offset),
                                  **extra})
        head = f"PATCH {location} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        sock.sendall(head.encode("latin-1"))
        return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """The status and headers of the answer on a raw connection (its timeout bounds this)."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status, {name.lower(): value for name, value in response.getheaders()}


def unsent(sock: socket.socket) -> int:
    """Bytes in the socket's send queue that the peer has not acknowledged yet."""
    queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", queued)[0])


def hang_up(sock: socket.socket, reset: bool) -> None:
    """End a connection mid-body: a TCP reset (a client that vanished) or an orderly close."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture
def bounded_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give every `requests` call in the test a timeout (tuspy sets none)."""
    original = requests.Session.request

    def request(self: requests.Session, method: str, url: str, **kwargs: object
                ) -> requests.Response:
        kwargs["timeout"] = kwargs.get("timeout") or TIMEOUT
        return original(self, method, url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(requests.Session, "request", request)


# 1. An independent tus client


@pytest.mark.usefixtures("bounded_requests")
def test_tuspy_uploads_in_chunks_and_the_object_decrypts(
        desk: Services, server: Server, journalist: Keypair) -> None:
    remote = RemoteSource.start(server)
    data = os.urandom(3 * MiB + 4321)
    client = TusClient(server.url + "/uploads/", headers=remote.headers())
    uploader = client.uploader(file_stream=io.BytesIO(data), chunk_size=MiB, retries=0,
                               metadata={"filename": "станция.mp4", "filetype": "video/mp4"})
    uploader.upload()
    assert uploader.offset == len(data)
    obj = only_object(desk, journalist)
    assert obj.plaintext == data
    assert obj.record["filename"] == "станция.mp4"
    assert obj.record["content_type"] == "video/mp4"
    assert obj.record["size"] == len(data)
    assert_parts(obj.record, [data[i:i + MiB] for i in range(0, len(data), MiB)])
    assert obj.record["sha256"] is None  # across requests, the console computes it
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []


@pytest.mark.usefixtures("bounded_requests")
def test_one_patch_upload_records_the_whole_sha256(
        desk: Services, server: Server, journalist: Keypair) -> None:
    remote = RemoteSource.start(server)
    data = os.urandom(700 * KiB)
    client = TusClient(server.url + "/uploads/", headers=remote.headers())
    client.uploader(file_stream=io.BytesIO(data), chunk_size=MiB, retries=0,
                    metadata={"filename": "clip.mov"}).upload()
    obj = only_object(desk, journalist)
    assert obj.plaintext == data
    assert obj.record["sha256"] == sha256(data)
    assert obj.record["filename"] == "clip.mov"
    assert obj.record["content_type"] is None
    assert_parts(obj.record, [data])


# 2. Resuming after a dead connection




@pytest.mark.parametrize("reset", [
    pytest.param(False, id="close"),
    pytest.param(True, id="reset"),
])
def test_resume_after_a_killed_connection(
        desk: Services, server: Server, journalist: Keypair, reset: bool) -> None:
    remote = RemoteSource.start(server)
    data = os.urandom(3 * MiB)
    location = remote.new(len(data), metadata("resumed.mp4", "video/mp4"))
    half = len(data) // 2
    sent = 0
    with remote.begin_patch(location, 0, len(data)) as sock:  # declares the whole file
        for start in range(0, half, 64 * KiB):
            chunk = data[start:min(start + 64 * KiB, half)]
            sock.sendall(chunk)
            sent += len(chunk)
        # Let the bytes reach the server's kernel before a reset (which drops the send queue).
        assert wait_for(lambda: unsent(sock) == 0, 10)
        hang_up(sock, reset)

    assert wait_for(lambda: remote.offset(location) > 0, 20), "the received bytes were lost"
    offset = remote.offset(location)
    assert 0 < offset <= sent
    rest = remote.request("PATCH", location, data[offset:], **{
        "Content-Type": OCTETS, "Upload-Offset": str(offset)})
    assert rest.status_code == 204, rest.text
    assert int(rest.headers["Upload-Offset"]) == len(data)
    obj = only_object(desk, journalist)
    assert obj.plaintext == data
    assert_parts(obj.record, [data[:offset], data[offset:]])
    assert upload_rows(desk) == []
    # Resuming cost (almost) nothing: what reached the desk was kept.
    assert sent + len(data) - offset <= 1.02 * len(data)




def test_chunked_patch_body_past_upload_length_is_400(
        desk: Services, server: Server) -> None:
    remote = RemoteSource.start(server)
    location = remote.new(100, metadata("chunked.bin"))
    response = remote.request("PATCH", location, iter([b"a" * 60, b"b" * 60]), **{
        "Content-Type": OCTETS, "Upload-Offset": "0"})
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert list((desk.config.store_dir / "objects").iterdir()) == []
    assert response.status_code == 400


# 3. Protocol answers


def test_options_advertises_version_extensions_and_checksums(client: FlaskClient) -> None:
    response = client.options("/uploads/")
    assert response.status_code in (200, 204)
    assert "1.0.0" in response.headers["Tus-Version"].split(",")
    extensions = set(response.headers["Tus-Extension"].split(","))
    assert {"creation", "expiration", "termination", "checksum"} <= extensions
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256"}
    assert int(response.headers["Tus-Max-Size"]) == 64 * MiB


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0"])
def test_missing_or_other_tus_resumable_is_412(
        desk: Services, tus_source: TusTestSource, version: str | None) -> None:
    location = tus_source.new(10)
    headers = {"X-CSRFToken": tus_source.token, "Upload-Length": "10", "Upload-Offset": "0"}
    if version is not None:
        headers["Tus-Resumable"] = version
    client = tus_source.client
    answers = [client.post("/uploads/", headers=headers),
               client.head(location, headers=headers),
               client.patch(location, data=b"0123456789", content_type=OCTETS,
                            headers=headers),
               client.delete(location, headers=headers)]
    assert [a.status_code for a in answers] == [412] * 4
    assert all(a.headers["Tus-Version"] == "1.0.0" for a in answers)
    assert len(upload_rows(desk)) == 1
    assert tus_source.offset(location) == 0


@pytest.mark.parametrize("content_type", [
    "application/octet-stream", "text/plain", "multipart/form-data; boundary=x"])
def test_patch_with_another_content_type_is_415(
        tus_source: TusTestSource, content_type: str) -> None:
    location = tus_source.new(10)
    response = tus_source.patch(location, 0, b"0123456789", content_type=content_type)
    assert response.status_code == 415
    assert tus_source.offset(location) == 0


def test_patch_at_the_wrong_offset_is_409(desk: Services, tus_source: TusTestSource) -> None:
    location = tus_source.new(20)
    assert tus_source.patch(location, 5, b"x" * 5).status_code == 409
    assert tus_source.patch(location, 0, b"a" * 10).status_code == 204
    for stale in (0, 5, 15):
        response = tus_source.patch(location, stale, b"b" * 5)
        assert response.status_code == 409, stale
    assert tus_source.offset(location) == 10
    assert sorted(p.name for p in upload_folder(desk, location).glob("part-*")) \
        == ["part-000000.gpg"]


def test_upload_length_over_the_limit_is_413(
        desk: Services, tus_source: TusTestSource) -> None:
    assert desk.config.max_upload_bytes == 64 * MiB
    assert tus_source.create(64 * MiB + 1).status_code == 413
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []
    assert tus_source.create(64 * MiB).status_code == 201  # exactly the limit is fine


@pytest.mark.parametrize("header", ["", "-1", "ten", "1e3"])
def test_missing_or_bad_upload_length_is_400(
        desk: Services, tus_source: TusTestSource, header: str) -> None:
    response = tus_source.client.post("/uploads/", headers=tus_source.headers(
        **({"Upload-Length": header} if header else {})))
    assert response.status_code == 400
    assert upload_rows(desk) == []


@pytest.mark.parametrize("meta", ["filename !!notbase64", "filename", "a b,a b", "é YQ=="])
def test_bad_upload_metadata_is_400(
        desk: Services, tus_source: TusTestSource, meta: str) -> None:
    response = tus_source.create(10, meta)
    if meta == "filename":  # a key without a value is legal tus
        assert response.status_code == 201
        return
    assert response.status_code == 400
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []


def test_patch_body_past_upload_length_is_400(
        desk: Services, tus_source: TusTestSource) -> None:
    location = tus_source.new(10)
    assert tus_source.patch(location, 0, b"x" * 11).status_code == 400
    assert tus_source.patch(location, 0, b"x" * 4).status_code == 204
    assert tus_source.patch(location, 4, b"y" * 7).status_code == 400
    assert tus_source.offset(location) == 4
    assert sorted(p.name for p in upload_folder(desk, location).iterdir()
                  if not p.name.startswith(".lock")) == ["part-000000.gpg"]


def test_head_reports_offset_length_and_expiry_uncached(tus_source: TusTestSource) -> None:
    location = tus_source.new(100, metadata("a.mp4"))
    assert tus_source.patch(location, 0, b"z" * 30).status_code == 204
    response = tus_source.head(location)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == "30"
    assert response.headers["Upload-Length"] == "100"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "no-store" in response.headers["Cache-Control"]
    assert response.data == b""
    expires = parsedate_to_datetime(response.headers["Upload-Expires"])
    now = datetime.now(UTC)
    assert now + timedelta(days=tus.UPLOAD_DAYS) <= expires \
        <= now + timedelta(days=tus.UPLOAD_DAYS + 1)
    # Creation and PATCH announce the same expiry.
    patched = tus_source.patch(location, 30, b"z")
    assert patched.headers["Upload-Expires"] == response.headers["Upload-Expires"]


def test_delete_terminates_the_upload_and_its_parts(
        desk: Services, tus_source: TusTestSource) -> None:
    location = tus_source.new(100)
    assert tus_source.patch(location, 0, b"q" * 40).status_code == 204
    folder = upload_folder(desk, location)
    assert list(folder.glob("part-*.gpg"))
    assert tus_source.delete(location).status_code == 204
    assert tus_source.head(location).status_code == 404
    assert tus_source.patch(location, 40, b"q").status_code == 404
    assert tus_source.delete(location).status_code == 404
    assert not folder.exists()
    assert upload_rows(desk) == []
    assert list((desk.config.store_dir / "objects").iterdir()) == []


def test_another_session_cannot_see_or_touch_an_upload(
        desk: Services, app: Flask, tus_source: TusTestSource) -> None:
    location = tus_source.new(100, metadata("mine.mp4"))
    assert tus_source.patch(location, 0, b"m" * 10).status_code == 204
    other = second_source(app)
    assert other.head(location).status_code == 404
    assert other.patch(location, 10, b"o" * 10).status_code == 404
    assert other.delete(location).status_code == 404
    # The owner's upload is untouched.
    assert tus_source.offset(location) == 10
    assert len(list(upload_folder(desk, location).glob("part-*.gpg"))) == 1
    # A made-up id is the same 404.
    assert tus_source.head("/uploads/" + secrets.token_hex(16)).status_code == 404


def test_without_the_csrf_header_nothing_is_stored(
        desk: Services, tus_source: TusTestSource) -> None:
    client = tus_source.client
    created = client.post("/uploads/", headers={**TUS, "Upload-Length": "10"})
    assert created.status_code == 400
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []
    location = tus_source.new(10)
    patched = client.patch(location, data=b"0123456789", content_type=OCTETS,
                           headers={**TUS, "Upload-Offset": "0"})
    assert patched.status_code == 400
    forged = client.patch(location, data=b"0123456789", content_type=OCTETS,
                          headers={**TUS, "Upload-Offset": "0", "X-CSRFToken": "forged"})
    assert forged.status_code == 400
    assert client.delete(location, headers=TUS).status_code == 400
    assert tus_source.offset(location) == 0
    assert list(upload_folder(desk, location).glob("part-*")) == []
    assert list((desk.config.store_dir / "objects").iterdir()) == []


def test_without_a_codename_creation_is_403(desk: Services, client: FlaskClient) -> None:
    token = csrf_token(client.get("/").text)  # a session, but no codename yet
    response = client.post("/uploads/", headers={**TUS, "X-CSRFToken": token,
                                                 "Upload-Length": "10"})
    assert response.status_code == 403
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []




def test_zero_length_upload_is_published_at_creation(
        desk: Services, tus_source: TusTestSource, journalist: Keypair) -> None:
    response = tus_source.create(0, metadata("empty.txt", "text/plain"))
    assert response.status_code == 201
    assert upload_rows(desk) == []
    obj = only_object(desk, journalist)
    assert obj.plaintext == b""
    assert obj.record["filename"] == "empty.txt"


# 4. Checksums


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_final_patch_checksum_is_checked_and_a_mismatch_is_discarded(
        desk: Services, tus_source: TusTestSource, journalist: Keypair, algorithm: str) -> None:
    data = os.urandom(300 * KiB)
    location = tus_source.new(len(data), metadata("checked.bin"))
    folder = upload_folder(desk, location)
    assert tus_source.patch(location, 0, data[:100 * KiB]).status_code == 204
    rest = data[100 * KiB:]
    wrong = rest[:-1] + bytes([rest[-1] ^ 1])
    refused = tus_source.patch(location, 100 * KiB, rest,
                               **{"Upload-Checksum": checksum(algorithm, wrong)})
    assert refused.status_code == 460, refused.text
    assert tus_source.offset(location) == 100 * KiB
    assert sorted(p.name for p in folder.iterdir() if p.name != tus.LOCK_NAME) \
        == ["part-000000.gpg"]
    unknown = tus_source.patch(location, 100 * KiB, rest,
                               **{"Upload-Checksum": "md5 " + b64(bytes(16))})
    assert unknown.status_code == 400
    accepted = tus_source.patch(location, 100 * KiB, rest,
                                **{"Upload-Checksum": checksum(algorithm, rest)})
    assert accepted.status_code == 204, accepted.text
    assert accepted.headers["Upload-Offset"] == str(len(data))
    obj = only_object(desk, journalist)
    assert obj.plaintext == data
    assert_parts(obj.record, [data[:100 * KiB], rest])




@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_non_final_patch_with_a_correct_checksum_advances(
        desk: Services, tus_source: TusTestSource, algorithm: str) -> None:
    data = os.urandom(300 * KiB)
    location = tus_source.new(len(data))
    first = tus_source.patch(location, 0, data[:100 * KiB],
                             **{"Upload-Checksum": checksum(algorithm, data[:100 * KiB])})
    assert first.status_code == 204
    assert first.headers["Upload-Offset"] == str(100 * KiB)
    assert tus_source.offset(location) == 100 * KiB
    assert [p.name for p in upload_folder(desk, location).glob("part-*")] \
        == ["part-000000.gpg"]


def test_non_final_patch_with_a_wrong_checksum_is_460(
        desk: Services, tus_source: TusTestSource) -> None:
    data = os.urandom(300 * KiB)
    location = tus_source.new(len(data))
    refused = tus_source.patch(location, 0, data[:100 * KiB],
                               **{"Upload-Checksum": checksum("sha256", data[:99 * KiB])})
    assert tus_source.offset(location) == 0
    assert list(upload_folder(desk, location).glob("part-*")) == []
    assert refused.status_code == 460


# 5. Two PATCHes at once


@dataclass
class SlowPatch:
    """One PATCH sent over a raw socket in small, spaced pieces, stopping at an early answer."""

    remote: RemoteSource
    location: str
    data: bytes
    status: int | None = None
    sent: int = 0
    error: BaseException | None = None

    def run(self, start: threading.Barrier) -> None:
        """Send the headers, wait for the other sender, then trickle the body."""
        try:
            sock = self.remote.begin_patch(self.location, 0, len(self.data))
            with sock:
                start.wait(TIMEOUT)
                for begin in range(0, len(self.data), 32 * KiB):
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:  # answered before the body was all sent: refused
                        break
                    try:
                        sock.sendall(self.data[begin:begin + 32 * KiB])
                    except OSError:
                        break
                    self.sent = begin + 32 * KiB
                    time.sleep(0.01)
                self.status = read_response(sock)[0]
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_two_patches_at_once_one_is_refused_and_nothing_interleaves(
        desk: Services, server: Server, journalist: Keypair) -> None:
    remote = RemoteSource.start(server)
    size = 1 * MiB
    location = remote.new(size, metadata("race.mp4"))
    senders = [SlowPatch(remote, location, os.urandom(size)) for _ in range(2)]
    start = threading.Barrier(2)
    threads = [threading.Thread(target=s.run, args=(start,), daemon=True) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3 * TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    assert [s.error for s in senders] == [None, None]
    statuses = sorted(s.status or 0 for s in senders)
    assert statuses[0] == 204
    assert statuses[1] in (409, 423)
    winner = next(s for s in senders if s.status == 204)
    loser = next(s for s in senders if s is not winner)
    assert loser.sent < size  # it was answered before it had sent everything
    obj = only_object(desk, journalist)
    assert obj.plaintext == winner.data
    assert_parts(obj.record, [winner.data])
    assert upload_rows(desk) == []




def test_upload_stays_locked_while_its_last_part_is_published(
        desk: Services, tus_source: TusTestSource, monkeypatch: pytest.MonkeyPatch) -> None:
    location = tus_source.new(20)
    assert tus_source.patch(location, 0, b"a" * 10).status_code == 204
    answers: list[int | None] = []
    finish = ObjectWriter.finish

    def finish_and_try_the_lock(self: ObjectWriter, staging: Staging, *args: object,
                                **kwargs: object) -> object:
        # What a second PATCH does on arrival, while this one is publishing.
        try:
            with tus.locked(desk.store, upload_id(location)):
                answers.append(None)
        except tus.TusError as exc:
            answers.append(exc.status)
        return finish(self, staging, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ObjectWriter, "finish", finish_and_try_the_lock)
    assert tus_source.patch(location, 10, b"b" * 10).status_code == 204
    assert answers == [423]


# 6. Expiry


def expire(desk: Services, location: str) -> None:
    """Move an upload's expiry date into the past."""
    with desk.sessions() as session:
        upload = session.get(Upload, upload_id(location))
        assert upload is not None
        upload.expires_on = datetime.now(UTC).date() - timedelta(days=1)
        session.commit()


def test_expired_upload_is_gone_and_purge_drops_its_row(
        desk: Services, tus_source: TusTestSource) -> None:
    kept = tus_source.new(100)
    location = tus_source.new(100)
    assert tus_source.patch(location, 0, b"e" * 10).status_code == 204
    expire(desk, location)
    assert tus_source.head(location).status_code in (404, 410)
    assert tus_source.patch(location, 10, b"e" * 10).status_code in (404, 410)
    assert tus_source.offset(kept) == 0
    result = run_desk("purge", data_dir=desk.config.data_dir)
    assert result.returncode == 0, result.stderr
    assert [row.id for row in upload_rows(desk)] == [upload_id(kept)]
    assert tus_source.head(location).status_code == 404
    assert upload_folder(desk, kept).is_dir()




def test_purge_removes_an_expired_uploads_folder(
        desk: Services, tus_source: TusTestSource) -> None:
    location = tus_source.new(100)
    assert tus_source.patch(location, 0, b"e" * 10).status_code == 204
    expire(desk, location)
    result = run_desk("purge", data_dir=desk.config.data_dir)
    assert result.returncode == 0, result.stderr
    assert upload_rows(desk) == []
    assert not upload_folder(desk, location).exists()


# 7. Out of disk space


def test_upload_larger_than_the_free_space_is_507(desk: Services) -> None:
    roomy = create_app(replace(desk.config, max_upload_bytes=1 << 60), "source", services=desk)
    browser = SourceBrowser(roomy.test_client())
    browser.get_codename()
    source = TusTestSource(browser)
    free = shutil.disk_usage(desk.config.data_dir).free
    response = source.create(free + 1, metadata("huge.mp4"))
    assert response.status_code == 507
    assert "Location" not in response.headers
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []
    assert source.create(1000).status_code == 201  # the same desk takes what fits


# 8. No plaintext at rest


def test_no_plaintext_or_filename_at_rest_during_and_after_an_upload(
        desk: Services, server: Server, journalist: Keypair) -> None:
    markers = [secrets.token_hex(16).encode() for _ in range(4)]
    name_marker = secrets.token_hex(12)
    filename = f"станция-{name_marker}.mp4"
    filetype = f"video/x-{secrets.token_hex(6)}"
    data = marked_data(2 * MiB, markers)
    secret_words = [*markers, name_marker.encode(), filename.encode(), b64(filename).encode(),
                    filetype.encode(), b64(filetype).encode()]
    roots = (desk.config.data_dir, server.tmpdir)
    database = desk.config.data_dir / "desk.db"
    assert database in files_under(*roots)  # the DB and its WAL are scanned too
    remote = RemoteSource.start(server)
    location = remote.new(len(data), metadata(filename, filetype))

    sock = remote.begin_patch(location, 0, MiB)
    with sock:
        sock.sendall(data[:MiB // 2])
        assert wait_for(lambda: unsent(sock) == 0, 10)
        time.sleep(0.2)  # the worker has been streaming this body into gpg for a while
        assert find_markers(secret_words, *roots) == []  # mid-PATCH
        sock.sendall(data[MiB // 2:MiB])
        assert read_response(sock)[0] == 204
    assert find_markers(secret_words, *roots) == []  # between PATCHes
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT * FROM uploads").fetchall()
    assert len(rows) == 1
    stored = repr(rows).encode() + b"".join(v for v in rows[0] if isinstance(v, bytes))
    assert not [w for w in secret_words if w in stored]

    rest = remote.request("PATCH", location, data[MiB:], **{
        "Content-Type": OCTETS, "Upload-Offset": str(MiB)})
    assert rest.status_code == 204
    assert find_markers(secret_words, *roots, server.log) == []  # after publication
    obj = only_object(desk, journalist)  # the markers really were sent
    assert obj.plaintext == data
    assert obj.record["filename"] == filename
    assert obj.record["content_type"] == filetype


# 9. A finished upload is a normal object


def test_finished_upload_is_listed_recorded_in_custody_and_verifies(
        desk: Services, tus_source: TusTestSource, journalist: Keypair) -> None:
    data = os.urandom(200 * KiB)
    location = tus_source.new(len(data), metadata("normal.mp4", "video/mp4"))
    assert tus_source.patch(location, 0, data[:50 * KiB]).status_code == 204
    with desk.sessions() as session:  # nothing is listed before the last byte
        assert session.scalar(sql_select(func.count()).select_from(Submission)) == 0
    assert tus_source.patch(location, 50 * KiB, data[50 * KiB:]).status_code == 204
    obj = only_object(desk, journalist)
    assert obj.plaintext == data
    with desk.sessions() as session:
        submissions = list(session.scalars(sql_select(Submission)))
        assert [(s.id, s.kind, s.part_count) for s in submissions] \
            == [(obj.record["id"], "file", 2)]
        ingest = list(session.scalars(sql_select(CustodyRecord).where(
            CustodyRecord.event == "ingest")))
        assert [(e.object_id, e.ciphertext_sha256) for e in ingest] \
            == [(submissions[0].id, submissions[0].ciphertext_sha256)]
    assert obj.path.name == submissions[0].id
    result = run_desk("custody", "verify", data_dir=desk.config.data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
