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

The source interface is conftest's `server` (`desk serve source`); the journalist interface is
a second `desk serve journalist` process started here the same way, with its own TMPDIR. The
offline console runs outside the server's directories, as it would on the air-gapped machine.
"""

from __future__ import annotations

import base64
import io
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select
from tusclient.client import TusClient

from desk.records.models import Reply, Source, Submission
from desk.services import Services
from tests.conftest import (
    DESK_COMMAND,
    PASSWORDS,
    Server,
    files_under,
    free_port,
    fresh_code,
    read_objects,
    run_desk,
)
from tests.forms import CODENAME_RE, FormBody, csrf_token
from tests.gpgtool import Keypair
from tests.test_review import ok, review
from tests.test_tus import (
    RemoteSource,
    hang_up,
    marked_data,
    metadata,
    read_response,
    unsent,
    wait_for,
)

pytestmark = pytest.mark.slow

KiB = 1024
MiB = 1024 * KiB
TIMEOUT = 30


# --- what must never be found ------------------------------------------------------------------


@dataclass
class Needles:
    """Every secret of the test, in every form it could be written in, by label."""

    found_as: dict[str, bytes] = field(default_factory=dict)

    def marker(self, label: str) -> str:
        """A new long random marker, registered as a needle."""
        text = f"NOPLAIN-{label}-{secrets.token_hex(24)}"
        self.add(label, text)
        return text

    def add(self, label: str, text: str) -> None:
        """Register `text` in UTF-8, UTF-16 (both byte orders) and base64."""
        raw = text.encode("utf-8")
        self.found_as[f"{label} (utf-8)"] = raw
        self.found_as[f"{label} (utf-16-le)"] = text.encode("utf-16-le")
        self.found_as[f"{label} (utf-16-be)"] = text.encode("utf-16-be")
        self.found_as[f"{label} (base64)"] = base64.b64encode(raw)

    def filename(self, label: str, stem: str, suffix: str) -> str:
        """A distinctive original filename; its random part is a needle of its own too."""
        token = secrets.token_hex(12)
        name = f"{stem}-{token}{suffix}"
        self.add(f"{label} token", token)
        self.add(label, name)
        return name

    def content_type(self, label: str) -> str:
        """A media type no browser would send, registered as a needle."""
        text = f"video/x-np{secrets.token_hex(16)}"
        self.add(label, text)
        return text

    def codename(self, label: str, codename: str) -> None:
        """A codename as shown, as typed in a form body, and as a URL would carry it."""
        self.add(label, codename)
        self.add(f"{label} (form)", codename.replace(" ", "+"))
        self.add(f"{label} (url)", codename.replace(" ", "%20"))


def scan(needles: Needles, roots: list[Path]) -> list[tuple[str, str]]:
    """(file, label) of every needle found in a file that is, or is under, one of `roots`."""
    paths = [root for root in roots if root.is_file()] + files_under(*roots)
    hits = []
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # a temporary file that went while the scan ran
            continue
        hits += [(str(path), label) for label, raw in needles.found_as.items() if raw in data]
    return hits


# --- the journalist interface under gunicorn ----------------------------------------------------


@contextmanager
def journalist_server(services: Services, tmp_path: Path) -> Iterator[Server]:
    """`desk serve journalist` on 127.0.0.1, started as conftest's `server` starts the source
    interface, with its own TMPDIR and log."""
    port, tmpdir, log = free_port(), tmp_path / "journalist-tmp", tmp_path / "journalist.log"
    tmpdir.mkdir()
    env = {**os.environ, "DESK_DATA": str(services.config.data_dir), "TMPDIR": str(tmpdir)}
    with log.open("wb") as log_file:
        process = subprocess.Popen([DESK_COMMAND, "serve", "journalist", "--port", str(port)],
                                   env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"desk serve did not start:\n{log.read_text()}") \
                        from None
                time.sleep(0.1)
        yield Server(f"http://127.0.0.1:{port}", process, tmpdir, log)
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- a source and a journalist over HTTP -------------------------------------------------------


@dataclass
class Browser:
    """A source's browser on the real source interface."""

    url: str
    http: requests.Session = field(default_factory=requests.Session)

    def get_codename(self) -> str:
        """Landing page, then the codename button."""
        landing = self.http.get(f"{self.url}/", timeout=TIMEOUT)
        page = self.http.post(f"{self.url}/generate",
                              data={"csrf_token": csrf_token(landing.text)}, timeout=TIMEOUT)
        assert page.status_code == 200
        match = CODENAME_RE.search(page.text)
        assert match, "no codename shown"
        return match.group(1)

    def log_in(self, codename: str) -> None:
        """Type the codename on the login page."""
        form = self.http.get(f"{self.url}/login", timeout=TIMEOUT)
        answer = self.http.post(f"{self.url}/login", data={
            "csrf_token": csrf_token(form.text), "codename": codename}, timeout=TIMEOUT,
            allow_redirects=False)
        assert answer.status_code == 302, answer.status_code

    def submit_page(self) -> str:
        """The submit page (replies and the form)."""
        page = self.http.get(f"{self.url}/submit", timeout=TIMEOUT, allow_redirects=False)
        assert page.status_code == 200, page.status_code
        return page.text

    def remote(self, server: Server) -> RemoteSource:
        """This browser's session as an independent tus client carries it."""
        return RemoteSource(server, str(self.http.cookies["desk_source"]),
                            csrf_token(self.submit_page()))


def journalist_log_in(url: str, services: Services) -> requests.Session:
    """alice, logged in to the journalist interface."""
    http = requests.Session()
    form = http.get(f"{url}/login", timeout=TIMEOUT)
    answer = http.post(f"{url}/login", data={
        "csrf_token": csrf_token(form.text), "username": "alice",
        "password": PASSWORDS["alice"], "code": fresh_code(services, "alice")},
        timeout=TIMEOUT, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return http


def post_form(http: requests.Session, url: str, page: str, action: str,
              data: dict[str, str]) -> requests.Response:
    """Post a journalist form to `action` with the CSRF token of the page it is on."""
    token = csrf_token(http.get(f"{url}{page}", timeout=TIMEOUT).text)
    return http.post(f"{url}{action}", data={"csrf_token": token, **data}, timeout=TIMEOUT,
                     allow_redirects=False)


# --- the test ----------------------------------------------------------------------------------


def desk_command(*args: str, data_dir: Path, tmpdir: Path, logs: Path
                 ) -> subprocess.CompletedProcess[str]:
    """Run `desk` with its own TMPDIR; keep what it printed with the logs to scan."""
    result = run_desk(*args, data_dir=data_dir, extra_env={"TMPDIR": str(tmpdir)})
    number = len(list(logs.iterdir()))
    (logs / f"{number:02d}-{args[0]}.out").write_text(result.stdout + "\n" + result.stderr)
    return result


def in_progress(folder: Path) -> bool:
    """Whether gpg is writing a part below `folder` (waiting a while for it to start)."""
    return wait_for(lambda: any(path.name.startswith(".tmp-part-")
                                for path in files_under(folder)), 10)


def pause_mid_body(sock: socket.socket) -> None:
    """Wait until the server has taken every byte sent so far, and a little longer."""
    assert wait_for(lambda: unsent(sock) == 0, 10)
    time.sleep(0.3)


@pytest.fixture
def bounded_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give every `requests` call a timeout (tuspy sets none)."""
    original = requests.Session.request

    def request(self: requests.Session, method: str, url: str, **kwargs: object
                ) -> requests.Response:
        kwargs["timeout"] = kwargs.get("timeout") or TIMEOUT
        return original(self, method, url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(requests.Session, "request", request)


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
    witness = Browser(server.url)
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
    remote = witness.remote(server)
    host, port = remote.address
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall((f"POST /submit HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Cookie: desk_source={remote.cookie}\r\n"
                      f"Content-Type: {body.content_type}\r\n"
                      f"Content-Length: {len(encoded)}\r\n\r\n").encode("latin-1"))
        sock.sendall(encoded[:len(encoded) * 3 // 4])  # into the second file
        pause_mid_body(sock)
        assert in_progress(data_dir / "store" / "staging")
        assert_clean("while a form upload arrives")
        sock.sendall(encoded[len(encoded) * 3 // 4:])
        assert read_response(sock)[0] == 200
    assert_clean("after the form upload")

    # 2. A resumable upload, scanned mid-PATCH and between PATCHes, then finished.
    tus_name = needles.filename("tus file", "محطة-القطار", ".mp4")
    tus_type = needles.content_type("tus type")
    tus_data = marked_data(2 * MiB, [needles.marker("tus content").encode() for _ in range(4)])
    location = remote.new(len(tus_data), metadata(tus_name, tus_type))
    with remote.begin_patch(location, 0, MiB) as sock:
        sock.sendall(tus_data[:MiB // 2])
        pause_mid_body(sock)
        assert in_progress(data_dir / "store" / "uploads")
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
    aborted = remote.new(MiB, metadata(aborted_name, "application/octet-stream"))
    sent = remote.request("PATCH", aborted, marked_data(300 * KiB, [
        needles.marker("aborted content").encode()]), **{
        "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert sent.status_code == 204
    assert remote.request("DELETE", aborted).status_code == 204
    cut_name = needles.filename("cut file", "przerwane-ąćę", ".bin")
    cut = remote.new(MiB, metadata(cut_name, "application/octet-stream"))
    sock = remote.begin_patch(cut, 0, MiB)
    sock.sendall(marked_data(400 * KiB, [needles.marker("cut content").encode()]))
    pause_mid_body(sock)
    assert in_progress(data_dir / "store" / "uploads")
    assert_clean("mid-PATCH of the upload about to be cut off")
    hang_up(sock, reset=True)
    assert wait_for(lambda: remote.offset(cut) > 0, 15)
    assert_clean("after an aborted and a cut-off upload")

    # 5. A second source sends a message; a journalist will delete that source.
    other = Browser(server.url)
    needles.codename("second codename", other.get_codename())
    other_message = needles.marker("second message")
    sent = other.http.post(f"{server.url}/submit", files={
        "csrf_token": (None, csrf_token(other.submit_page())),
        "message": (None, other_message)}, timeout=TIMEOUT)
    assert sent.status_code == 200

    with accounts.sessions() as session:
        counts = dict(session.execute(select(Submission.source_id, func.count())
                                      .group_by(Submission.source_id)).all())
        sources = {s.id: s.designation for s in session.scalars(select(Source))}
    source_id = next(sid for sid, count in counts.items() if count == 5)
    other_id = next(sid for sid in sources if sid != source_id)
    assert counts[other_id] == 1

    with journalist_server(accounts, tmp_path) as newsroom:
        roots += [newsroom.tmpdir, newsroom.log]
        alice = journalist_log_in(newsroom.url, accounts)
        page = f"/sources/{source_id}"

        # 6. A reply typed into the journalist interface.
        web_reply = needles.marker("web reply")
        typed = post_form(alice, newsroom.url, page, f"{page}/replies", {"text": web_reply})
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
        returning = Browser(server.url)
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
            item = session.scalars(select(Submission.id).where(
                Submission.source_id == source_id, Submission.part_count == 3)).one()
        removed = post_form(alice, newsroom.url, page, f"{page}/items", {
            "action": "delete", "confirm": "yes", "item": item})
        assert removed.status_code == 302
        gone = post_form(alice, newsroom.url, f"/sources/{other_id}",
                         f"/sources/{other_id}/delete", {"confirm": "yes"})
        assert gone.status_code == 302
        web_bundle = post_form(alice, newsroom.url, "/", "/export", {"scope": "all"})
        assert web_bundle.status_code == 200
        assert web_bundle.headers["Content-Type"] == "application/x-tar"
        (offline / "web.tar").write_bytes(web_bundle.content)

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

