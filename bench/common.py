"""What the benchmarks share beyond the test harness: the machine, a temp workspace, /proc
sampling, gpg baselines and py-spy.

The desk itself (`desk init`, `desk journalist add`, `desk serve`, a source's session, a
journalist's login) comes from tests/harness, as the tests use it. The benchmarks run as
modules from the checkout (`python -m bench.ingest`), so `bench`, `tests` and `desk` import
from there. Nothing here is collected by pytest.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import linecache
import os
import platform
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import requests

from desk.records.credentials import totp_code
from tests.harness.data import MiB
from tests.harness.desks import kill_gpg_agents
from tests.harness.gpg import Keypair
from tests.harness.http import journalist_session
from tests.harness.paths import REPO

CHUNK = MiB
PYSPY = Path(sys.executable).parent / "py-spy"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROFILE_RATE = 250  # py-spy samples per second and thread
B_MAX_SECONDS = 90.0  # above this projected time per run, baseline B runs on a prefix


def exit_on_sigterm() -> None:
    """Make a plain `kill` unwind like Ctrl-C, so every `finally` (server, temp dir) runs."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# --------------------------------------------------------------------------- figures

def mbps(size: int, seconds: float) -> float:
    """Throughput in MB/s (10^6 bytes)."""
    return size / seconds / 1e6


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summary(ms: Sequence[float]) -> dict[str, float]:
    return {"n": len(ms), "median": statistics.median(ms), "p95": percentile(ms, 95),
            "max": max(ms), "min": min(ms)}


# --------------------------------------------------------------------------- the machine

def machine(tools: Sequence[str] = (), packages: Sequence[str] = (),
            sqlite: bool = False) -> dict[str, str]:
    """CPU, memory, kernel, Python, the temp dir's file system and the checkout's revision;
    plus the first `--version` line of each of `tools`, the versions of `packages`, and
    SQLite's if asked."""
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "?")
    mem = next(line.split(":", 1)[1].strip() for line in
               Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    info = {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": mem,
            "kernel": platform.release()}
    for tool in tools:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
        info[tool] = out.splitlines()[0] if out else "?"
    info["python"] = platform.python_version()
    if sqlite:
        info["sqlite"] = sqlite3.sqlite_version
    if packages:
        versions = {}
        for name in packages:
            with contextlib.suppress(metadata.PackageNotFoundError):
                versions[name] = metadata.version(name)
        info["packages"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    revision = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                              capture_output=True, text=True).stdout.strip()
    tmp = tempfile.gettempdir()
    df = subprocess.run(["df", "-hT", tmp], capture_output=True, text=True).stdout.splitlines()
    info.update({"tempdir": tmp, "tempdir_fs": df[-1] if df else "?",
                 "revision": revision or "unknown (not a checkout)"})
    return info


# --------------------------------------------------------------------------- /proc

def child_cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process's reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def proc_stat(pid: int) -> tuple[float, float, float, float]:
    """CPU seconds of a process: (user, system, reaped children's user, their system)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    rest = text[text.rfind(")") + 2:].split()
    utime, stime, cutime, cstime = (int(x) / CLK_TCK for x in rest[11:15])
    return utime, stime, cutime, cstime


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 if it is gone)."""
    with contextlib.suppress(OSError):
        user, system, _, _ = proc_stat(pid)
        return user + system
    return 0.0


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of every thread of `pid` right now."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            text = (task / "stat").read_text()
            rest = text[text.rfind(")") + 2:].split()
            out[int(task.name)] = (int(rest[11]) + int(rest[12])) / CLK_TCK
    return out


def status_kib(pid: int, key: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...), or None if the process is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def comm(pid: int) -> str:
    """The process's command name (/proc/PID/comm), or "" if it is gone."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def children(pid: int, all_threads: bool = False) -> list[int]:
    """Child processes of `pid`'s main thread, or of any of its threads."""
    tasks = [str(pid)]
    if all_threads:
        with contextlib.suppress(OSError):
            tasks = [t.name for t in Path(f"/proc/{pid}/task").iterdir()]
    found = []
    for task in tasks:
        with contextlib.suppress(OSError):
            found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


class Monitor(threading.Thread):
    """Samples the gunicorn processes: peak RSS (VmHWM) and per-thread CPU of the workers.

    Between begin_window() and end_window() it also keeps each process's VmRSS at the start
    and the largest VmRSS sampled (every `interval` seconds), which, unlike VmHWM, does not
    carry an earlier request's peak (Argon2id's 64 MiB) into the figure.
    """

    def __init__(self, arbiter: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.arbiter = arbiter
        self.interval = interval
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.hwm: dict[int, int] = {}          # pid -> max VmHWM seen (KiB)
        self.gpg_hwm: dict[int, int] = {}      # gpg children of workers -> max VmHWM (KiB)
        self.threads: dict[tuple[int, int], float] = {}  # (worker, tid) -> last CPU seconds
        self.window: dict[int, list[int]] | None = None  # pid -> [VmRSS at start, max VmRSS]
        self.gpg_window: int = 0               # most gpg children at once in the window

    def sample(self) -> None:
        pids = [self.arbiter, *children(self.arbiter)]
        with self.lock:
            for pid in pids:
                hwm = status_kib(pid, "VmHWM")
                if hwm is not None:
                    self.hwm[pid] = max(self.hwm.get(pid, 0), hwm)
                rss = status_kib(pid, "VmRSS")
                if self.window is not None and rss is not None:
                    entry = self.window.setdefault(pid, [rss, rss])
                    entry[1] = max(entry[1], rss)
            gpgs = 0
            for worker in pids[1:]:
                with contextlib.suppress(OSError):
                    for tid, cpu in thread_cpu(worker).items():
                        self.threads[(worker, tid)] = cpu
                # gpg is started by a request thread, not the worker's main thread. Only
                # children that are gpg already: between fork and exec a child still shows
                # the worker's own RSS.
                for grandchild in children(worker, all_threads=True):
                    if comm(grandchild) != "gpg":
                        continue
                    gpgs += 1
                    hwm = status_kib(grandchild, "VmHWM")
                    if hwm is not None:
                        self.gpg_hwm[grandchild] = max(self.gpg_hwm.get(grandchild, 0), hwm)
            if self.window is not None:
                self.gpg_window = max(self.gpg_window, gpgs)

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            time.sleep(self.interval)

    def snapshot(self) -> dict[tuple[int, int], float]:
        self.sample()
        with self.lock:
            return dict(self.threads)

    def begin_window(self) -> None:
        """Start tracking each process's VmRSS (at the start, and the largest sampled)."""
        with self.lock:
            self.window = {}
            self.gpg_window = 0
        self.sample()

    def end_window(self) -> dict[int, list[int]]:
        self.sample()
        with self.lock:
            window, self.window = self.window or {}, None
        return window

    def stop(self) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout=5)


# --------------------------------------------------------------------------- files

def write_random(path: Path, size: int) -> str:
    """Write `size` random bytes to `path` in 1 MiB chunks; return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def copy_prefix(src: Path, dst: Path, size: int) -> None:
    """The first `size` bytes of `src` into a new file `dst`, in 1 MiB chunks."""
    with src.open("rb") as inp, dst.open("wb") as out:
        left = size
        while left and (chunk := inp.read(min(CHUNK, left))):
            out.write(chunk)
            left -= len(chunk)


@contextlib.contextmanager
def workspace(prefix: str = "desk-bench-") -> Iterator[Path]:
    """A temp dir removed at the end with every gpg-agent started for a GnuPG home in it."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        kill_gpg_agents(root)
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- clients

def log_in(url: str, username: str, password: str, secret: bytes) -> requests.Session:
    """A journalist's logged-in session (password and the current TOTP code)."""
    return journalist_session(url, username, password, totp_code(secret, datetime.now(UTC)))


# --------------------------------------------------------------------------- gpg baselines

@dataclass
class Run:
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)


def gpg_encrypt_command(home: Path, fingerprint: str, output: Path, compress: bool) -> list[str]:
    command = ["gpg", "--homedir", str(home), "--batch", "--trust-model", "always"]
    if not compress:
        command += ["--compress-algo", "none"]
    return [*command, "--encrypt", "-r", fingerprint, "-o", str(output)]


def run_baseline_a(home: Path, fingerprint: str, file: Path, out: Path) -> Run:
    """A: `gpg --encrypt --compress-algo none < file`, then (timed apart) fsync of the output."""
    command = gpg_encrypt_command(home, fingerprint, out, compress=False)
    cpu0 = child_cpu()
    with file.open("rb") as stdin:
        t0 = time.perf_counter()
        subprocess.run(command, stdin=stdin, check=True, capture_output=True, timeout=3600)
        seconds = time.perf_counter() - t0
    cpu1 = child_cpu()
    t1 = time.perf_counter()
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync = time.perf_counter() - t1
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    return Run(seconds, {"gpg": user + system, "gpg_user": user, "gpg_sys": system},
               {"fsync": fsync, "ciphertext": out.stat().st_size})


def run_baseline_b(home: Path, fingerprint: str, file: Path, out: Path) -> Run:
    """B: `gzip -9 < file | gpg --encrypt` with gpg's default compression (SecureDrop-style)."""
    gpg = gpg_encrypt_command(home, fingerprint, out, compress=True)
    cpu0 = child_cpu()
    with file.open("rb") as stdin:
        t0 = time.perf_counter()
        gzip = subprocess.Popen(["gzip", "-9"], stdin=stdin, stdout=subprocess.PIPE)
        assert gzip.stdout is not None
        encrypt = subprocess.Popen(gpg, stdin=gzip.stdout, stderr=subprocess.DEVNULL)
        gzip.stdout.close()
        rc_gpg, rc_gzip = encrypt.wait(timeout=3600), gzip.wait(timeout=60)
        seconds = time.perf_counter() - t0
    if rc_gpg or rc_gzip:
        raise RuntimeError(f"gzip | gpg failed: gzip {rc_gzip}, gpg {rc_gpg}")
    cpu1 = child_cpu()
    return Run(seconds, {"gzip+gpg": cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1]},
               {"ciphertext": out.stat().st_size})


def choose_b_input(home: Path, fingerprint: str, file: Path, size: int, root: Path,
                   max_seconds: float = B_MAX_SECONDS) -> tuple[Path, int, Run, float]:
    """Time B on a 32 MiB prefix; if the whole file would take over `max_seconds`, B runs on
    a prefix that fits (whole MiB). Returns (B's input, its size, the probe run, the
    projected seconds for the whole file)."""
    out = root / "b-probe.gpg"
    probe_size = min(size, 32 * MiB)
    probe = root / "probe.bin"
    copy_prefix(file, probe, probe_size)
    probe_run = run_baseline_b(home, fingerprint, probe, out)
    out.unlink()
    projected = probe_run.seconds * size / probe_size
    if projected > max_seconds:
        b_size = max(probe_size, int(size * max_seconds / projected) // MiB * MiB)
        copy_prefix(file, probe, b_size)
        return probe, b_size, probe_run, projected
    probe.unlink()
    return file, size, probe_run, projected


def decrypt_sha256(keypair: Keypair, path: Path) -> tuple[str, int, str]:
    """Decrypt `path` with stock gpg and the journalist's home, streaming.

    Returns (SHA-256 of the plaintext, its size, gpg's DECRYPTION_INFO status line)."""
    process = subprocess.Popen(
        ["gpg", "--homedir", str(keypair.home), "--batch", "--pinentry-mode", "loopback",
         "--passphrase", "", "--status-fd", "2", "--decrypt", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    digest, size = hashlib.sha256(), 0
    assert process.stdout is not None
    stderr = process.stderr
    assert stderr is not None
    stderr_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(stderr.read()))
    reader.start()
    while chunk := process.stdout.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    reader.join()
    if process.wait() != 0:
        raise RuntimeError(f"gpg --decrypt {path} failed: {b''.join(stderr_chunks)!r}")
    info = next((line for line in b"".join(stderr_chunks).decode(errors="replace").splitlines()
                 if "DECRYPTION_INFO" in line), "")
    return digest.hexdigest(), size, info.replace("[GNUPG:] ", "")


# --------------------------------------------------------------------------- py-spy

@contextlib.contextmanager
def pyspy(pid: int, out: Path, flags: Sequence[str], rate: int = PROFILE_RATE
          ) -> Iterator[list[str]]:
    """py-spy recording every process under `pid` (raw collapsed stacks into `out`) for the
    duration of the block. Yields a list that receives py-spy's last output line."""
    process = subprocess.Popen(
        [str(PYSPY), "record", "--pid", str(pid), "--subprocesses", "--rate", str(rate),
         "--format", "raw", "--output", str(out), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    said: list[str] = []
    try:
        time.sleep(1.5)  # let py-spy attach
        yield said
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output = process.communicate(timeout=120)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            output = process.communicate(timeout=30)[0]
        said += output.decode(errors="replace").strip().splitlines()[-1:]


def summarise_profile(path: Path, role_of: Callable[[str, list[str]], str], top: int = 10,
                      rate: int = PROFILE_RATE) -> str:
    """Where threads spent their samples, from py-spy raw output.

    `role_of(thread label, frames)` names each sample's thread role; roles starting with
    "other" are only counted. For the rest, the deepest Python frame (with its line, and the
    source text of that line) is the "self" position, and native frames under it (py-spy
    --native) are kept as the leaf library.
    """
    if not path.exists():
        return f"(no profile at {path})"
    roles: collections.Counter[str] = collections.Counter()
    leaves: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        label = next((f for f in frames if f.startswith("thread ")), "?")
        body = [f for f in frames if not f.startswith(("process ", "thread "))]
        role = role_of(label, body)
        roles[role] += count
        if role.startswith("other"):
            continue
        python = [f for f in body if ".py:" in f]
        leaf = frame_text(python[-1]) if python else "?"
        native = body[body.index(python[-1]) + 1:] if python else body
        if native:
            libs = [m.group(1) for f in native if (m := re.search(r"\(([^)]*\.so[^)]*)\)", f))]
            named = [f.split(" (")[0] for f in native if not f.startswith("0x")]
            leaf += f"  -> native {named[-1] if named else ''} [{libs[-1] if libs else '?'}]"
        leaves[role][leaf] += count
        for fn in {re.sub(r":\d+\)$", ")", frame_text(f)) for f in python}:
            inclusive[role][fn] += count
    lines = [f"{path.name} ({sum(roles.values())} samples at {rate}/s per thread):"]
    lines += [f"  {n / rate:6.2f} s  {role}" for role, n in roles.most_common()]
    for role, counter in leaves.items():
        total = sum(counter.values())
        lines.append(f"  {role}: {total} samples; deepest Python frame:")
        lines += [f"    {n / total:6.1%}  {k}" for k, n in counter.most_common(top)]
        lines.append("   inclusive:")
        lines += [f"    {n / total:6.1%}  {k}" for k, n in inclusive[role].most_common(top)]
    return "\n".join(lines)


def frame_text(frame: str) -> str:
    """'read (/abs/gnupg.py:156)' -> 'read (gnupg.py:156) `data = instream.read(n)`'."""
    match = re.match(r"(.*) \((.*):(\d+)\)$", frame)
    if not match:
        return frame
    name, filename, lineno = match.groups()
    source = ""
    for base in ("", str(REPO) + "/", sys.prefix + "/lib/python3.11/site-packages/",
                 sys.base_prefix + "/lib/python3.11/"):
        if Path(base + filename).is_file():
            source = linecache.getline(base + filename, int(lineno)).strip()
            break
    return f"{name} ({filename}:{lineno})" + (f" `{source}`" if source else "")
