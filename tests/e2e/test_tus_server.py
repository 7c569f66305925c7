"""Resumable uploads against a real `desk serve source`: an independent tus client (tuspy),
connections that die mid-body and resume, chunked bodies, two PATCHes at once, and no
plaintext or filename at rest while a worker streams a PATCH into gpg. Raw sockets send the
bodies that must arrive slowly, in part, or twice. Every wait is bounded. The protocol's
answers are in tests/web/test_tus.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import select
import sqlite3
import threading
import time
from dataclasses import dataclass

import pytest
from tusclient.client import TusClient

from desk.services import Services
from tests.harness.data import KiB, MiB, marked_data, sha256
from tests.harness.desks import files_under, find_markers
from tests.harness.gpg import Keypair
from tests.harness.http import (
    TIMEOUT,
    SourceSession,
    hang_up,
    open_source_session,
    read_response,
    unsent,
)
from tests.harness.servers import Server, wait_for
from tests.harness.tus import (
    OCTETS,
    assert_parts,
    b64,
    metadata,
    only_object,
    upload_rows,
    uploads_left,
)

pytestmark = pytest.mark.slow


# 1. An independent tus client


@pytest.mark.usefixtures("bounded_requests")
def test_tuspy_uploads_in_chunks_and_the_object_decrypts(
        desk: Services, server: Server, journalist: Keypair) -> None:
    remote = open_source_session(server.url)
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
    assert_parts(obj.record, data)
    # Every byte was still in the sealed tail at the end, so the whole hash is known.
    assert obj.record["sha256"] == sha256(data)
    assert upload_rows(desk) == []
    assert uploads_left(desk) == []


@pytest.mark.usefixtures("bounded_requests")
def test_one_patch_upload_records_the_whole_sha256(
        desk: Services, server: Server, journalist: Keypair) -> None:
    remote = open_source_session(server.url)
    data = os.urandom(700 * KiB)
    client = TusClient(server.url + "/uploads/", headers=remote.headers())
    client.uploader(file_stream=io.BytesIO(data), chunk_size=MiB, retries=0,
                    metadata={"filename": "clip.mov"}).upload()
    obj = only_object(desk, journalist)
    assert obj.plaintext == data
    assert obj.record["sha256"] == sha256(data)
    assert obj.record["filename"] == "clip.mov"
    assert obj.record["content_type"] is None
    assert_parts(obj.record, data)


# 2. Resuming after a dead connection


@pytest.mark.parametrize("reset", [
    pytest.param(False, id="close"),
    pytest.param(True, id="reset"),
])
def test_resume_after_a_killed_connection(
        desk: Services, server: Server, journalist: Keypair, reset: bool) -> None:
    remote = open_source_session(server.url)
    data = os.urandom(3 * MiB)
    location = remote.new_upload(len(data), metadata("resumed.mp4", "video/mp4"))
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
    assert_parts(obj.record, data)
    assert upload_rows(desk) == []
    # Resuming cost (almost) nothing: what reached the desk was kept.
    assert sent + len(data) - offset <= 1.02 * len(data)




def test_chunked_patch_body_past_upload_length_is_400(
        desk: Services, server: Server) -> None:
    remote = open_source_session(server.url)
    location = remote.new_upload(100, metadata("chunked.bin"))
    response = remote.request("PATCH", location, iter([b"a" * 60, b"b" * 60]), **{
        "Content-Type": OCTETS, "Upload-Offset": "0"})
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert list((desk.config.store_dir / "objects").iterdir()) == []
    assert response.status_code == 400


# 3. Two PATCHes at once


@dataclass
class SlowPatch:
    """One PATCH sent over a raw socket in small, spaced pieces, stopping at an early answer."""

    remote: SourceSession
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
    remote = open_source_session(server.url)
    size = 1 * MiB
    location = remote.new_upload(size, metadata("race.mp4"))
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
    assert_parts(obj.record, winner.data)
    assert upload_rows(desk) == []




# 4. No plaintext at rest


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
    remote = open_source_session(server.url)
    location = remote.new_upload(len(data), metadata(filename, filetype))

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


