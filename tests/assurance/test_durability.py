"""Every acknowledged write survives a power cut, administration included (issue 23).

The fsync audit (tests/harness/fsync_audit.py, whose docstring states the rule) runs a command
under strace and names every file it wrote and every directory whose entries it changed that
was not fsynced after the change and before the command exited, or, for a server, before it
answered the request that made the change. These tests run it on small planted programs, so
that it cannot pass vacuously: a file written without fsync is found, a temporary file
fsynced, renamed and its directory fsynced is clean, syncfs is credited, a response sent
before the fsync is caught.

strace attaches to each command before it starts (tests/harness/fsync_audit.py says how), which
works where ptrace does: without Yama, or with kernel.yama.ptrace_scope 0 or 1 (2 needs
CAP_SYS_PTRACE); where it cannot, every test here fails saying why.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness.fsync_audit import Audit, audit_command, parse_trace

pytestmark = pytest.mark.slow


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
