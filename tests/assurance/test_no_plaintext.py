"""No plaintext anywhere (DESIGN.md, invariant 1), end to end, against real server processes.

One long test drives every flow that carries something a source or a journalist must not leave
readable on the server: a form upload, resumable uploads (finished, aborted, cut off), messages,
a reply typed into the journalist interface, an end-to-end reply from `desk-review reply`, both
kinds of export, deletions by a journalist and by a source, and a codename login. Each carries
its own long random markers, in contents, original filenames (with their UTF-16 forms and the
base64 that tus sends) and content types. Then every byte the server wrote is scanned: the data
directory (database, WAL, store, keyring), both server processes' TMPDIRs, their logs, the
`desk` command's TMPDIR and everything it printed. Scans also run while uploads are in
progress, not only at the end.

The source interface is `desk serve source`, started like conftest's `server` but cutting
parts of 256 KiB (the desk's are 64 MiB), so that resumable uploads here hold parts and sealed
tail pieces side by side; the journalist interface is a second `desk serve journalist` process
started the same way, with its own TMPDIR. The offline console runs outside the server's
directories, as it would on the air-gapped machine.
"""

from __future__ import annotations

import io
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tusclient.client import TusClient

from crypto.names import TAIL_PREFIX, TEMP_PREFIX
from desk.records.models import Item, Reply, Source
from desk.services import Services
from tests.harness.console import ok, review
from tests.harness.data import KiB, MiB, marked_data
from tests.harness.desks import PASSWORDS, files_under, fresh_code, read_objects, run_desk
from tests.harness.forms import FormBody, csrf_token
from tests.harness.gpg import Keypair
from tests.harness.http import (
    TIMEOUT,
    HttpBrowser,
    hang_up,
    journalist_session,
    open_source_session,
    post_journalist_form,
    read_response,
    unsent,
)
from tests.harness.needles import Needles, scan
from tests.harness.servers import Server, small_parts_env, start_server, wait_for
from tests.harness.tus import held, metadata, tail_at, upload_id

PART = 256 * KiB
# What is being written while a form arrives (a part, into gpg), and while a PATCH body
# arrives (a sealed tail piece).
WRITING_PART = TEMP_PREFIX + "part-"
WRITING_TAIL = TEMP_PREFIX + TAIL_PREFIX

pytestmark = pytest.mark.slow


@pytest.fixture
def server(desk: Services, tmp_path: Path) -> Iterator[Server]:
    """conftest's `server`, cutting parts of PART bytes."""
    started = start_server(desk.config.data_dir, "source", log=tmp_path / "server.log",
                           tmpdir=tmp_path / "server-tmp", timeout=30, env={
                               "DESK_MAX_UPLOAD_BYTES": str(desk.config.max_upload_bytes),
                               **small_parts_env(tmp_path, PART)})
    yield started
    started.stop(timeout=30)


# --- the test ----------------------------------------------------------------------------------


def desk_command(*args: str, data_dir: Path, tmpdir: Path, logs: Path
                 ) -> subprocess.CompletedProcess[str]:
    """Run `desk` with its own TMPDIR; keep what it printed with the logs to scan."""
    result = run_desk(*args, data_dir=data_dir, extra_env={"TMPDIR": str(tmpdir)})
    number = len(list(logs.iterdir()))
    (logs / f"{number:02d}-{args[0]}.out").write_text(result.stdout + "\n" + result.stderr)
    return result


def in_progress(folder: Path, writing: str) -> bool:
    """Whether a file whose name starts with `writing` (WRITING_PART: gpg writing a part;
    WRITING_TAIL: a PATCH body being sealed) is being written below `folder` (waiting a while
    for it to start)."""
    return wait_for(lambda: any(path.name.startswith(writing)
                                for path in files_under(folder)), 10)


def pause_mid_body(sock: socket.socket) -> None:
    """Wait until the server has taken every byte sent so far, and a little longer."""
    assert wait_for(lambda: unsent(sock) == 0, 10)
    time.sleep(0.3)


@pytest.mark.usefixtures("bounded_requests")
def test_nothing_readable_reaches_the_servers_disks_or_logs(
        accounts: Services, server: Server, journalist: Keypair, tmp_path: Path) -> None:
    needles = Needles()
    data_dir = accounts.config.data_dir
    cli_tmp, cli_logs, offline = tmp_path / "cli-tmp", tmp_path / "cli-logs", tmp_path / "air"
    for folder in (cli_tmp, cli_logs, offline):
        folder.mkdir()
    roots = [data_dir, server.tmpdir, server.log, cli_tmp, cli_logs]

    def assert_clean(moment: str) -> None:
        assert scan(needles, roots) == [], moment

    # 1. A source gets a codename and sends a message and two files in one form. The scan
    #    runs while the body is still arriving.
    witness = HttpBrowser(server.url)
    codename = witness.get_codename()
    needles.codename("codename", codename)
    message = needles.marker("form message")
    files = []
    for label, stem, suffix in (("form file 1", "вокзал-перрон", ".mp4"),
                                ("form file 2", "证据-站台", ".mov")):
        name = needles.filename(label, stem, suffix)
        content_type = needles.content_type(f"{label} type")
        content = marked_data(MiB + 4321, [needles.marker(label).encode()
                                           for _ in range(3)])
        files.append((name, content_type, content))
    body = FormBody().field("csrf_token", csrf_token(witness.submit_page())) \
        .field("message", message)
    for name, content_type, content in files:
        body.file(name, content, content_type=content_type)
    encoded = body.encode()
    remote = witness.session()
    host, port = remote.address
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall((f"POST /submit HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Cookie: {remote.cookie}\r\n"
                      f"Content-Type: {body.content_type}\r\n"
                      f"Content-Length: {len(encoded)}\r\n\r\n").encode("latin-1"))
        sock.sendall(encoded[:len(encoded) * 3 // 4])  # into the second file
        pause_mid_body(sock)
        assert in_progress(data_dir / "store" / "staging", WRITING_PART)
        assert_clean("while a form upload arrives")
        sock.sendall(encoded[len(encoded) * 3 // 4:])
        assert read_response(sock)[0] == 200
    assert_clean("after the form upload")

    # 2. A resumable upload, scanned mid-PATCH and between PATCHes, then finished.
    tus_name = needles.filename("tus file", "محطة-القطار", ".mp4")
    tus_type = needles.content_type("tus type")
    tus_data = marked_data(2 * MiB, [needles.marker("tus content").encode() for _ in range(4)])
    location = remote.new_upload(len(tus_data), metadata(tus_name, tus_type))
    with remote.begin_patch(location, 0, MiB) as sock:
        sock.sendall(tus_data[:MiB // 2])
        pause_mid_body(sock)
        assert in_progress(data_dir / "store" / "uploads", WRITING_TAIL)
        assert_clean("mid-PATCH")
        sock.sendall(tus_data[MiB // 2:MiB])
        assert read_response(sock)[0] == 204
    assert_clean("between PATCHes")
    last = remote.request("PATCH", location, tus_data[MiB:], **{
        "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(MiB)})
    assert last.status_code == 204

    # 3. Another, by an independent tus client in three chunks.
    tuspy_name = needles.filename("tuspy file", "platform-4-dawn", ".mkv")
    tuspy_data = marked_data(768 * KiB, [needles.marker("tuspy content").encode()])
    client = TusClient(f"{server.url}/uploads/", headers=remote.headers())
    uploader = client.uploader(file_stream=io.BytesIO(tuspy_data), chunk_size=256 * KiB,
                               retries=0, metadata={"filename": tuspy_name,
                                                    "filetype": "video/x-matroska"})
    uploader.upload()
    assert uploader.offset == len(tuspy_data)

    # 4. One upload aborted after a part (DELETE), one cut off mid-PATCH (a reset connection):
    #    the second stays pending with the part that arrived.
    aborted_name = needles.filename("aborted file", "ناتمام", ".bin")
    aborted = remote.new_upload(MiB, metadata(aborted_name, "application/octet-stream"))
    sent = remote.request("PATCH", aborted, marked_data(300 * KiB, [
        needles.marker("aborted content").encode()]), **{
        "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert sent.status_code == 204
    assert remote.request("DELETE", aborted).status_code == 204
    cut_name = needles.filename("cut file", "przerwane-ąćę", ".bin")
    cut = remote.new_upload(MiB, metadata(cut_name, "application/octet-stream"))
    sock = remote.begin_patch(cut, 0, MiB)
    sock.sendall(marked_data(400 * KiB, [needles.marker("cut content").encode()]))
    pause_mid_body(sock)
    assert in_progress(data_dir / "store" / "uploads", WRITING_TAIL)
    assert_clean("mid-PATCH of the upload about to be cut off")
    hang_up(sock, reset=True)
    assert wait_for(lambda: remote.offset(cut) > 0, 15)
    assert_clean("after an aborted and a cut-off upload")

    # 5. A second source sends a message; a journalist will delete that source.
    other = HttpBrowser(server.url)
    needles.codename("second codename", other.get_codename())
    other_message = needles.marker("second message")
    sent = other.http.post(f"{server.url}/submit", files={
        "csrf_token": (None, csrf_token(other.submit_page())),
        "message": (None, other_message)}, timeout=TIMEOUT)
    assert sent.status_code == 200

    with accounts.sessions() as session:
        counts = dict(session.execute(select(Item.source_id, func.count())
                                      .group_by(Item.source_id)).all())
        sources = {s.id: s.designation for s in session.scalars(select(Source))}
    source_id = next(sid for sid, count in counts.items() if count == 5)
    other_id = next(sid for sid in sources if sid != source_id)
    assert counts[other_id] == 1

    newsroom = start_server(data_dir, "journalist", log=tmp_path / "journalist.log",
                            tmpdir=tmp_path / "journalist-tmp", timeout=30)
    try:
        roots += [newsroom.tmpdir, newsroom.log]
        alice = journalist_session(newsroom.url, "alice", PASSWORDS["alice"],
                                   fresh_code(accounts, "alice"), timeout=TIMEOUT)
        page = f"/sources/{source_id}"

        # 6. A reply typed into the journalist interface.
        web_reply = needles.marker("web reply")
        typed = post_journalist_form(alice, newsroom.url, page, f"{page}/replies",
                                     {"text": web_reply})
        assert typed.status_code == 302

        # 7. `desk export`, then an end-to-end reply written offline and uploaded.
        first_bundle = offline / "first.tar"
        exported = desk_command("export", "--out", str(first_bundle), "--all",
                                data_dir=data_dir, tmpdir=cli_tmp, logs=cli_logs)
        assert exported.returncode == 0, exported.stderr
        workspace = offline / "ws"
        ok(review(workspace, journalist.home, "import", str(first_bundle)))
        e2e_reply = needles.marker("end-to-end reply")
        message_file = offline / "reply.txt"
        message_file.write_text(f"{e2e_reply}\n", encoding="utf-8")
        reply_file = offline / "reply.desk"
        ok(review(workspace, journalist.home, "reply", sources[source_id],
                  "--message-file", str(message_file), "--out", str(reply_file)))
        token = csrf_token(alice.get(f"{newsroom.url}{page}", timeout=TIMEOUT).text)
        uploaded = alice.post(f"{newsroom.url}{page}/replies/upload",
                              data={"csrf_token": token},
                              files={"reply_file": ("reply.desk", reply_file.read_bytes())},
                              timeout=TIMEOUT)
        assert f"Reply 2 to {sources[source_id]} stored" in uploaded.text
        assert_clean("after both replies")

        # 8. The source logs in with the codename in a fresh browser, reads both replies and
        #    deletes the web one.
        returning = HttpBrowser(server.url)
        returning.log_in(codename)
        shown = returning.submit_page()
        assert web_reply in shown
        assert e2e_reply in shown
        with accounts.sessions() as session:
            web_id = session.scalars(select(Reply.id).where(Reply.via == "web")).one()
        deleted = returning.http.post(f"{server.url}/replies/delete", data={
            "csrf_token": csrf_token(shown), "reply": web_id}, timeout=TIMEOUT,
            allow_redirects=False)
        assert deleted.status_code == 302
        assert web_reply not in returning.submit_page()

        # 9. The journalist deletes one item (the three-part upload) and the second source,
        #    then exports on the web.
        with accounts.sessions() as session:
            item = session.scalars(select(Item.id).where(
                Item.source_id == source_id, Item.part_count == 3)).one()
        removed = post_journalist_form(alice, newsroom.url, page, f"{page}/items", {
            "action": "delete", "confirm": "yes", "item": item})
        assert removed.status_code == 302
        gone = post_journalist_form(alice, newsroom.url, f"/sources/{other_id}",
                         f"/sources/{other_id}/delete", {"confirm": "yes"})
        assert gone.status_code == 302
        web_bundle = post_journalist_form(alice, newsroom.url, "/", "/export",
                                          {"scope": "all"})
        assert web_bundle.status_code == 200
        assert web_bundle.headers["Content-Type"] == "application/x-tar"
        (offline / "web.tar").write_bytes(web_bundle.content)
    finally:
        newsroom.stop(timeout=30)

    verified = desk_command("custody", "verify", data_dir=data_dir, tmpdir=cli_tmp,
                            logs=cli_logs)
    assert verified.returncode == 0, verified.stderr
    assert "2 replies match what was sent" in verified.stdout

    # 10. Everything the server ever wrote, and the bundles on the transfer stick.
    assert scan(needles, [*roots, first_bundle, offline / "web.tar"]) == []

    # The scan found nothing because there was nothing readable, not because nothing was sent.
    stored = {obj.record["filename"]: obj.plaintext for obj in read_objects(accounts.config,
                                                                            journalist)}
    assert stored[files[0][0]] == files[0][2]
    assert stored[files[1][0]] == files[1][2]
    assert stored[tus_name] == tus_data
    assert stored[None] == message.encode()
    assert tuspy_name not in stored  # deleted by the journalist
    pending = list((data_dir / "store" / "uploads").iterdir())
    assert len(pending) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", pending[0].name)
    # The cut-off upload keeps what arrived: a part of 256 KiB (and, unless the connection
    # was cut exactly there, a sealed tail piece with the rest), all scanned above.
    kept = held(pending[0])
    assert "part-000000.gpg" in kept
    assert set(kept) <= {"part-000000.gpg", tail_at(0)}



def test_a_half_done_upload_leaves_nothing_readable_in_its_folder(
        desk: Services, server: Server, journalist: Keypair) -> None:
    needles = Needles()
    data_dir = desk.config.data_dir
    roots = [data_dir, server.tmpdir, server.log]
    name = needles.filename("half-done file", "حافلة-الليل", ".mp4")
    content_type = needles.content_type("half-done type")
    data = marked_data(MiB + 12_345, [needles.marker(f"half-done content {n}").encode()
                                      for n in range(3)])
    remote = open_source_session(server.url)
    location = remote.new_upload(len(data), metadata(name, content_type))
    folder = data_dir / "store" / "uploads" / upload_id(location)
    assert_clean = _clean(needles, roots, folder)

    for start, end in ((0, 300 * KiB), (300 * KiB, 400 * KiB)):
        sent = remote.request("PATCH", location, data[start:end], **{
            "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(start)})
        assert sent.status_code == 204
    # One part cut (the first 256 KiB); the rest of both bodies waits, sealed, in the tail.
    assert held(folder) == [tail_at(0), tail_at(300 * KiB), "part-000000.gpg"]
    assert_clean("between PATCHes, with a part and two tail pieces")

    with remote.begin_patch(location, 400 * KiB, 300 * KiB) as sock:
        sock.sendall(data[400 * KiB:550 * KiB])
        pause_mid_body(sock)
        assert in_progress(folder, WRITING_TAIL)
        assert_clean("mid-PATCH, a tail piece being sealed")
        sock.sendall(data[550 * KiB:700 * KiB])
        assert read_response(sock)[0] == 204
    assert held(folder) == [tail_at(400 * KiB), "part-000000.gpg", "part-000001.gpg"]
    assert_clean("after the second part was cut")

    last = remote.request("PATCH", location, data[700 * KiB:], **{
        "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(700 * KiB)})
    assert last.status_code == 204
    assert not folder.exists()
    assert scan(needles, roots) == []
    # The scans found nothing because nothing was readable, not because nothing was sent.
    (stored,) = read_objects(desk.config, journalist)
    assert stored.plaintext == data
    assert stored.record["filename"] == name
    assert stored.record["content_type"] == content_type


def _clean(needles: Needles, roots: list[Path], folder: Path) -> Callable[[str], None]:
    """A check that no needle is in `roots`, nor in the upload's `folder` (which must exist
    and hold something: the scan looks where the bytes are)."""

    def assert_clean(moment: str) -> None:
        assert held(folder), moment
        assert scan(needles, [folder]) == [], moment
        assert scan(needles, roots) == [], moment

    return assert_clean
