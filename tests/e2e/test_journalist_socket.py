"""Finding 16 of the second security review: the journalist interface listened on loopback TCP,
so any local user (tor's own user included) reached its login page, which client
authorization hides from the network. `desk serve journalist --socket PATH` listens on a Unix
socket with mode 0660 instead: its owner and its group (tor's, where the desk is deployed) may
connect, nobody else. Real `desk serve` processes; other users are played by child processes
that switch uid and gid, so the tests need root."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from desk.services import Services
from tests.harness.desks import desk_env
from tests.harness.paths import DESK_COMMAND
from tests.harness.servers import Server, children, start_server

NOBODY = 65534
TIMEOUT = 60
# The system's Python, which every user may run (the test's own may live under /root).
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user's uid needs root"),
    pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3"),
]

# A client run as another user: one GET /login, through a Unix socket (a path) or TCP (a
# port); prints the status (code and reason), or the error's name.
CLIENT = """
import errno, socket, sys
target = sys.argv[1]
try:
    if target.isdigit():
        conn = socket.create_connection(("127.0.0.1", int(target)), timeout=10)
    else:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(10)
        conn.connect(target)
    conn.sendall(b"GET /login HTTP/1.0\\r\\nHost: journalist.onion\\r\\n\\r\\n")
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    print(answer.split(b"\\r\\n", 1)[0].decode().split(" ", 1)[1])
    print("logged-in-page" if b"<h1>Log in</h1>" in answer else "other-page")
except OSError as exc:
    print(errno.errorcode.get(exc.errno or 0, repr(exc)))
"""


def get_login(target: str, uid: int, gid: int) -> list[str]:
    """What a process running as `uid`:`gid` (no other group) gets for GET /login."""
    result = subprocess.run([str(SYSTEM_PYTHON), "-c", CLIENT, target], user=uid, group=gid,
                            extra_groups=[], capture_output=True, text=True, timeout=TIMEOUT,
                            check=False, cwd="/")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def tcp_listeners(pids: list[int]) -> list[str]:
    """The TCP sockets (IPv4 and IPv6) the processes `pids` listen on."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(fields[1])
    return found


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A folder every user may enter, so that only the socket's own mode decides."""
    path = Path(tempfile.mkdtemp(prefix="desk-socket-"))
    path.chmod(0o755)
    yield path
    for entry in path.iterdir():
        entry.unlink()
    path.rmdir()


@pytest.fixture
def socket_server(desk: Services, socket_dir: Path, tmp_path: Path
                  ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`desk serve journalist --socket PATH`, answering."""
    socket = socket_dir / "journalist.sock"
    log = tmp_path / "server.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [DESK_COMMAND, "serve", "journalist", "--socket", str(socket)],
            env=desk_env(desk.config.data_dir), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (socket.is_socket() and len(children(process.pid)) >= 2
                   and get_login(str(socket), 0, 0)[:1] == ["200"]):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield process, socket
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)


def test_over_tcp_any_local_user_reaches_the_journalist_login(
        desk: Services, tmp_path: Path) -> None:
    """The report: `runuser -u nobody -- curl http://127.0.0.1:18081/login` gave 200."""
    server: Server = start_server(desk.config.data_dir, "journalist", log=tmp_path / "log")
    try:
        assert get_login(str(server.port), NOBODY, NOBODY) == ["200", "OK",
                                                               "logged-in-page"]
    finally:
        server.stop()


def test_on_its_socket_only_its_owner_and_group_reach_the_journalist_login(
        socket_server: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, socket = socket_server
    info = socket.stat()

    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert (info.st_uid, info.st_gid) == (os.getuid(), os.getgid())
    # The owner, and a user in the socket's group (tor, when deployed), get the page.
    assert get_login(str(socket), 0, 0) == ["200", "OK", "logged-in-page"]
    assert get_login(str(socket), NOBODY, info.st_gid) == ["200", "OK",
                                                           "logged-in-page"]
    # Any other local user is refused by the socket's mode.
    assert get_login(str(socket), NOBODY, NOBODY) == ["EACCES"]
    # And there is no TCP port to go round it.
    assert tcp_listeners([process.pid, *children(process.pid)]) == []


def test_serve_refuses_a_socket_path_that_is_something_else(
        desk: Services, socket_dir: Path) -> None:
    taken = socket_dir / "journalist.sock"
    taken.write_text("not a socket")

    result = subprocess.run([DESK_COMMAND, "serve", "journalist", "--socket", str(taken)],
                            env=desk_env(desk.config.data_dir), capture_output=True,
                            text=True, timeout=TIMEOUT, check=False)

    assert result.returncode == 1
    assert result.stderr.strip() == f"desk: {taken} exists and is not a socket: choose " \
                                    "another path"
    assert taken.read_text() == "not a socket"


def exchange(socket_path: Path, request: bytes) -> bytes:
    """One request on the Unix socket, as root; the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(TIMEOUT)
        conn.connect(str(socket_path))
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_on_its_socket_no_header_a_client_sends_shapes_the_addresses_in_an_answer(
        socket_server: tuple[subprocess.Popen[bytes], Path]) -> None:
    """gunicorn trusts every peer of a Unix socket as a proxy: a client's SCRIPT_NAME and
    X-Forwarded-Proto headers became the script root and scheme of every address the
    interface built, and a routing redirect repeated the Host header."""
    _, path = socket_server
    forged = b"Host: evil.example\r\nSCRIPT_NAME: /evil.example\r\nX-Forwarded-Proto: https\r\n"
    answers = {
        "login": exchange(path, b"GET /login HTTP/1.0\r\n" + forged + b"\r\n"),
        "login under the script name": exchange(
            path, b"GET /evil.example/login HTTP/1.0\r\n" + forged + b"\r\n"),
        "admin without its slash": exchange(path, b"GET /admin HTTP/1.0\r\n" + forged
                                            + b"\r\n"),
    }
    statuses = {what: answer.split(b"\r\n", 1)[0] for what, answer in answers.items()}
    assert statuses == {"login": b"HTTP/1.0 200 OK",
                        "login under the script name": b"HTTP/1.0 404 NOT FOUND",
                        "admin without its slash": b"HTTP/1.0 308 PERMANENT REDIRECT"}
    assert b"<h1>Log in</h1>" in answers["login"]
    assert b'action="/login"' in answers["login"]
    assert b"\r\nLocation: /admin/\r\n" in answers["admin without its slash"]
    assert {what: answer.count(b"evil.example") for what, answer in answers.items()} == \
        dict.fromkeys(answers, 0)
    assert {what: answer.count(b"https") for what, answer in answers.items()} == \
        dict.fromkeys(answers, 0)
