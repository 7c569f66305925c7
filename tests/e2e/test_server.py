"""End-to-end uploads against a real `desk serve source` process under gunicorn.

These tests speak HTTP to 127.0.0.1 only. `requests` sends the simple posts; `http.client` and the
socket under it send the bodies that must arrive slowly, in part, or not at all. Every wait is
bounded in count and in time.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import secrets
import signal
import socket
import stat
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from desk.records.models import Item
from desk.services import Services
from tests.harness.data import KiB, MiB, marked_data, new_markers
from tests.harness.desks import files_under, find_markers, read_objects
from tests.harness.forms import FormBody, StreamedForm
from tests.harness.gpg import Keypair
from tests.harness.http import HttpBrowser
from tests.harness.servers import Server, wait_for

pytestmark = pytest.mark.slow

TOO_LARGE_TEXT = "more than this desk accepts"


# What the processes hold


def process_tree(pids: Iterable[int]) -> list[int]:
    """`pids` and all their descendants (gpg runs as a child of a worker thread)."""
    seen: list[int] = []
    todo = list(pids)
    while todo and len(seen) < 1000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return seen


@dataclass(frozen=True)
class OpenFile:
    """A regular file some process holds open, possibly already unlinked."""

    pid: int
    fd: int
    target: str
    size: int


def open_regular_files(pids: Iterable[int]) -> list[OpenFile]:
    """Every regular file open in `pids` (stat follows /proc/PID/fd links to unlinked inodes)."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for link in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    info = os.stat(link)
                    if stat.S_ISREG(info.st_mode):
                        found.append(OpenFile(pid, int(link.name), os.readlink(link),
                                              info.st_size))
    return found


def markers_in_open_files(files: list[OpenFile], markers: list[bytes]
                          ) -> list[tuple[OpenFile, bytes]]:
    """(file, marker) for every marker found in the current contents of an open file."""
    hits = []
    for entry in files:
        try:
            with open(f"/proc/{entry.pid}/fd/{entry.fd}", "rb") as handle:
                data = handle.read()
        except OSError:
            continue  # closed since it was listed
        hits += [(entry, marker) for marker in markers if marker in data]
    return hits


def submission_count(desk: Services) -> int:
    """How many Submission rows the desk's database holds."""
    with desk.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Item)) or 0)


def object_dirs(desk: Services) -> list[Path]:
    """Published object directories in the store."""
    return sorted((desk.config.store_dir / "objects").iterdir())


def staging_dirs(desk: Services) -> list[Path]:
    """Staging directories in the store (objects being written)."""
    return sorted((desk.config.store_dir / "staging").iterdir())


def abort(conn: http.client.HTTPConnection, reset: bool = True) -> None:
    """Hang up mid-body: with a TCP reset (a client that vanished) or an orderly close."""
    assert conn.sock is not None
    if reset:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.sock.close()
    conn.close()


def send_in_chunks(conn: http.client.HTTPConnection, data: bytes, size: int = MiB) -> None:
    """Send `data` in `size` pieces."""
    for start in range(0, len(data), size):
        conn.send(data[start:start + size])


def repeated(block: bytes, total: int) -> Iterator[bytes]:
    """`total` bytes made of `block` over and over, one block at a time."""
    sent = 0
    while sent < total:
        piece = block[:total - sent]
        sent += len(piece)
        yield piece


def post_streamed(source: HttpBrowser, total: int, block: bytes) -> tuple[int, str, str]:
    """Post a form whose body is exactly `total` bytes, with Content-Length.

    The file data is `block` repeated; returns the status, the page and the data's SHA-256.
    """
    form = StreamedForm.build(source.form_token(), "edge.mp4")
    size = total - form.length(0)
    sha256 = hashlib.sha256()
    for piece in repeated(block, size):
        sha256.update(piece)
    assert form.length(size) == total
    conn = source.connection()
    try:
        conn.request("POST", "/submit", body=iter([form.head, *repeated(block, size), form.tail]),
                     headers=source.post_headers(form.content_type, total))
        response = conn.getresponse()
        page = response.read().decode()
    finally:
        conn.close()
    return response.status, page, sha256.hexdigest()


def assert_nothing_stored(desk: Services, server: Server, markers: list[bytes]) -> None:
    """No object, no staging leftover, no row, and no marker on the desk's or server's disk."""
    assert object_dirs(desk) == []
    assert staging_dirs(desk) == []
    assert submission_count(desk) == 0
    assert find_markers(markers, desk.config.data_dir, server.tmpdir) == []


# Tests


def test_upload_through_real_server_decrypts_with_stock_gpg(
        desk: Services, server: Server, journalist: Keypair) -> None:
    source = HttpBrowser.with_codename(server.url)
    video, note = os.urandom(5 * MiB), b"platform 3, 06:40, two buses\n"
    body = (FormBody().field("csrf_token", source.form_token())
            .field("message", "They were moved at dawn.")
            .file("station.mp4", video).file("notes.txt", note, "text/plain"))

    page = source.post(body)

    assert page.status_code == 200, page.text
    for data in (video, note):
        assert hashlib.sha256(data).hexdigest() in page.text
        assert f"({len(data)} bytes)" in page.text
    stored = {f"{obj.record['kind']}:{obj.record['filename']}": obj
              for obj in read_objects(desk.config, journalist)}
    assert set(stored) == {"message:None", "file:station.mp4", "file:notes.txt"}
    assert stored["message:None"].plaintext == b"They were moved at dawn."
    for name, data, content_type in (("station.mp4", video, "video/mp4"),
                                     ("notes.txt", note, "text/plain")):
        obj = stored[f"file:{name}"]
        assert obj.plaintext == data
        assert obj.record["sha256"] == hashlib.sha256(data).hexdigest()
        assert obj.record["size"] == len(data)
        assert obj.record["content_type"] == content_type
    assert submission_count(desk) == 3
    assert staging_dirs(desk) == []


def test_open_file_scanner_sees_unlinked_temp_files() -> None:
    """The mid-upload scan below would see a Werkzeug spool file: prove it on this process."""
    marker = secrets.token_hex(16).encode()
    with tempfile.TemporaryFile() as spool:  # unlinked at once, like Werkzeug's spool file
        spool.write(os.urandom(1000) + marker + os.urandom(1000))
        spool.flush()
        files = open_regular_files([os.getpid()])
        assert any(f.fd == spool.fileno() and f.target.endswith("(deleted)") for f in files)
        assert [m for _, m in markers_in_open_files(files, [marker])] == [marker]


def test_no_plaintext_in_open_files_mid_upload(
        desk: Services, server: Server, journalist: Keypair, tmp_path: Path) -> None:
    """While a 12 MiB upload is half sent, no process of the server holds its plaintext.

    Werkzeug's `request.files` would spool this file part into an unlinked temp file once it
    passed 500 KiB: a regular file in some worker's /proc/PID/fd, growing with the markers as
    the body arrives. The scan waits until the server has demonstrably consumed megabytes of
    the body (some regular file it holds open has grown past 3 MiB: the spool, or gpg's
    ciphertext), then reads every regular file open in every worker and their children.
    """
    source = HttpBrowser.with_codename(server.url)
    markers = new_markers(4)
    message_marker, name_marker = new_markers(2)
    filename = name_marker + b".mp4"
    data = marked_data(12 * MiB, markers, stride=64 * KiB)
    form = StreamedForm.build(source.form_token(), filename, message_marker.decode())
    body = form.head + data + form.tail
    every_marker = [*markers, message_marker, name_marker]
    half = len(form.head) + 6 * MiB

    conn = source.begin_post(form.content_type, len(body))
    try:
        send_in_chunks(conn, body[:half])

        def consumed() -> bool:
            files = open_regular_files(process_tree(server.worker_pids()))
            return any(f.size >= 3 * MiB for f in files)

        assert wait_for(consumed, 10), "the server never started consuming the body"
        workers = process_tree(server.worker_pids())
        files = open_regular_files(workers)
        assert files, "no regular file open in the server: the scan saw nothing"
        assert markers_in_open_files(files, every_marker) == []
        assert find_markers(every_marker, desk.config.data_dir, server.tmpdir) == []

        send_in_chunks(conn, body[half:])
        response = conn.getresponse()
        page = response.read().decode()
    finally:
        conn.close()

    assert response.status == 200, page
    assert hashlib.sha256(data).hexdigest() in page
    db = desk.config.data_dir / "desk.db"
    assert db.exists()
    scanned = {*files_under(desk.config.data_dir, server.tmpdir)}
    assert db in scanned
    assert find_markers(every_marker, desk.config.data_dir, server.tmpdir) == []
    assert find_markers([name_marker], tmp_path) == []
    files_by_name = {str(obj.record["filename"]): obj
                     for obj in read_objects(desk.config, journalist) if obj.record["filename"]}
    assert files_by_name[filename.decode()].plaintext == data


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "close"])
def test_aborted_upload_leaves_nothing(desk: Services, server: Server, reset: bool) -> None:
    source = HttpBrowser.with_codename(server.url)
    markers = new_markers(3)
    form = StreamedForm.build(source.form_token(), markers[0] + b".mp4", markers[1].decode())
    data = marked_data(24 * MiB, markers, stride=64 * KiB)
    body = form.head + data + form.tail

    conn = source.begin_post(form.content_type, len(body))  # declares the whole length
    send_in_chunks(conn, body[:len(body) // 2])

    def staging_grew() -> bool:
        return sum(p.stat().st_size for p in files_under(desk.config.store_dir / "staging")
                   ) >= 3 * MiB

    assert wait_for(staging_grew, 10), "the server never started encrypting the upload"
    abort(conn, reset)

    assert wait_for(lambda: staging_dirs(desk) == [], 10), staging_dirs(desk)
    assert_nothing_stored(desk, server, markers)

    # The desk still takes a new upload on a new connection.
    after = source.post(FormBody().field("csrf_token", source.form_token())
                        .file("again.mp4", b"still here"))
    assert after.status_code == 200, after.text
    assert hashlib.sha256(b"still here").hexdigest() in after.text
    assert len(object_dirs(desk)) == 1
    assert submission_count(desk) == 1


def test_oversized_body_gets_a_413_page_not_a_reset(desk: Services, server: Server) -> None:
    limit = desk.config.max_upload_bytes
    assert limit == 64 * MiB
    source = HttpBrowser.with_codename(server.url)
    markers = new_markers(2)
    block = marked_data(MiB, markers, stride=64 * KiB)

    # Declared too large up front, and streamed anyway.
    form = StreamedForm.build(source.form_token(), "big.mp4")
    size = 80 * MiB
    conn = source.connection()
    try:
        conn.request("POST", "/submit", body=iter([form.head, *repeated(block, size), form.tail]),
                     headers=source.post_headers(form.content_type, form.length(size)))
        response = conn.getresponse()
        page = response.read().decode()
    finally:
        conn.close()
    assert response.status == 413
    assert TOO_LARGE_TEXT in page
    assert_nothing_stored(desk, server, markers)

    # No length at all: a chunked body that grows past the limit while it is encrypted.
    form = StreamedForm.build(source.form_token(), "bigger.mp4")
    conn = source.connection()
    try:
        conn.request("POST", "/submit", body=iter([form.head, *repeated(block, 72 * MiB),
                                                   form.tail]),
                     headers=source.post_headers(form.content_type, None), encode_chunked=True)
        response = conn.getresponse()
        page = response.read().decode()
    finally:
        conn.close()
    assert response.status == 413
    assert TOO_LARGE_TEXT in page
    assert_nothing_stored(desk, server, markers)

    # One byte under the limit still goes through, on the same server.
    status, page, sha256 = post_streamed(source, limit - 1, block)
    assert status == 200, page
    assert sha256 in page
    assert submission_count(desk) == 1
    assert staging_dirs(desk) == []


def test_body_of_exactly_the_limit_is_accepted(desk: Services, server: Server) -> None:
    source = HttpBrowser.with_codename(server.url)
    status, page, sha256 = post_streamed(source, desk.config.max_upload_bytes, os.urandom(MiB))
    assert status == 200, page
    assert sha256 in page
    assert submission_count(desk) == 1


def test_logs_hold_no_plaintext_or_filenames(desk: Services, server: Server) -> None:
    source = HttpBrowser.with_codename(server.url)
    markers = new_markers(3)
    message_marker, name_marker, data_marker = markers
    filename = f"{name_marker.decode()} station.mp4"
    body = (FormBody().field("csrf_token", source.form_token())
            .field("message", f"met at {message_marker.decode()}")
            .file(filename, marked_data(2 * MiB, [data_marker], stride=64 * KiB)))
    page = source.post(body)
    assert page.status_code == 200, page.text
    assert filename in page.text

    # A failed upload too: error paths are where tracebacks and messages get logged.
    form = StreamedForm.build(source.form_token(), filename, message_marker.decode())
    conn = source.begin_post(form.content_type, form.length(8 * MiB))
    send_in_chunks(conn, form.head + marked_data(4 * MiB, [data_marker], stride=64 * KiB))
    assert wait_for(lambda: bool(files_under(desk.config.store_dir / "staging")), 10)
    abort(conn)
    assert wait_for(lambda: staging_dirs(desk) == [], 10), staging_dirs(desk)

    # Prove server.log is the live error log: gunicorn reports a killed worker there.
    worker = server.worker_pids()[0]
    os.kill(worker, signal.SIGKILL)
    assert wait_for(lambda: f"(pid:{worker}) was sent SIGKILL".encode()
                    in server.log.read_bytes(), 10), server.log.read_text()
    server.process.terminate()  # flush and close the log before reading it
    server.process.wait(timeout=30)
    log = server.log.read_bytes()
    assert source.codename is not None
    for secret in (*markers, filename.encode(), source.codename.encode()):
        assert secret not in log
    assert submission_count(desk) == 2
