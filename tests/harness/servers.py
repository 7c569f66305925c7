"""Real `desk serve` processes (gunicorn) on 127.0.0.1: started, waited for, stopped, killed
as a whole, and their logs read."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.harness.desks import desk_env
from tests.harness.paths import DESK_COMMAND


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], seconds: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds, at most `seconds` long; return its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def children(pid: int) -> list[int]:
    """The child processes of `pid`'s main thread (gunicorn's workers, for an arbiter)."""
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def group_alive(pgid: int) -> bool:
    """True while any process of the group is still running (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


class StartFailed(RuntimeError):
    """`desk serve` exited, or did not listen in time; `returncode` is None for the latter."""

    def __init__(self, message: str, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode


@dataclass
class Server:
    """A `desk serve <interface>` process (the gunicorn arbiter) on 127.0.0.1."""

    interface: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    own_tmpdir: Path | None = None  # its TMPDIR, when the test gave it one to scan

    @property
    def tmpdir(self) -> Path:
        """Its TMPDIR (for a server started with one of its own)."""
        assert self.own_tmpdir is not None, "this server uses the system's TMPDIR"
        return self.own_tmpdir

    @property
    def url(self) -> str:
        """Where the server listens."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def arbiter(self) -> int:
        """The gunicorn arbiter's process id."""
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The gunicorn worker processes (children of the arbiter)."""
        return children(self.process.pid)

    def log_tail(self, chars: int = 5000) -> str:
        """The end of the server's log."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; waits for the arbiter (it reaps its
        workers)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def abandon(self) -> None:
        """Stop a server whose request threads may never return: SIGTERM to the arbiter (it
        starts no new worker), SIGKILL to its workers, then wait for the arbiter."""
        workers = self.worker_pids()
        if self.process.poll() is None:
            self.process.terminate()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


def start_server(data_dir: Path, interface: str = "source", *, log: Path,
                 tmpdir: Path | None = None, port: int | None = None,
                 env: dict[str, str] | None = None, workers: int = 0, timeout: float = 60,
                 prefix: Sequence[str] = (), new_session: bool = False) -> Server:
    """Start `desk serve <interface>` on `port` (a free one by default) and wait until it
    accepts connections and has forked `workers` workers.

    `tmpdir` becomes its TMPDIR (made here), `env` adds environment variables, `prefix` runs
    the command through a wrapper, and `new_session` puts it in a process group of its own (so
    that one killpg reaches the arbiter, its workers and their gpg). The log is appended to.
    Raises StartFailed if it exits first or takes longer than `timeout` seconds."""
    port = free_port() if port is None else port
    extra = dict(env or {})
    if tmpdir is not None:
        tmpdir.mkdir(exist_ok=True)
        extra["TMPDIR"] = str(tmpdir)
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            [*prefix, DESK_COMMAND, "serve", interface, "--port", str(port)],
            env=desk_env(data_dir, **extra), stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=new_session)
    server = Server(interface, port, process, log, tmpdir)
    try:
        deadline = time.monotonic() + timeout
        while not (listening(port) and len(server.worker_pids()) >= workers):
            if process.poll() is not None:
                raise StartFailed(f"desk serve did not start:\n{server.log_tail()}",
                                  process.returncode)
            if time.monotonic() > deadline:
                raise StartFailed(f"desk serve did not start in time:\n{server.log_tail()}",
                                  None)
            time.sleep(0.05)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            if new_session:
                os.killpg(process.pid, signal.SIGKILL)
        server.stop()
        raise
    return server


def listening(port: int) -> bool:
    """True once something accepts connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@dataclass
class CrashableServer:
    """`desk serve source` in a process group of its own, killed all at once on demand (as a
    crash or a power cut would) and started again on the same data directory and port."""

    data_dir: Path
    log: Path
    tmpdir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    server: Server | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        """Where the server listens."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running (or last) arbiter."""
        return None if self.server is None else self.server.process

    def start(self, **extra_env: str) -> None:
        """Start the server and wait until both workers answer; `extra_env` for this run only."""
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log.open("ab") as log_file:
            log_file.write(f"--- start {self.starts}\n".encode())
        self.server = start_server(self.data_dir, log=self.log, tmpdir=self.tmpdir,
                                   port=self.port, env={**self.env, **extra_env}, workers=2,
                                   new_session=True)
        self.starts += 1
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.server.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise StartFailed(f"desk serve did not answer:\n{self.log_tail()}",
                                  self.server.process.returncode)
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            return requests.get(self.url + "/", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def kill(self) -> None:
        """SIGKILL the whole process group and wait until every process in it is gone."""
        if self.server is None:
            return
        pgid = self.server.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.server.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while group_alive(pgid):
            assert time.monotonic() < deadline, f"process group {pgid} outlived SIGKILL"
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM to the arbiter), killing the group if that takes too long."""
        if self.server is not None and self.server.process.poll() is None:
            self.server.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.process.wait(timeout=60)
        self.kill()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


# Put on a server's PYTHONPATH as sitecustomize.py: while the file HOOK_ARMED exists, each
# time the function HOOK_AFTER returns the server either dies at once (HOOK_ACTION "kill": its
# whole process group is SIGKILLed) or forks a child that lingers for two seconds ("fork", as a
# child forked to start gpg does until it has closed the fds it inherited).
SERVER_HOOK = '''\
import importlib
import os
import signal
import time


def _hook_after(target, armed, action):
    module_name, _, qualname = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for attribute in path:
        owner = getattr(owner, attribute)
    original = getattr(owner, name)

    def hooked(*args, **kwargs):
        result = original(*args, **kwargs)
        if os.path.exists(armed):
            if action == "kill":
                os.killpg(os.getpgrp(), signal.SIGKILL)
            elif os.fork() == 0:
                time.sleep(2)
                os._exit(0)
        return result

    setattr(owner, name, hooked)


if os.environ.get("HOOK_AFTER"):
    _hook_after(os.environ["HOOK_AFTER"], os.environ["HOOK_ARMED"], os.environ["HOOK_ACTION"])
'''


def hooked_server(data_dir: Path, root: Path, after: str, action: str,
                  part_size: int | None = None) -> tuple[CrashableServer, Path]:
    """A CrashableServer of the desk in `data_dir` with SERVER_HOOK on `after`
    ("module:qualified.name"), and the file that arms it; its files go under `root`. With
    `part_size`, the server also cuts parts of that size (PART_SIZE_HOOK, in the same
    sitecustomize: Python imports only one)."""
    hooks, armed = root / "hooks", root / "armed"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SERVER_HOOK + "\n\n" + PART_SIZE_HOOK)
    # The hook first on the path, then whatever this process imports the desk from.
    path = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": path, "HOOK_AFTER": after, "HOOK_ARMED": str(armed),
           "HOOK_ACTION": action}
    if part_size is not None:
        env["DESK_TEST_PART_SIZE"] = str(part_size)
    server = CrashableServer(data_dir, root / "server.log", root / "tmp", env)
    return server, armed


# Put on a server's PYTHONPATH as sitecustomize.py: parts of DESK_TEST_PART_SIZE bytes instead
# of the desk's 64 MiB, through the in-process test hook `desk.intake.shape.simulated_part_size`
# (the desk itself reads no such variable).
PART_SIZE_HOOK = '''\
import os

if os.environ.get("DESK_TEST_PART_SIZE"):
    from desk.intake import shape

    shape.simulated_part_size = int(os.environ["DESK_TEST_PART_SIZE"])
'''


def small_parts_env(root: Path, size: int) -> dict[str, str]:
    """Environment for start_server: the server cuts parts of `size` bytes (files under
    `root`)."""
    hooks = root / "part-size-hook"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(PART_SIZE_HOOK)
    path = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "DESK_TEST_PART_SIZE": str(size)}
