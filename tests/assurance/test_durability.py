"""Every acknowledged write survives a power cut, administration included (issue 23).

Each command that changes a desk runs for real (stock gpg, gunicorn, the offline console)
under strace, and the fsync audit (tests/harness/fsync_audit.py, whose docstring states the
rule) names every file it wrote and every directory whose entries it changed that was not
fsynced after the change and before the command exited, or, for a server, before it answered
the request that made the change. Every test asserts that the audit found nothing:

- the `desk` command: init, journalist add, key and remove, tor-config (and its new client
  key), export;
- the source interface, one request at a time on one traced server: a new codename, a form
  post, a tus upload's creation, a PATCH and the PATCH that completes it; also its start and
  the pages a source reads, and what it does after its last answer until it exits;
- the offline console: import, reply, and a new desk key accepted on import (the place for a
  key acceptance command of its own, once the console has one).

A test also checks that the audit saw the command change something under the watched paths,
so that a clean result means fsyncs were seen, not that nothing was traced.

The first tests run the audit on small planted programs, so that it cannot pass vacuously: a
file written without fsync is found, a temporary file fsynced, renamed and its directory
fsynced is clean, syncfs is credited, a response sent before the fsync is caught.

strace attaches to each command before it starts (tests/harness/fsync_audit.py says how), which
works where ptrace does: without Yama, or with kernel.yama.ptrace_scope 0 or 1 (2 needs
CAP_SYS_PTRACE); where it cannot, every test here fails saying why.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from desk.app import create_app
from desk.records.models import Source
from desk.services import Services
from tests.harness.console import export, ok, review
from tests.harness.data import KiB, marked_data, new_markers
from tests.harness.desks import (
    add_account,
    cli_init_desk,
    desk_config,
    desk_env,
    new_desk,
    run_desk,
)
from tests.harness.forms import FormBody
from tests.harness.fsync_audit import (
    Audit,
    Audited,
    Window,
    audit_command,
    audited_server,
    parse_trace,
)
from tests.harness.gpg import Keypair
from tests.harness.http import TIMEOUT, SourceSession, open_source_session
from tests.harness.paths import DESK_COMMAND, REVIEW_COMMAND
from tests.harness.tus import metadata
from tests.harness.web import SourceBrowser

pytestmark = pytest.mark.slow


def no_findings(audited: Audited) -> None:
    """The command succeeded, changed what it was watched on, and the audit found nothing
    owed."""
    assert audited.result.returncode == 0, audited.result.stderr
    assert audited.changed, "the audit saw no change at all"
    assert audited.findings == [], "\n".join(audited.findings)


# --- The audit itself, on planted programs ---------------------------------------------------


def planted(tmp_path: Path, code: str, existing: tuple[str, ...] = ()) -> list[str]:
    """Findings for `python -c code` run in `tmp_path`, watching `tmp_path/root`, where the
    files `existing` were written before."""
    (tmp_path / "root").mkdir(parents=True, exist_ok=True)
    for name in existing:
        (tmp_path / "root" / name).write_text("before")
    audited = audit_command([sys.executable, "-c", textwrap.dedent(code)],
                            watch=[tmp_path / "root"], trace=tmp_path / "trace", cwd=tmp_path,
                            base=tmp_path)
    assert audited.result.returncode == 0, audited.result.stderr
    return audited.findings


def test_the_audit_finds_a_file_written_without_fsync(tmp_path: Path) -> None:
    assert planted(tmp_path, """
        with open("root/evidence", "w") as f:
            f.write("x")
    """) == ["root/evidence: written but never fsynced",
             "root: entry evidence created but the directory was never fsynced"]


def test_the_audit_passes_temp_fsync_rename_and_directory_fsync(tmp_path: Path) -> None:
    assert planted(tmp_path, """
        import os
        with open("root/.tmp-evidence", "w") as f:
            f.write("x")
            f.flush()
            os.fsync(f.fileno())
        os.rename("root/.tmp-evidence", "root/evidence")
        folder = os.open("root", os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(folder)
    """) == []


def test_the_audit_credits_syncfs(tmp_path: Path) -> None:
    assert planted(tmp_path, """
        import ctypes, os
        os.mkdir("root/folder")
        with open("root/folder/evidence", "w") as f:
            f.write("x")
        fd = os.open("root", os.O_RDONLY)
        assert ctypes.CDLL(None, use_errno=True).syncfs(fd) == 0
    """) == []


def test_the_audit_finds_a_rename_whose_directory_was_not_fsynced(tmp_path: Path) -> None:
    assert planted(tmp_path, """
        import os
        with open("root/.tmp-evidence", "w") as f:
            f.write("x")
            f.flush()
            os.fsync(f.fileno())
        os.rename("root/.tmp-evidence", "root/evidence")
    """) == ["root: entry evidence renamed in but the directory was never fsynced"]


def test_the_audit_finds_a_write_after_the_last_fsync(tmp_path: Path) -> None:
    assert planted(tmp_path, """
        import os
        with open("root/evidence", "w") as f:
            f.write("x")
            f.flush()
            os.fsync(f.fileno())
            f.write("y")
        os.fsync(os.open("root", os.O_RDONLY))
    """) == ["root/evidence: written after its last fsync"]


def test_the_audit_lets_temporary_files_go(tmp_path: Path) -> None:
    # Written and removed, never fsynced: nothing of it can outlive a power cut that matters.
    assert planted(tmp_path, """
        import os
        with open("root/scratch", "w") as f:
            f.write("x")
        os.link("root/scratch", "root/scratch.lock")
        os.unlink("root/scratch.lock")
        os.unlink("root/scratch")
    """) == []


def test_the_audit_sees_links_symlinks_and_removals(tmp_path: Path) -> None:
    assert planted(tmp_path, """
        import os
        os.symlink("old", "root/link")
        os.link("root/old", "root/hard")
        os.unlink("root/old")
        os.mkdir("root/gone")
        os.rmdir("root/gone")
    """, existing=("old",)) == [
        "root: entry hard created but the directory was never fsynced",
        "root: entry link created but the directory was never fsynced",
        "root: entry old removed but the directory was never fsynced"]


def test_the_audit_finds_a_new_folder_whose_entries_were_not_fsynced(tmp_path: Path) -> None:
    assert planted(tmp_path, """
        import os
        os.mkdir("root/folder")
        with open("root/folder/evidence", "w") as f:
            f.write("x")
            f.flush()
            os.fsync(f.fileno())
        os.fsync(os.open("root", os.O_RDONLY))
    """) == ["root/folder: entry evidence created but the directory was never fsynced"]


def test_the_audit_follows_threads_and_children(tmp_path: Path) -> None:
    # A thread writes through the main thread's descriptor, which then fsyncs it; a forked
    # child writes a file of its own and exits without fsync.
    assert planted(tmp_path, """
        import os, threading
        fd = os.open("root/threaded", os.O_WRONLY | os.O_CREAT, 0o600)
        worker = threading.Thread(target=os.write, args=(fd, b"x"))
        worker.start()
        worker.join()
        os.fsync(fd)
        child = os.fork()
        if child == 0:
            with open("root/forked", "w") as f:
                f.write("x")
            os._exit(0)
        os.waitpid(child, 0)
        os.fsync(os.open("root", os.O_RDONLY))
    """) == ["root/forked: written but never fsynced"]


SERVER = """
    import os, socket
    server, client = socket.socketpair()
    client.sendall(b"PATCH /uploads/u1 HTTP/1.1\\r\\nHost: desk\\r\\n\\r\\n")
    server.recv(100)
    server.sendall(b"HTTP/1.1 100 Continue\\r\\n\\r\\n")  # interim: acknowledges nothing
    fd = os.open("root/upload", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"x")
    {before}
    server.sendall(b"HTTP/1.1 204 No Content\\r\\n\\r\\n")
    {after}
"""
SYNC = "os.fsync(fd); os.fsync(os.open('root', os.O_RDONLY))"


def test_the_audit_holds_a_server_to_its_answer(tmp_path: Path) -> None:
    assert planted(tmp_path / "late", SERVER.format(before="pass", after=SYNC)) == [
        "root/upload: written but never fsynced before the answer to PATCH /uploads/u1 "
        "(HTTP/1.1 204 No Content)",
        "root: entry upload created but the directory was never fsynced before the answer to "
        "PATCH /uploads/u1 (HTTP/1.1 204 No Content)"]
    assert planted(tmp_path / "early", SERVER.format(before=SYNC, after="pass")) == []


def test_the_audit_reads_strace_as_it_interleaves_processes(tmp_path: Path) -> None:
    # Calls cut in two by another process's, and a descriptor of a name since removed.
    root = tmp_path / "root"
    root.mkdir()
    trace = textwrap.dedent(f"""\
        10 openat(AT_FDCWD<{tmp_path}>, "root/a", O_WRONLY|O_CREAT|O_EXCL, 0600) = 3<{root}/a>
        10 write(3<{root}/a>, "xy"..., 2 <unfinished ...>
        11 fsync(3<{root}/a> <unfinished ...>
        11 <... fsync resumed>) = 0
        10 <... write resumed>) = 2
        11 openat(AT_FDCWD<{tmp_path}>, "root/b", O_WRONLY|O_CREAT|O_TRUNC, 0600) = 4<{root}/b>
        11 unlink("root/b") = 0
        11 write(4<{root}/b>(deleted), "z", 1) = 1
        10 fsync(5<{root}>) = 0
        10 exit_group(0) = ?
        11 write(4<{root}/c>, "late", 4) = 4
    """)
    assert [c.name for c in parse_trace(trace)].count("write") == 3
    audit = Audit([root], base=tmp_path)
    # The fsync of a returned before the write to it did, so a is still owed; b is gone (its
    # relative name resolved where process 11 last said it was); what happens after the
    # process's exit is not its doing.
    assert audit.replay(parse_trace(trace), 10, tmp_path) == [
        "root/a: written after its last fsync"]


# --- The `desk` command ----------------------------------------------------------------------


def desk_audit(tmp_path: Path, *args: str, watch: list[Path] | None = None,
               data: Path | None = None) -> Audited:
    """`desk ARGS` on the desk in `data` (tmp_path/data), audited on the data directory and
    `watch`."""
    data = data or tmp_path / "data"
    return audit_command([DESK_COMMAND, *args], watch=[data, *(watch or [])],
                         trace=tmp_path / "desk.trace", cwd=tmp_path, env=desk_env(data),
                         base=tmp_path)


def test_desk_init(tmp_path: Path) -> None:
    no_findings(desk_audit(tmp_path, "init"))


def test_desk_journalist_add(tmp_path: Path, journalist: Keypair) -> None:
    cli_init_desk(tmp_path / "data")
    no_findings(desk_audit(tmp_path, "journalist", "add", "alice", "--key",
                           str(journalist.public_key)))


def with_alice(tmp_path: Path, journalist: Keypair) -> None:
    """A desk made with the `desk` command, alice's key pinned."""
    cli_init_desk(tmp_path / "data")
    run_desk("journalist", "add", "alice", "--key", str(journalist.public_key),
             data_dir=tmp_path / "data", check=True)


def test_desk_journalist_key(tmp_path: Path, journalist: Keypair,
                             second_journalist: Keypair) -> None:
    with_alice(tmp_path, journalist)
    no_findings(desk_audit(tmp_path, "journalist", "key", "alice", "--key",
                           str(second_journalist.public_key)))


def test_desk_journalist_remove(tmp_path: Path, journalist: Keypair) -> None:
    with_alice(tmp_path, journalist)
    no_findings(desk_audit(tmp_path, "journalist", "remove", "alice"))


def test_desk_tor_config(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir(mode=0o700)
    torrc = tmp_path / "torrc"
    no_findings(desk_audit(tmp_path, "tor-config", "--out", str(torrc), watch=[torrc]))


def test_desk_tor_config_new_client_key(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir(mode=0o700)
    torrc = tmp_path / "torrc"
    run_desk("tor-config", "--out", str(torrc), data_dir=tmp_path / "data", check=True)
    no_findings(desk_audit(tmp_path, "tor-config", "--out", str(torrc), "--new-client-key",
                           watch=[torrc]))


def submitted(services: Services, *texts: str) -> list[str]:
    """Each text sent by a new source through the source app in-process; their
    designations."""
    app = create_app(services.config, "source", services=services)
    for text in texts:
        browser = SourceBrowser(app.test_client())
        browser.get_codename()
        assert browser.send(text, files=(("clip.mp4", os.urandom(20 * KiB)),)
                            ).status_code == 200
    with services.sessions() as session:
        return list(session.scalars(select(Source.designation).order_by(Source.designation)))


def test_desk_export(tmp_path: Path, desk: Services) -> None:
    submitted(desk, "the recording from the depot")
    bundle = tmp_path / "bundle.tar"
    no_findings(desk_audit(tmp_path, "export", "--out", str(bundle), "--all",
                           data=desk.config.data_dir, watch=[bundle]))


# --- The source interface --------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRun:
    """One traced server's requests, each answered before the next was sent."""

    windows: list[Window]
    location: str  # the tus upload's

    def owed(self, request: str) -> list[Window]:
        """The windows that end with the answer to `request` (a request line without its
        version), in order; at least one."""
        found = [w for w in self.windows if w.request == request]
        assert found, f"no answer to {request} in the trace: {self.windows}"
        return found


def findings_of(windows: list[Window]) -> list[str]:
    """Every finding of `windows`."""
    return [line for window in windows for line in window.findings]


def no_findings_in(windows: list[Window]) -> None:
    """The requests of `windows` changed the store and owe nothing."""
    assert all(window.changed for window in windows), "the audit saw no change in the store"
    owed = findings_of(windows)
    assert owed == [], "\n".join(owed)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory, journalist: Keypair) -> SourceRun:
    """A desk with alice's key, served under the audit: a new codename, a form post, then a
    tus upload created and sent in two PATCHes, one request at a time; then the server
    stops."""
    root = tmp_path_factory.mktemp("source-run")
    services = new_desk(desk_config(root / "data"))
    add_account(services, "alice", journalist)
    services.engine.dispose()
    data = os.urandom(40 * KiB)
    upload = marked_data(300 * KiB, new_markers(2))
    # No settle while it runs (the first is an hour after start): every change is a request's.
    with audited_server(root / "data", watch=[root / "data"], root=root, base=root,
                        env={"DESK_SETTLE_INTERVAL": "1h"}) as run:
        session = open_source_session(run.server.url)
        form = FormBody().field("csrf_token", session.token).field("message", "the depot")
        form.file("clip.mp4", data)
        posted = requests.post(run.server.url + "/submit", data=form.encode(), timeout=TIMEOUT,
                               headers={"Cookie": session.cookie,
                                        "Content-Type": form.content_type})
        assert posted.status_code == 200, posted.text[:300]
        location = tus_upload(session, upload)
    return SourceRun(run.windows, location)


def tus_upload(session: SourceSession, data: bytes) -> str:
    """Create an upload and send it in two PATCHes; its location."""
    location = session.new_upload(len(data), metadata("clip.mp4", "video/mp4"))
    half = len(data) // 2
    first = session.patch(location, 0, data[:half])
    assert first.status_code == 204, first.text
    last = session.patch(location, half, data[half:])
    assert last.status_code == 204, last.text
    return location


def test_a_new_codename(source_run: SourceRun) -> None:
    # It changes the database alone today, so the audit may see no change of its own.
    owed = findings_of(source_run.owed("POST /generate"))
    assert owed == [], "\n".join(owed)


def test_a_form_post(source_run: SourceRun) -> None:
    no_findings_in(source_run.owed("POST /submit"))


def test_tus_creation(source_run: SourceRun) -> None:
    no_findings_in(source_run.owed("POST /uploads/"))


def test_tus_patch(source_run: SourceRun) -> None:
    first, _ = source_run.owed(f"PATCH {source_run.location}")
    no_findings_in([first])


def test_tus_completion(source_run: SourceRun) -> None:
    _, last = source_run.owed(f"PATCH {source_run.location}")
    no_findings_in([last])


def test_the_server_owes_nothing_when_it_stops(source_run: SourceRun) -> None:
    # What it did after its last answer, until it exited.
    last, = [w for w in source_run.windows if w.answer is None]
    assert source_run.windows[-1] is last
    assert last.findings == [], "\n".join(last.findings)


def test_starting_and_the_pages_a_source_reads(source_run: SourceRun) -> None:
    # The first window holds the server's start, up to its first answer.
    counted = {"POST /generate", "POST /submit", "POST /uploads/",
               f"PATCH {source_run.location}"}
    rest = [w for w in source_run.windows if w.request not in counted and w.answer]
    assert rest, "no other page was answered"
    owed = findings_of(rest)
    assert owed == [], "\n".join(owed)


# --- The offline console ---------------------------------------------------------------------


@dataclass(frozen=True)
class Console:
    """A journalist's offline machine: a workspace and the GnuPG home with their key."""

    root: Path
    home: Path

    @property
    def workspace(self) -> Path:
        """The console's workspace."""
        return self.root / "workspace"

    def audit(self, *args: str, watch: list[Path] | None = None) -> Audited:
        """`desk-review ARGS`, audited on the workspace and `watch`."""
        return audit_command(
            [REVIEW_COMMAND, "--workspace", str(self.workspace), "--gnupghome", str(self.home),
             *args], watch=[self.workspace, *(watch or [])], trace=self.root / "review.trace",
            cwd=self.root, env=dict(os.environ), base=self.root)


@pytest.fixture
def console(tmp_path: Path, journalist: Keypair) -> Console:
    """alice's offline console, with no workspace yet."""
    return Console(tmp_path, journalist.home)


def test_console_import(console: Console, desk: Services) -> None:
    submitted(desk, "the recording from the depot")
    bundle = export(desk, console.root / "bundle.tar")
    no_findings(console.audit("import", str(bundle)))


def test_console_reply(console: Console, desk: Services) -> None:
    designation, = submitted(desk, "the recording from the depot")
    ok(review(console.workspace, console.home, "import",
              str(export(desk, console.root / "bundle.tar"))))
    message = console.root / "reply.txt"
    message.write_text("could you send the unedited recording?\n", encoding="utf-8")
    out = console.root / "reply.desk"
    no_findings(console.audit("reply", designation, "--message-file", str(message),
                              "--out", str(out), watch=[out]))


# The console: key acceptance. Today the console accepts a desk's signing key only on import:
# the first bundle pins it, and `import --accept-new-desk-key` accepts a new one. When the
# console gains a command of its own for accepting keys, audit it here as these are audited.


@pytest.fixture
def second_desk(tmp_path: Path, journalist: Keypair) -> Iterator[Services]:
    """Another desk, its own signing key, alice's key pinned."""
    services = new_desk(desk_config(tmp_path / "second-desk"))
    add_account(services, "alice", journalist)
    yield services
    services.engine.dispose()


def test_console_accepts_a_new_desk_key(console: Console, desk: Services,
                                        second_desk: Services) -> None:
    submitted(desk, "the recording from the depot")
    submitted(second_desk, "a second desk's source")
    ok(review(console.workspace, console.home, "import",
              str(export(desk, console.root / "first.tar"))))
    bundle = export(second_desk, console.root / "second.tar")
    no_findings(console.audit("import", "--accept-new-desk-key", str(bundle)))
