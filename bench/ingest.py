"""Form upload ingest benchmark: the desk against stock gpg and a SecureDrop-style pipeline.

Run by hand, never as a test:

    .venv/bin/python bench/ingest.py [--size-mib 512] [--runs 3] [--sendfile]
                                     [--profile-dir DIR] [--json FILE]

One random file (os.urandom, written once) goes through, in interleaved rounds:

  A      gpg --encrypt --compress-algo none < file            (what the desk asks gpg to do)
  B      gzip -9 < file | gpg --encrypt  (default compression) (SecureDrop-style)
  desk   a real source flow against `desk serve source` over loopback, the multipart POST
         streamed from disk with http.client in 1 MiB chunks

and prints medians, MB/s (10^6 bytes), ratios, the CPU each process used, and the peak RSS of
the gunicorn processes. The stored object is decrypted once with stock gpg and compared.
With --sendfile each round also times the POST with the file part sent by socket.sendfile.
With --profile-dir, three more uploads run under py-spy (idle stacks, GIL holders, native
frames; py-spy must be installed in the venv) and the raw stacks are left in that directory
with a summary printed. See bench/README.md and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import http.client
import json
import linecache
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from tests.forms import csrf_token  # noqa: E402
from tests.gpgtool import Keypair, make_keypair  # noqa: E402

MiB = 1 << 20
CHUNK = MiB
DESK = Path(sys.executable).parent / "desk"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROFILE_RATE = 250  # py-spy samples per second and thread
B_MAX_SECONDS = 90.0  # above this projected time per run, baseline B runs on a prefix


# --------------------------------------------------------------------------- helpers

def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6


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
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gpg_encrypt_command(home: Path, fingerprint: str, output: Path, compress: bool) -> list[str]:
    command = ["gpg", "--homedir", str(home), "--batch", "--trust-model", "always"]
    if not compress:
        command += ["--compress-algo", "none"]
    return [*command, "--encrypt", "-r", fingerprint, "-o", str(output)]


def decrypt_sha256(keypair: Keypair, path: Path) -> tuple[str, int, str]:
    """Decrypt `path` with stock gpg and the journalist's home, streaming.

    Returns (SHA-256 of the plaintext, its size, gpg's DECRYPTION_INFO status line)."""
    process = subprocess.Popen(
        ["gpg", "--homedir", str(keypair.home), "--batch", "--pinentry-mode", "loopback",
         "--passphrase", "", "--status-fd", "2", "--decrypt", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    digest, size = hashlib.sha256(), 0
    assert process.stdout is not None
    assert process.stderr is not None
    stderr_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(process.stderr.read()))
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


# --------------------------------------------------------------------------- the server

class Monitor(threading.Thread):
    """Samples the gunicorn processes: peak RSS (VmHWM) and per-thread CPU of the workers."""

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
            for worker in pids[1:]:
                with contextlib.suppress(OSError):
                    for tid, cpu in thread_cpu(worker).items():
                        self.threads[(worker, tid)] = cpu
                # gpg is started by a request thread, not the worker's main thread.
                for grandchild in children(worker, all_threads=True):
                    hwm = status_kib(grandchild, "VmHWM")
                    if hwm is not None:
                        self.gpg_hwm[grandchild] = max(self.gpg_hwm.get(grandchild, 0), hwm)

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


@dataclass
class Desk:
    root: Path
    data: Path
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    server_tmp: Path
    fingerprint: str
    journalist: Keypair

    @property
    def arbiter(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        return children(self.arbiter)

    @property
    def gnupg_home(self) -> Path:
        return self.data / "gnupg"

    @property
    def objects(self) -> Path:
        return self.data / "store" / "objects"


def desk_env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESK_")}
    return {**env, "DESK_DATA": str(data), **extra}


def start_desk(root: Path, max_upload: int) -> Desk:
    journalist = make_keypair(root / "journalist" / "home", "Bench")
    data = root / "desk-data"
    for args in (["init"], ["journalist", "add", "bench", "--key", str(journalist.public_key)]):
        subprocess.run([str(DESK), *args], env=desk_env(data), check=True, capture_output=True,
                       timeout=120)
    port = free_port()
    server_tmp = root / "server-tmp"
    server_tmp.mkdir()
    log = root / "server.log"
    env = desk_env(data, DESK_MAX_UPLOAD_BYTES=str(max_upload), TMPDIR=str(server_tmp))
    with log.open("wb") as log_file:
        process = subprocess.Popen([str(DESK), "serve", "source", "--port", str(port)],
                                   env=env, stdout=log_file, stderr=subprocess.STDOUT)
    desk = Desk(root, data, f"http://127.0.0.1:{port}", port, process, log, server_tmp,
                journalist.fingerprint, journalist)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"desk serve did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
                continue
            if len(desk.workers()) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    except BaseException:
        stop_desk(desk)
        raise
    return desk


def stop_desk(desk: Desk) -> None:
    if desk.process.poll() is None:
        desk.process.send_signal(signal.SIGTERM)
        try:
            desk.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            desk.process.kill()
            desk.process.wait(timeout=30)


# --------------------------------------------------------------------------- the methods

@dataclass
class Run:
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)


def run_baseline_a(desk: Desk, file: Path, out: Path) -> Run:
    command = gpg_encrypt_command(desk.gnupg_home, desk.fingerprint, out, compress=False)
    cpu0 = child_cpu()
    with file.open("rb") as stdin:
        t0 = time.perf_counter()
        subprocess.run(command, stdin=stdin, check=True, capture_output=True, timeout=600)
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


def run_baseline_b(desk: Desk, file: Path, out: Path) -> Run:
    gpg = gpg_encrypt_command(desk.gnupg_home, desk.fingerprint, out, compress=True)
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


def source_session(desk: Desk) -> tuple[str, str]:
    """Walk a source through /, /generate and /submit; return (Cookie header, CSRF token)."""
    with requests.Session() as browser:
        page = browser.get(desk.url + "/", timeout=60)
        assert page.status_code == 200, page.status_code
        page = browser.post(desk.url + "/generate", data={"csrf_token": csrf_token(page.text)},
                            timeout=60)
        assert page.status_code == 200, page.status_code
        page = browser.get(desk.url + "/submit", timeout=60)
        assert page.status_code == 200, page.status_code
        cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
        return cookie, csrf_token(page.text)


def upload(desk: Desk, file: Path, size: int, sha256: str, monitor: Monitor,
           use_sendfile: bool = False) -> Run:
    """One multipart POST of `file`, timed from the first byte sent to the response read."""
    cookie, token = source_session(desk)
    boundary = "deskbench" + secrets.token_hex(12)
    head = (f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="files"; filename="bench.bin"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", desk.port, timeout=600)
    conn.connect()
    workers = desk.workers()
    before = {pid: proc_stat(pid) for pid in workers}
    threads_before = monitor.snapshot()
    client0 = time.process_time()
    monitor.begin_window()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        with file.open("rb") as body:
            t0 = time.perf_counter()
            conn.putrequest("POST", "/submit", skip_accept_encoding=True)
            conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
            conn.putheader("Content-Length", str(len(head) + size + len(tail)))
            conn.putheader("Cookie", cookie)
            conn.endheaders()
            conn.send(head)
            if use_sendfile:
                assert conn.sock is not None
                conn.sock.sendfile(body, 0, size)
            else:
                while n := body.readinto(buffer):
                    conn.send(view[:n])
            conn.send(tail)
            response = conn.getresponse()
            page = response.read()
            seconds = time.perf_counter() - t0
    finally:
        conn.close()
    client_cpu = time.process_time() - client0
    rss_window = monitor.end_window()
    threads_after = monitor.snapshot()
    assert response.status == 200, (response.status, page[:2000])
    assert sha256.encode() in page, "the response page does not show the file's SHA-256"
    after = {pid: proc_stat(pid) for pid in workers if Path(f"/proc/{pid}").exists()}
    used = [sum(after[p][i] - before[p][i] for p in after) for i in range(4)]
    # Threads of the workers: which ones burned the worker's CPU during this upload.
    per_thread = sorted(((cpu - threads_before.get(key, 0.0), key)
                         for key, cpu in threads_after.items()), reverse=True)
    top = [(round(cpu, 2), "new" if key not in threads_before else "old")
           for cpu, key in per_thread[:4] if cpu > 0.05]
    extra: dict[str, float] = {f"thread{i}": cpu for i, (cpu, _) in enumerate(top)}
    extra.update({f"thread{i}_new": float(kind == "new") for i, (_, kind) in enumerate(top)})
    # The worker whose RSS grew most during the upload is the one that served it.
    growth = max(((peak - start, start, peak) for pid, (start, peak) in rss_window.items()
                  if pid != desk.arbiter), default=(0, 0, 0))
    extra.update({"rss_start_kib": growth[1], "rss_peak_kib": growth[2]})
    return Run(seconds, {"client": client_cpu, "worker": used[0] + used[1],
                         "gpg": used[2] + used[3], "worker_user": used[0],
                         "worker_sys": used[1], "gpg_user": used[2], "gpg_sys": used[3]}, extra)


def newest_object(desk: Desk, known: set[str]) -> Path:
    new = [p for p in desk.objects.iterdir() if p.name not in known]
    assert len(new) == 1, f"expected one new object, found {new}"
    return new[0]


# --------------------------------------------------------------------------- profiling

def profile_upload(desk: Desk, file: Path, size: int, sha256: str, monitor: Monitor,
                   out_dir: Path, spy: Path) -> dict[str, Path]:
    """One upload per py-spy mode; raw collapsed stacks of every gunicorn process."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    # py-spy pauses the target to sample unless --nonblocking; --native needs the pauses.
    modes = {"all": ["--threads", "--idle", "--nonblocking"],
             "gil": ["--threads", "--gil", "--nonblocking"],
             "native": ["--threads", "--native"]}
    for name, flags in modes.items():
        path = out_dir / f"pyspy-{name}.txt"
        spy_process = subprocess.Popen(
            [str(spy), "record", "--pid", str(desk.arbiter), "--subprocesses",
             "--rate", str(PROFILE_RATE), "--format", "raw", "--output", str(path), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            time.sleep(1.5)  # let py-spy attach
            run = upload(desk, file, size, sha256, monitor)
        finally:
            spy_process.send_signal(signal.SIGINT)
            output = spy_process.communicate(timeout=120)[0]
        print(f"  py-spy {name}: upload {run.seconds:.2f} s ({mbps(size, run.seconds):.0f} MB/s)"
              f" under profiling; {output.decode(errors='replace').strip().splitlines()[-1:]}")
        results[name] = path
    return results


def _role(label: str, frames: list[str]) -> str:
    if "(_copy_data)" in label:
        return "copy thread (python-gnupg _copy_data: body -> gpg stdin)"
    if "(_read_data)" in label or "(_read_response)" in label:
        return "gpg stdout/stderr readers"
    if any(f.startswith("submit (desk/source/views.py") for f in frames):
        return "request thread (view submit)"
    return "other (idle pools, arbiter, other requests)"


def summarise_profile(path: Path, top: int = 10) -> str:
    """Where the upload's threads spent their samples, from py-spy raw output.

    Samples are grouped by thread role; for the upload threads the deepest Python frame (with
    its line, and the source text of that line) is the "self" position, and native frames under
    it (py-spy --native) are kept as the leaf library.
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
        role = _role(label, body)
        roles[role] += count
        if role.startswith("other"):
            continue
        python = [f for f in body if ".py:" in f]
        leaf = _frame(python[-1]) if python else "?"
        native = body[body.index(python[-1]) + 1:] if python else body
        if native:
            libs = [m.group(1) for f in native if (m := re.search(r"\(([^)]*\.so[^)]*)\)", f))]
            named = [f.split(" (")[0] for f in native if not f.startswith("0x")]
            leaf += f"  -> native {named[-1] if named else ''} [{libs[-1] if libs else '?'}]"
        leaves[role][leaf] += count
        for fn in {re.sub(r":\d+\)$", ")", _frame(f)) for f in python}:
            inclusive[role][fn] += count
    lines = [f"{path.name} ({sum(roles.values())} samples at {PROFILE_RATE}/s per thread):"]
    lines += [f"  {n / PROFILE_RATE:6.2f} s  {role}" for role, n in roles.most_common()]
    for role, counter in leaves.items():
        total = sum(counter.values())
        lines.append(f"  {role}: {total} samples; deepest Python frame:")
        lines += [f"    {n / total:6.1%}  {k}" for k, n in counter.most_common(top)]
        lines.append("   inclusive:")
        lines += [f"    {n / total:6.1%}  {k}" for k, n in inclusive[role].most_common(top)]
    return "\n".join(lines)


def _frame(frame: str) -> str:
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


# --------------------------------------------------------------------------- reporting

def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "?")
    mem = next(line.split(":", 1)[1].strip() for line in
               Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    gpg = subprocess.run(["gpg", "--version"], capture_output=True, text=True).stdout
    gzip = subprocess.run(["gzip", "--version"], capture_output=True, text=True).stdout
    revision = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                              capture_output=True, text=True).stdout.strip()
    tmp = tempfile.gettempdir()
    df = subprocess.run(["df", "-hT", tmp], capture_output=True, text=True).stdout.splitlines()
    return {
        "nproc": str(os.cpu_count()), "cpu": cpu, "memory": mem, "kernel": platform.release(),
        "gpg": gpg.splitlines()[0], "gzip": gzip.splitlines()[0],
        "python": platform.python_version(), "tempdir": tmp,
        "tempdir_fs": df[-1] if df else "?", "revision": revision or "unknown (not a checkout)",
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


# --------------------------------------------------------------------------- main

@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="desk-bench-"))
    try:
        yield root
    finally:
        for home in [*root.rglob("pubring.kbx")]:
            subprocess.run(["gpgconf", "--homedir", str(home.parent), "--kill", "gpg-agent"],
                           capture_output=True, check=False, timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile-dir", type=Path,
                        help="after the timed runs, profile uploads with py-spy into this dir")
    parser.add_argument("--sendfile", action="store_true",
                        help="also time desk uploads sent with os.sendfile (less client CPU)")
    parser.add_argument("--json", type=Path, help="write all measurements here")
    args = parser.parse_args()
    # A plain `kill` still stops the server and removes the temp dir (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    size = args.size_mib * MiB
    info = machine()
    print("machine:", json.dumps(info, indent=1))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")

    with workspace() as root:
        file = root / "random.bin"
        t0 = time.perf_counter()
        sha256 = write_random(file, size)
        print(f"wrote {size} random bytes in {time.perf_counter() - t0:.1f} s; sha256 {sha256}")
        desk = start_desk(root, max_upload=size + 64 * MiB)
        monitor = Monitor(desk.arbiter)
        try:
            return bench(args, info, root, desk, monitor, file, size, sha256)
        except BaseException:
            print("---- server log ----\n" + desk.log.read_text(errors="replace")[-5000:])
            raise
        finally:
            try:
                monitor.stop()
            finally:
                stop_desk(desk)


def bench(args: argparse.Namespace, info: dict[str, str], root: Path, desk: Desk,
          monitor: Monitor, file: Path, size: int, sha256: str) -> int:
    out = root / "out.gpg"
    # Baseline B: measure a prefix first, to decide whether the full file is affordable.
    probe_size = min(size, 32 * MiB)
    probe = root / "probe.bin"
    with file.open("rb") as src, probe.open("wb") as dst:
        dst.write(src.read(probe_size))
    probe_run = run_baseline_b(desk, probe, out)
    out.unlink()
    projected = probe_run.seconds * size / probe_size
    b_size = size
    if projected > B_MAX_SECONDS:
        b_size = max(probe_size, int(size * B_MAX_SECONDS / projected) // MiB * MiB)
        with file.open("rb") as src, probe.open("wb") as dst:
            dst.write(src.read(b_size))
        b_file = probe
    else:
        probe.unlink()
        b_file = file
    print(f"baseline B probe: {probe_size} bytes in {probe_run.seconds:.2f} s, projected "
          f"{projected:.1f} s for the whole file; running B on {b_size} bytes")

    # Warm-up: one source flow (first requests import and render templates in the worker).
    source_session(desk)
    monitor.sample()
    hwm_before = dict(monitor.hwm)
    monitor.start()

    results: dict[str, list[Run]] = {"A": [], "B": [], "desk": []}
    if args.sendfile:
        results["desk-sendfile"] = []
    verified: dict[str, str] = {}
    known = {p.name for p in desk.objects.iterdir()}
    for i in range(args.runs):
        run = run_baseline_a(desk, file, out)
        results["A"].append(run)
        if i == 0:
            got, n, cipher = decrypt_sha256(desk.journalist, out)
            assert (got, n) == (sha256, size), "baseline A does not decrypt to the file"
            verified["A"] = cipher
        out.unlink()
        results["B"].append(run_baseline_b(desk, b_file, out))
        out.unlink()
        run = upload(desk, file, size, sha256, monitor)
        results["desk"].append(run)
        obj = newest_object(desk, known)
        known.add(obj.name)
        run.extra["ciphertext"] = sum(p.stat().st_size for p in obj.iterdir())
        if i == 0:
            parts = sorted(obj.glob("part-*.gpg"))
            assert len(parts) == 1, parts
            run.extra["part_ciphertext"] = parts[0].stat().st_size
            got, n, cipher = decrypt_sha256(desk.journalist, parts[0])
            assert (got, n) == (sha256, size), "the stored part does not decrypt to the file"
            verified["desk"] = cipher
            meta = subprocess.run(
                ["gpg", "--homedir", str(desk.journalist.home), "--batch", "--decrypt",
                 str(obj / "meta.gpg")], capture_output=True, check=True, timeout=60).stdout
            record = json.loads(meta)
            assert record.get("sha256") == sha256, record
            print(f"verified: stored part decrypts to the file ({cipher}); metadata sha256 ok")
        shutil.rmtree(obj, ignore_errors=True)  # keep the disk small
        if args.sendfile:
            results["desk-sendfile"].append(
                upload(desk, file, size, sha256, monitor, use_sendfile=True))
            obj = newest_object(desk, known)
            known.add(obj.name)
            shutil.rmtree(obj, ignore_errors=True)
        line = "  ".join(f"{k} {v[-1].seconds:6.2f} s" for k, v in results.items())
        print(f"round {i + 1}: {line}")

    monitor.sample()
    leftovers = {
        "server TMPDIR files": len([p for p in desk.server_tmp.rglob("*")]),
        "staging entries": len(list((desk.data / "store" / "staging").iterdir())),
    }

    sizes = {"A": size, "B": b_size, "desk": size, "desk-sendfile": size}
    table = []
    med = {}
    for name, runs in results.items():
        seconds = median([r.seconds for r in runs])
        med[name] = sizes[name] / seconds / 1e6
        cpu = {k: median([r.cpu[k] for r in runs]) for k in runs[0].cpu}
        table.append((name, seconds, med[name], [r.seconds for r in runs], cpu))

    print("\n| method | bytes | median s | median MB/s | runs (s) | CPU s (median) |")
    print("|---|---|---|---|---|---|")
    for name, seconds, rate, runs_s, cpu in table:
        cpu_text = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
        print(f"| {name} | {sizes[name]} | {seconds:.2f} | {rate:.0f} | "
              f"{', '.join(f'{s:.2f}' for s in runs_s)} | {cpu_text} |")
    print(f"\ndesk / A throughput: {med['desk'] / med['A']:.2f}")
    print(f"desk / B throughput: {med['desk'] / med['B']:.2f}")
    if "desk-sendfile" in med:
        print(f"desk (sendfile client) / A: {med['desk-sendfile'] / med['A']:.2f}")
    fsync = median([r.extra["fsync"] for r in results["A"]])
    a_sync = median([r.seconds + r.extra["fsync"] for r in results["A"]])
    a_sync_rate = mbps(size, a_sync)
    print(f"A: fsync of the output after gpg exits, median {fsync:.2f} s; A + fsync "
          f"{a_sync_rate:.0f} MB/s; desk / (A + fsync) {med['desk'] / a_sync_rate:.2f}")
    first = {name: runs[0].extra for name, runs in results.items()}
    print(f"ciphertext bytes: A {first['A']['ciphertext']:.0f}, desk part "
          f"{first['desk']['part_ciphertext']:.0f}, desk object {first['desk']['ciphertext']:.0f}"
          f", B {first['B']['ciphertext']:.0f} (of {b_size})")
    print(f"ciphers: {verified}")
    for i, run in enumerate(results["desk"]):
        threads = [(run.extra[f"thread{j}"], "new" if run.extra[f"thread{j}_new"] else "pool")
                   for j in range(4) if f"thread{j}" in run.extra]
        print(f"desk run {i + 1}: worker threads by CPU s: {threads}; serving worker VmRSS "
              f"{run.extra['rss_start_kib'] / 1024:.1f} MiB at start, "
              f"{run.extra['rss_peak_kib'] / 1024:.1f} MiB largest sample (every 50 ms)")

    arbiter_hwm = monitor.hwm.get(desk.arbiter, 0)
    worker_hwm = {pid: kib for pid, kib in monitor.hwm.items() if pid != desk.arbiter}
    print(f"\npeak RSS (VmHWM) before uploads: "
          f"{ {pid: f'{kib / 1024:.1f} MiB' for pid, kib in hwm_before.items()} }")
    print(f"peak RSS (VmHWM) after all uploads: arbiter {arbiter_hwm / 1024:.1f} MiB; workers "
          f"{ {pid: f'{kib / 1024:.1f} MiB' for pid, kib in worker_hwm.items()} }")
    if monitor.gpg_hwm:
        print(f"gpg children seen: {len(monitor.gpg_hwm)}, largest VmHWM "
              f"{max(monitor.gpg_hwm.values()) / 1024:.1f} MiB")
    print(f"leftovers: {leftovers}")

    profiles = {}
    if args.profile_dir:
        spy = Path(sys.executable).parent / "py-spy"
        if not spy.exists():
            print("py-spy is not installed in the venv: skipping profiling")
        else:
            print("\nprofiling (py-spy, every gunicorn process):")
            profiles = profile_upload(desk, file, size, sha256, monitor, args.profile_dir, spy)
            for path in profiles.values():
                print(summarise_profile(path))

    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "size": size, "b_size": b_size, "sha256": sha256,
            "runs": {k: [vars(r) for r in v] for k, v in results.items()},
            "hwm_before_kib": hwm_before, "hwm_kib": monitor.hwm, "gpg_hwm_kib": monitor.gpg_hwm,
            "arbiter": desk.arbiter, "leftovers": leftovers, "verified": verified,
            "profiles": {k: str(v) for k, v in profiles.items()},
        }, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
