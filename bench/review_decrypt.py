"""Review console decryption benchmark: `desk-review open` against stock `gpg --decrypt`.

Run by hand, never as a test:

    .venv/bin/python -m bench.review_decrypt [--sizes-mib 100,4096] [--runs 3]
                                             [--profile-dir DIR] [--variants NAME,...]
                                             [--tmp DIR] [--json FILE]

Setup (untimed): a journalist keypair made with stock gpg (Ed25519 + Curve25519, no
passphrase), a throwaway desk (`desk init`, `desk journalist add`), and one random file per size
submitted through the real source form in-process with Flask's test client (GET /,
POST /generate, GET /submit, then a multipart POST /submit whose body is streamed from a file on
disk). Then `desk export --out BUNDLE --all` and `desk-review import BUNDLE` into a workspace.

Timed, per size, interleaved round by round (the order alternates from round to round):

  open   desk-review --workspace W --gnupghome H open ID --out DIR   (a subprocess)
  gpg    gpg --homedir H --batch --decrypt -o OUT PART                (the same part file)
         and, after it exits, fsync of OUT (open fsyncs its output; plain gpg does not)

Before each timed command the previous output is deleted and `sync` runs (untimed); the
ciphertext is read once beforehand so both read it from the page cache, and an untimed gpg
decryption starts the gpg-agent. Reported: medians, MB/s (10^6 bytes), the ratio of open's
throughput to gpg's and to gpg + fsync, the CPU each used (wait4: the process and the children
it waited for), how idle the whole machine was during each run (/proc/stat), the peak RSS of
desk-review (VmHWM polled every 50 ms, and ru_maxrss from /usr/bin/time when present) and of its
gpg child (VmHWM polled) and of stock gpg (ru_maxrss from /usr/bin/time), and desk-review's
start-up time (median of five `desk-review list --json`). The first round checks that both
outputs hash to the SHA-256 of the bytes that were uploaded.

--profile-dir DIR runs open twice more per size under py-spy (every thread; once with on-CPU
samples only, once with idle stacks too), keeps the raw stacks in DIR and prints where each
thread spent its samples (py-spy must be installed in the venv).

--variants NAME[+NAME...],... also times open with the decryption path changed by
monkeypatching, in the child process only (nothing in the tree changes), in the same rounds, to
measure what a change would buy: pipe1m, onehash, hashthread, gpgout, gpgout-follow, gpgfile
(see VARIANTS). --variant-sizes-mib limits them to some sizes.

Everything (temp dir, gpg-agents, a running child) is removed at the end, also on failure,
Ctrl-C or `kill`. Results: bench/RESULTS-review.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import children, frame_text, mbps, status_kib
from tests.harness.data import MiB
from tests.harness.desks import cli_add_journalist, cli_init_desk, desk_env
from tests.harness.forms import StreamedForm
from tests.harness.gpg import Keypair
from tests.harness.paths import DESK_COMMAND, REPO, REVIEW_COMMAND
from tests.harness.web import SourceBrowser

CHUNK = MiB
DESK = Path(DESK_COMMAND)
DESK_REVIEW = Path(REVIEW_COMMAND)
PY_SPY = Path(sys.executable).parent / "py-spy"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROFILE_RATE = 250  # py-spy samples per second and thread
POLL = 0.05  # seconds between /proc samples

# --------------------------------------------------------------------------- variants
#
# Each variant is a change to the decryption path, applied by monkeypatching in the child
# process only (`-m bench.review_decrypt --run-variant NAMES -- ARGS` runs desk-review's `main`
# after patching); nothing in the tree changes. They are timed like `open`, in the same rounds,
# to put numbers on what a change to crypto/gpg.py or desk/review/decrypt.py would buy. The
# copies of `_decrypt_parts` below keep every check the product makes (size, part SHA-256, whole
# SHA-256, fsync, delete on failure in open_item).

def _patch_pipe1m() -> None:
    """gpg's stdout pipe at 1 MiB (F_SETPIPE_SZ), as crypto.gpg already does for stdin."""
    import fcntl

    import crypto.gpg as g

    original = g._GPG._open_subprocess

    def _open_subprocess(self: Any, *args: Any, **kwargs: Any) -> Any:
        process = original(self, *args, **kwargs)
        with contextlib.suppress(OSError):
            fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        return process

    g._GPG._open_subprocess = _open_subprocess  # type: ignore[method-assign]


# Set by the gpgfile patch: gpg reads the ciphertext file itself (a path argument) instead of
# python-gnupg's copy thread feeding it through a stdin pipe.
_GPG_READS_FILE = False


def _gpg_decrypt_file(gpg: Any, source: Path, output: str | None = None) -> Any:
    """python-gnupg's decrypt_file, fed by the copy thread or (gpgfile) given the path."""
    if _GPG_READS_FILE:
        return gpg._gpg.decrypt_file(io.BytesIO(), output=output, extra_args=[str(source)])
    with source.open("rb") as handle:
        return gpg._gpg.decrypt_file(handle, output=output)


def _patch_gpgfile() -> None:
    """gpg opens the part file itself; applies to decrypt_stream and to the gpgout variants."""
    global _GPG_READS_FILE
    _GPG_READS_FILE = True
    import crypto.gpg as g

    def decrypt_stream(self: Any, source: Path, sink: Any, limit: int | None = None) -> None:
        # The bound on the plaintext (`limit`, --max-output) is left out: timing only.
        def take(chunk: bytes) -> bool:
            if chunk:
                sink(chunk)
            return False

        self._gpg.on_data = take
        try:
            result = _gpg_decrypt_file(self, source)
        finally:
            self._gpg.on_data = None
        if not result.ok or result.returncode != 0:
            stderr = str(result.stderr or "")
            statuses = {line[9:].split()[0] for line in stderr.splitlines()
                        if line.startswith("[GNUPG:] ") and line[9:].strip()}
            raise g.DecryptionFailed(g._decryption_problem(stderr, statuses))

    g.GnuPG.decrypt_stream = decrypt_stream  # type: ignore[method-assign]


def _sink_variant(mode: str) -> None:
    """Replace desk.review.decrypt._decrypt_parts with a copy whose sink hashes differently.

    once:   a one-part item's whole-file digest is its part digest, so hash each chunk once
            (for several parts the whole digest is still computed).
    thread: the sink only writes; both hashes run in a second thread fed by a bounded queue
            (hashlib releases the GIL on large buffers, so they overlap the reads and writes).
    """
    import queue

    import desk.review.decrypt as d

    def _decrypt_parts(workspace, gpg, item, parts, temp, progress):
        whole, total = hashlib.sha256(), 0
        single = len(parts) == 1 and mode == "once"
        with temp.open("xb") as out:
            for name, size, sha256 in parts:
                digest, count = hashlib.sha256(), 0
                hashers = [digest] if single else [digest, whole]
                work: queue.Queue[bytes | None] = queue.Queue(maxsize=16)

                def hash_worker(work: queue.Queue[bytes | None] = work,
                                hashers: list[Any] = hashers) -> None:
                    while (chunk := work.get()) is not None:
                        for h in hashers:
                            h.update(chunk)

                worker = threading.Thread(target=hash_worker, daemon=True)
                if mode == "thread":
                    worker.start()

                def sink(chunk: bytes, work: queue.Queue[bytes | None] = work,
                         hashers: list[Any] = hashers) -> None:
                    nonlocal count
                    out.write(chunk)
                    if mode == "thread":
                        work.put(chunk)
                    else:
                        for h in hashers:
                            h.update(chunk)
                    count += len(chunk)
                    progress(len(chunk))

                try:
                    d._decrypt_part(gpg, workspace.objects(item.id) / name, sink, item.id, name,
                                    size)
                finally:
                    if mode == "thread":
                        work.put(None)
                        worker.join()
                if count != size or digest.hexdigest() != sha256:
                    raise d.ReviewError(f"item {item.id}: {name} does not match")
                total += count
            out.flush()
            os.fsync(out.fileno())
        result = digest.hexdigest() if single else whole.hexdigest()
        if item.sha256 is not None and result != item.sha256:
            raise d.ReviewError(f"item {item.id}: the reassembled file does not match")
        return result, total

    d._decrypt_parts = _decrypt_parts


def _gpg_output_variant(follow: bool) -> None:
    """gpg writes each part's plaintext to the file itself (`--output`), no pipe to Python.

    follow=False: hash the file after gpg exits (read back from the page cache).
    follow=True:  a thread hashes the file while gpg is still writing it, following its end.
    One-part items (all this benchmark makes) decrypt straight into open_item's temp file;
    further parts would go to their own file and be appended (not exercised here).
    """
    import desk.review.decrypt as d
    from crypto.errors import DecryptionFailed

    def decrypt_part_to(gpg: Any, source: Path, target: Path) -> tuple[str, int]:
        digest, count = hashlib.sha256(), 0
        done = threading.Event()

        def hash_file() -> None:
            nonlocal count
            while not target.exists():
                if done.is_set():
                    return
                time.sleep(0.001)
            with target.open("rb") as handle:
                while True:
                    finished = done.is_set()  # read once more after gpg has exited
                    chunk = handle.read(CHUNK)
                    if chunk:
                        digest.update(chunk)
                        count += len(chunk)
                    elif finished:
                        return
                    else:
                        time.sleep(0.002)

        follower = threading.Thread(target=hash_file, daemon=True)
        if follow:
            follower.start()
        try:
            result = _gpg_decrypt_file(gpg, source, str(target))
        finally:
            done.set()
            if follow:
                follower.join()
        if not result.ok or result.returncode != 0:
            raise DecryptionFailed("gpg could not decrypt")
        if not follow:
            hash_file()
        return digest.hexdigest(), count

    def _decrypt_parts(workspace, gpg, item, parts, temp, progress):
        if len(parts) != 1:
            raise NotImplementedError("the gpgout variants handle one-part items only")
        name, size, sha256 = parts[0]
        got, count = decrypt_part_to(gpg, workspace.objects(item.id) / name, temp)
        progress(count)
        if count != size or got != sha256:
            raise d.ReviewError(f"item {item.id}: {name} does not match")
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if item.sha256 is not None and got != item.sha256:
            raise d.ReviewError(f"item {item.id}: the reassembled file does not match")
        return got, count

    d._decrypt_parts = _decrypt_parts


VARIANTS = {
    "pipe1m": _patch_pipe1m,
    "onehash": lambda: _sink_variant("once"),
    "hashthread": lambda: _sink_variant("thread"),
    "gpgout": lambda: _gpg_output_variant(follow=False),
    "gpgout-follow": lambda: _gpg_output_variant(follow=True),
    "gpgfile": _patch_gpgfile,
}


def variant_command(names: list[str]) -> list[str]:
    """The command that applies the named patches, then runs desk-review's `main`."""
    return [sys.executable, "-m", "bench.review_decrypt", "--run-variant", "+".join(names),
            "--"]


def run_variant(names: str, argv: list[str]) -> int:
    for name in names.split("+"):
        VARIANTS[name]()
    from desk.review.cli import main as review_main

    return int(review_main(args=argv, prog_name="desk-review") or 0)


# --------------------------------------------------------------------------- helpers

def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a live process (not its children)."""
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/stat").read_text()
        rest = text[text.rfind(")") + 2:].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK
    return None


class Poller(threading.Thread):
    """Every 50 ms: VmHWM of the measured process and of its children, and each child's CPU.

    `pid` is /usr/bin/time's when the command runs under it: the measured process is then its
    child, found on the first samples."""

    def __init__(self, pid: int, wrapped: bool) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.wrapped = wrapped
        self.target: int | None = None if wrapped else pid
        self.stop_event = threading.Event()
        self.hwm = 0
        self.child_hwm: dict[int, int] = {}
        self.child_cpu: dict[int, float] = {}
        self.child_name: dict[int, str] = {}

    def sample(self) -> None:
        if self.target is None:
            found = children(self.pid, all_threads=True)
            if not found:
                return
            self.target = found[0]
        hwm = status_kib(self.target, "VmHWM")
        if hwm is not None:
            self.hwm = max(self.hwm, hwm)
        for child in children(self.target, all_threads=True):
            if child not in self.child_name:
                with contextlib.suppress(OSError):
                    self.child_name[child] = Path(f"/proc/{child}/comm").read_text().strip()
            hwm = status_kib(child, "VmHWM")
            if hwm is not None:
                self.child_hwm[child] = max(self.child_hwm.get(child, 0), hwm)
            cpu = proc_cpu(child)
            if cpu is not None:
                self.child_cpu[child] = cpu

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            time.sleep(POLL)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


@dataclass
class Timed:
    seconds: float
    rc: int
    # ru_maxrss (KiB) from /usr/bin/time: the largest of the process and its waited-for
    # children; 0 without /usr/bin/time. (wait4's own ru_maxrss is useless here: a child
    # inherits the forking parent's high-water mark, and this benchmark process is large.)
    maxrss_kib: int
    cpu_user: float
    cpu_sys: float
    extra: dict[str, float] = field(default_factory=dict)


TIME = Path("/usr/bin/time")


def kill_group(process: subprocess.Popen[Any]) -> None:
    """Kill a child started with start_new_session=True and everything it started, and reap it.

    Children run in their own process group so that Ctrl-C or `kill` of this benchmark never
    leaves a desk-review, gpg or py-spy running after the temp dir is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
        process.wait(timeout=30)


def checked(command: list[str], env: dict[str, str] | None = None, timeout: float = 3600
            ) -> tuple[int, str, str]:
    """Run `command` to the end in its own process group: (returncode, stdout, stderr)."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        kill_group(process)
        raise
    return process.returncode, stdout, stderr


def cpu_times() -> list[int]:
    """The machine's `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def idle_share(before: list[int], after: list[int]) -> tuple[float, float]:
    """(idle + iowait, steal) as fractions of all CPU time between two cpu_times()."""
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta) or 1
    return (delta[3] + delta[4]) / total, delta[7] / total


def timed_run(command: list[str], log: Path, poll: bool = False) -> tuple[Timed, Poller | None]:
    """Run `command` under /usr/bin/time (if present), timed from just before the fork to its
    reaping; CPU from wait4 (the command and every child it waited for)."""
    rss_file = log.with_suffix(".rss")
    wrapped = TIME.exists()
    if wrapped:
        command = [str(TIME), "-f", "%M", "-o", str(rss_file), *command]
    with log.open("wb") as out:
        stat0 = cpu_times()
        t0 = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        poller = Poller(process.pid, wrapped) if poll else None
        if poller:
            poller.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - t0
            idle, steal = idle_share(stat0, cpu_times())
            process.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            kill_group(process)
            raise
        finally:
            if poller:
                poller.stop()
    maxrss = 0
    if wrapped:
        with contextlib.suppress(OSError, ValueError, IndexError):
            maxrss = int(rss_file.read_text().split()[-1])
    return Timed(seconds, process.returncode, maxrss, usage.ru_utime, usage.ru_stime,
                 {"idle": idle, "steal": steal}), poller


def fsync_seconds(path: Path) -> float:
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def run(command: list[str], env: dict[str, str] | None = None, timeout: float = 3600
        ) -> subprocess.CompletedProcess[str]:
    returncode, stdout, stderr = checked(command, env, timeout)
    if returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({returncode}):\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(command, returncode, stdout, stderr)


# --------------------------------------------------------------------------- setup

@dataclass
class Item:
    size: int
    sha256: str
    item_id: str = ""
    parts: list[Path] = field(default_factory=list)


def submit_files(data: Path, root: Path, sizes: list[int]) -> list[Item]:
    """One source per size submits one random file through the real form, in-process."""
    from desk.app import create_app
    from desk.config import load_config
    from desk.services import open_services

    config = load_config({"DESK_DATA": str(data),
                          "DESK_MAX_UPLOAD_BYTES": str(max(sizes) + 64 * MiB)})
    services = open_services(config)
    items = []
    try:
        app = create_app(config, "source", services=services)
        for size in sizes:
            browser = SourceBrowser(app.test_client())
            browser.get_codename()
            client = browser.client
            # The body goes to a file (head, random payload, tail) and is streamed from it:
            # a 4 GiB form never sits in memory.
            form = StreamedForm.build(browser.form_token(), f"bench-{size // MiB}MiB.bin",
                                      message=None, file_type="application/octet-stream")
            body = root / "body.bin"
            digest = hashlib.sha256()
            with body.open("wb") as out:
                out.write(form.head)
                left = size
                while left:
                    chunk = os.urandom(min(CHUNK, left))
                    digest.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
                out.write(form.tail)
            sha256 = digest.hexdigest()
            t0 = time.perf_counter()
            with body.open("rb") as stream:
                page = client.post("/submit", input_stream=stream,
                                   content_length=body.stat().st_size,
                                   content_type=form.content_type)
            seconds = time.perf_counter() - t0
            body.unlink()
            assert page.status_code == 200, (page.status_code, page.text[:2000])
            assert sha256 in page.text, "the response does not show the file's SHA-256"
            print(f"submitted {size} bytes through POST /submit in {seconds:.1f} s "
                  f"(in-process test client); sha256 {sha256}")
            items.append(Item(size, sha256))
    finally:
        services.engine.dispose()
    return items


@dataclass
class Setup:
    root: Path
    journalist: Keypair
    workspace: Path
    items: list[Item]

    def review(self, *args: str) -> list[str]:
        return ["--workspace", str(self.workspace), "--gnupghome", str(self.journalist.home),
                *args]


def setup(root: Path, sizes: list[int]) -> Setup:
    data = root / "desk-data"
    cli_init_desk(data)
    journalist = cli_add_journalist(data, "bench", root / "journalist" / "home", "Bench").keypair
    items = submit_files(data, root, sizes)
    bundle = root / "bundle.tar"
    t0 = time.perf_counter()
    print(run([str(DESK), "export", "--out", str(bundle), "--all"], env=desk_env(data)
              ).stdout.strip(), f"({time.perf_counter() - t0:.1f} s)")
    # Keep the disk small: the desk's copy is not needed once the bundle exists.
    shutil.rmtree(data / "store", ignore_errors=True)
    workspace = root / "workspace"
    state = Setup(root, journalist, workspace, items)
    t0 = time.perf_counter()
    print(run([str(DESK_REVIEW), *state.review("import", str(bundle))]).stdout.strip(),
          f"({time.perf_counter() - t0:.1f} s)")
    bundle.unlink()
    listing = json.loads(run([str(DESK_REVIEW), *state.review("list", "--json")]).stdout)
    for item in items:
        row = next(r for r in listing if r["sha256"] == item.sha256)
        assert row["size"] == item.size, row
        item.item_id = row["id"]
        item.parts = sorted((workspace / "objects" / item.item_id).glob("part-*"))
        assert item.parts, f"no part files for {item.item_id}"
        print(f"item {item.item_id}: {item.size} bytes, parts "
              f"{[(p.name, p.stat().st_size) for p in item.parts]}")
    return state


# --------------------------------------------------------------------------- the methods

def gpg_command(state: Setup, out: Path, part: Path) -> list[str]:
    return ["gpg", "--homedir", str(state.journalist.home), "--batch", "--decrypt", "-o",
            str(out), str(part)]


def time_open(state: Setup, item: Item, out_dir: Path, variant: str | None = None
              ) -> tuple[Timed, Path, str]:
    shutil.rmtree(out_dir, ignore_errors=True)
    os.sync()
    args = state.review("open", item.item_id, "--out", str(out_dir))
    command = variant_command(variant.split("+")) + args if variant else [str(DESK_REVIEW),
                                                                            *args]
    log = state.root / "open.log"
    timed, poller = timed_run(command, log, poll=True)
    text = log.read_text(errors="replace")
    if timed.rc != 0:
        raise RuntimeError(f"desk-review open {item.item_id} failed ({timed.rc}):\n{text}")
    sha256, path = text.strip().splitlines()[-1].split("  ", 1)
    assert poller is not None
    gpgs = [pid for pid, name in poller.child_name.items() if name == "gpg"]
    timed.extra["hwm_kib"] = poller.hwm
    timed.extra["gpg_hwm_kib"] = max((poller.child_hwm.get(p, 0) for p in gpgs), default=0)
    timed.extra["gpg_cpu"] = sum(poller.child_cpu.get(p, 0.0) for p in gpgs)
    timed.extra["gpg_children"] = len(gpgs)
    return timed, Path(path), sha256


def time_gpg(state: Setup, item: Item, out_dir: Path) -> tuple[Timed, list[Path]]:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    os.sync()
    outs, total, fsync, hwm, user, system = [], 0.0, 0.0, 0, 0.0, 0.0
    idle, steal = [], []
    for i, part in enumerate(item.parts):
        out = out_dir / f"out-{i}"
        timed, _ = timed_run(gpg_command(state, out, part), state.root / "gpg.log")
        if timed.rc != 0:
            raise RuntimeError(f"gpg --decrypt {part} failed:\n"
                               f"{(state.root / 'gpg.log').read_text(errors='replace')}")
        total += timed.seconds
        fsync += fsync_seconds(out)
        hwm = max(hwm, timed.maxrss_kib)
        user += timed.cpu_user
        system += timed.cpu_sys
        idle.append(timed.extra["idle"])
        steal.append(timed.extra["steal"])
        outs.append(out)
    return Timed(total, 0, hwm, user, system, {"fsync": fsync, "idle": statistics.mean(idle),
                                               "steal": statistics.mean(steal)}), outs


def concat_sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- profiling

def profile_open(state: Setup, item: Item, out_dir: Path, directory: Path, idle: bool) -> Path:
    """One `open` under py-spy: on-CPU samples only, or (idle) blocked threads too."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.sync()
    raw = directory / f"open-{item.size // MiB}MiB-{'idle' if idle else 'oncpu'}.txt"
    command = [str(PY_SPY), "record", "--rate", str(PROFILE_RATE), "--format", "raw",
               "--threads", *(["--idle"] if idle else []), "--output", str(raw), "--",
               str(DESK_REVIEW), *state.review("open", item.item_id, "--out", str(out_dir))]
    t0 = time.perf_counter()
    returncode, stdout, stderr = checked(command)
    seconds = time.perf_counter() - t0
    if returncode != 0:
        raise RuntimeError(f"py-spy failed:\n{stdout}\n{stderr}")
    print(f"  py-spy ({'with idle stacks' if idle else 'on-CPU samples only'}): open of "
          f"{item.size} bytes took {seconds:.2f} s under profiling "
          f"({mbps(item.size, seconds):.0f} MB/s)")
    shutil.rmtree(out_dir, ignore_errors=True)
    return raw


def _role(frames: list[str]) -> str:
    text = ";".join(frames)
    if "_read_data (" in text:
        return "stdout reader (python-gnupg _read_data -> on_data -> sink)"
    if "_copy_data (" in text:
        return "stdin copier (python-gnupg _copy_data: part file -> gpg stdin)"
    if "_read_response (" in text:
        return "stderr reader (python-gnupg _read_response)"
    return "main thread (and anything else)"


def summarise_profile(path: Path, top: int = 8) -> str:
    """Samples per thread role; for each role its deepest Python frames (self) and the
    functions it was inside of (inclusive)."""
    roles: collections.Counter[str] = collections.Counter()
    leaves: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    threads: dict[str, set[str]] = collections.defaultdict(set)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        label = next((f for f in frames if f.startswith("thread ")), "?")
        body = [f for f in frames if not f.startswith(("process ", "thread "))]
        role = _role(body)
        roles[role] += count
        threads[role].add(label)
        leaves[role][frame_text(body[-1]) if body else "?"] += count
        for name in {re.sub(r":\d+\)$", ")", frame_text(f)) for f in body}:
            inclusive[role][name] += count
    lines = [f"{path.name} ({sum(roles.values())} samples at {PROFILE_RATE}/s per thread):"]
    for role, n in roles.most_common():
        total = leaves[role].total()
        lines.append(f"  {n / PROFILE_RATE:6.2f} s  {role} ({len(threads[role])} thread(s));"
                     " deepest frame:")
        lines += [f"      {k_n / total:6.1%}  {k}" for k, k_n in leaves[role].most_common(top)]
        lines.append("    inside:")
        lines += [f"      {k_n / total:6.1%}  {k}" for k, k_n in
                  inclusive[role].most_common(top)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- reporting

def machine(tmp: Path) -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "?")
    mem = next(line.split(":", 1)[1].strip() for line in
               Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    gpg = subprocess.run(["gpg", "--version"], capture_output=True, text=True).stdout.splitlines()
    revision = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                              capture_output=True, text=True).stdout.strip()
    df = subprocess.run(["df", "-hT", str(tmp)], capture_output=True, text=True).stdout
    import gnupg  # type: ignore[import-untyped]
    return {
        "nproc": str(os.cpu_count()), "cpu": cpu, "memory": mem, "kernel": platform.release(),
        "gpg": gpg[0], "libgcrypt": gpg[1] if len(gpg) > 1 else "?",
        "python": platform.python_version(), "python-gnupg": gnupg.__version__,
        "tempdir": str(tmp), "tempdir_fs": df.splitlines()[-1] if df else "?",
        "pipe-max-size": Path("/proc/sys/fs/pipe-max-size").read_text().strip(),
        "revision": revision or "unknown", "loadavg at start": _loadavg(),
    }


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def startup_seconds(state: Setup, runs: int = 5) -> float:
    """Median wall time of `desk-review list --json` (interpreter, imports, workspace open)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run([str(DESK_REVIEW), *state.review("list", "--json")])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------- main

@contextlib.contextmanager
def temp_root(parent: Path) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="desk-bench-review-", dir=parent))
    try:
        yield root
    finally:
        for keyring in root.rglob("pubring.kbx"):
            subprocess.run(["gpgconf", "--homedir", str(keyring.parent), "--kill", "gpg-agent"],
                           capture_output=True, check=False, timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mib", default="100,4096",
                        help="comma-separated file sizes in MiB (default 100,4096)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the throwaway desk, workspace and outputs go")
    parser.add_argument("--profile-dir", type=Path,
                        help="after the timed runs, run open once per size under py-spy")
    parser.add_argument("--variants", default="",
                        help=f"also time open with these patches ({', '.join(VARIANTS)}; "
                             "join with + to combine), comma-separated")
    parser.add_argument("--variant-sizes-mib", default="",
                        help="sizes the variants run at (default: all)")
    parser.add_argument("--json", type=Path, help="write all measurements here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(s) * MiB for s in args.sizes_mib.split(",") if s.strip()]
    variants = [v for v in args.variants.split(",") if v]
    for variant in variants:
        unknown = [n for n in variant.split("+") if n not in VARIANTS]
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    variant_sizes = ({int(s) * MiB for s in args.variant_sizes_mib.split(",") if s.strip()}
                     or set(sizes))
    if args.profile_dir and not PY_SPY.exists():
        parser.error("py-spy is not installed in the venv (.venv/bin/pip install py-spy)")

    # Peak disk: during the import the desk's store, the bundle and the workspace each hold
    # every ciphertext; later the workspace and two decrypted copies of the largest file.
    need = int(max(3.05 * sum(sizes), 1.05 * sum(sizes) + 2 * max(sizes)) + 512 * MiB)
    free = shutil.disk_usage(args.tmp).free
    info = machine(args.tmp)
    print("machine:", json.dumps(info, indent=1))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"free space in {args.tmp}: {free / 2**30:.1f} GiB; this run needs about "
          f"{need / 2**30:.1f} GiB")
    if free < need:
        print("not enough free space: pass --tmp DIR with more room", file=sys.stderr)
        return 2

    with temp_root(args.tmp) as root:
        state = setup(root, sizes)
        return bench(args, info, state, variants, variant_sizes)


def bench(args: argparse.Namespace, info: dict[str, str], state: Setup, variants: list[str],
          variant_sizes: set[int]) -> int:
    root = state.root
    startup = startup_seconds(state)
    print(f"desk-review start-up (median of 5 `list --json`): {startup:.3f} s")
    # Warm-up, untimed: start the gpg-agent and bring every ciphertext into the page cache.
    smallest = min(state.items, key=lambda i: i.size)
    time_gpg(state, smallest, root / "gpg-out")
    for item in state.items:
        for part in item.parts:
            with part.open("rb") as handle:
                while handle.read(8 * MiB):
                    pass
    shutil.rmtree(root / "gpg-out", ignore_errors=True)

    results: dict[int, dict[str, list[Timed]]] = {}
    verified: dict[int, dict[str, str]] = {}
    for item in state.items:
        methods = ["open", "gpg"] + ([f"open[{v}]" for v in variants]
                                     if item.size in variant_sizes else [])
        results[item.size] = {m: [] for m in methods}
        print(f"\n{item.size} bytes ({item.size // MiB} MiB), item {item.item_id}:")
        for i in range(args.runs):
            order = methods if i % 2 == 0 else methods[::-1]
            line = []
            for method in order:
                out_dir = root / "out"
                if method == "gpg":
                    timed, outs = time_gpg(state, item, out_dir)
                    if i == 0:
                        got = concat_sha256(outs)
                        assert got == item.sha256, f"gpg output {got} != {item.sha256}"
                        verified.setdefault(item.size, {})["gpg"] = got
                    line.append(f"gpg {timed.seconds:.2f} s (+fsync {timed.extra['fsync']:.2f})")
                else:
                    variant = method[5:-1] if method.startswith("open[") else None
                    timed, path, printed = time_open(state, item, out_dir, variant)
                    assert printed == item.sha256, f"open printed {printed} != {item.sha256}"
                    if i == 0 and variant is None:
                        got = file_sha256(path)
                        assert got == item.sha256, f"open output {got} != {item.sha256}"
                        assert path.stat().st_size == item.size
                        verified.setdefault(item.size, {})["open"] = got
                    line.append(f"{method} {timed.seconds:.2f} s "
                                f"(HWM {timed.extra['hwm_kib'] / 1024:.1f} MiB)")
                results[item.size][method].append(timed)
                shutil.rmtree(out_dir, ignore_errors=True)
            print(f"  round {i + 1}: " + ", ".join(line))
        print(f"  verified: open's output and gpg's output both hash to {item.sha256}")

    info["loadavg at end"] = _loadavg()
    report(args, info, state, results, startup)

    profiles = {}
    if args.profile_dir:
        print("\nprofiling `desk-review open` (py-spy, every thread):")
        for item in state.items:
            for idle in (False, True):
                path = profile_open(state, item, root / "out", args.profile_dir, idle)
                profiles[f"{item.size}-{'idle' if idle else 'oncpu'}"] = str(path)
                print(summarise_profile(path))

    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "startup_s": startup,
            "items": [vars(i) for i in state.items], "verified": verified,
            "runs": {size: {m: [vars(t) for t in ts] for m, ts in by.items()}
                     for size, by in results.items()},
            "profiles": profiles,
        }, indent=1, default=str))
    return 0


def report(args: argparse.Namespace, info: dict[str, str], state: Setup,
           results: dict[int, dict[str, list[Timed]]], startup: float) -> None:
    med = statistics.median
    print("\n| size | open median s | open MB/s | gpg median s | gpg MB/s | ratio open/gpg | "
          "ratio open/(gpg+fsync) | desk-review peak RSS | gpg peak RSS (open's child; stock) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, by in results.items():
        o = med([t.seconds for t in by["open"]])
        g = med([t.seconds for t in by["gpg"]])
        gs = med([t.seconds + t.extra["fsync"] for t in by["gpg"]])
        hwm = max(t.extra["hwm_kib"] for t in by["open"]) / 1024
        maxrss = max(t.maxrss_kib for t in by["open"]) / 1024
        child = max(t.extra["gpg_hwm_kib"] for t in by["open"]) / 1024
        stock = max(t.maxrss_kib for t in by["gpg"]) / 1024
        print(f"| {size // MiB} MiB | {o:.2f} | {mbps(size, o):.0f} | {g:.2f} | "
              f"{mbps(size, g):.0f} | **{g / o:.2f}** | {gs / o:.2f} | {hwm:.1f} MiB "
              f"(ru_maxrss {maxrss:.1f}) | "
              f"{f'{child:.1f} MiB' if child else 'not sampled (ran < 50 ms)'}; "
              f"{stock:.1f} MiB |")
        for method in [m for m in by if m.startswith("open[")]:
            v = med([t.seconds for t in by[method]])
            vh = max(t.extra["hwm_kib"] for t in by[method]) / 1024
            print(f"| {size // MiB} MiB, {method} | {v:.2f} | {mbps(size, v):.0f} | {g:.2f} | "
                  f"{mbps(size, g):.0f} | {g / v:.2f} | {gs / v:.2f} | {vh:.1f} MiB | |")
    print("\nevery run (s), CPU (user+sys s, medians):")
    for size, by in results.items():
        for method, runs in by.items():
            cpu = med([t.cpu_user + t.cpu_sys for t in runs])
            fsyncs = ", ".join(f"{t.extra['fsync']:.2f}" for t in runs if "fsync" in t.extra)
            hwms = ", ".join(f"{t.extra['hwm_kib'] / 1024:.1f}" for t in runs
                             if "hwm_kib" in t.extra)
            text = f"  {size // MiB} MiB {method}: {', '.join(f'{t.seconds:.2f}' for t in runs)}"
            idles = ", ".join(f"{t.extra['idle']:.0%}" for t in runs)
            text += f"; machine idle during the runs {idles}"
            if method == "gpg":
                text += (f"; fsync {fsyncs}; "
                         f"CPU gpg {cpu:.2f} (user {med([t.cpu_user for t in runs]):.2f}, "
                         f"sys {med([t.cpu_sys for t in runs]):.2f})")
            else:
                gpg_cpu = med([t.extra["gpg_cpu"] for t in runs])
                o = med([t.seconds for t in runs])
                g = med([t.seconds for t in by["gpg"]])
                text += (f"; CPU desk-review + gpg {cpu:.2f} (user "
                         f"{med([t.cpu_user for t in runs]):.2f}, sys "
                         f"{med([t.cpu_sys for t in runs]):.2f}), of which gpg ~{gpg_cpu:.2f} "
                         f"(sampled); median {mbps(size, o):.0f} MB/s, ratio vs gpg "
                         f"{g / o:.2f}; HWM "
                         f"{hwms} MiB")
            print(text)
    print(f"\ndesk-review start-up (median `list --json`): {startup:.3f} s")
    for size, by in results.items():
        o = med([t.seconds for t in by["open"]]) - startup
        g = med([t.seconds for t in by["gpg"]])
        gs = med([t.seconds + t.extra["fsync"] for t in by["gpg"]])
        print(f"  {size // MiB} MiB: open minus start-up {o:.2f} s ({mbps(size, o):.0f} MB/s): "
              f"{g / o:.2f} of gpg, {gs / o:.2f} of gpg + fsync (derived, not measured alone)")
    sizes = sorted(results)
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        hs = max(t.extra["hwm_kib"] for t in results[small]["open"])
        hb = max(t.extra["hwm_kib"] for t in results[big]["open"])
        print(f"desk-review peak RSS (largest VmHWM over the runs): {big // MiB} MiB "
              f"{hb / 1024:.1f} MiB, {small // MiB} MiB {hs / 1024:.1f} MiB, difference "
              f"{(hb - hs) / 1024:+.1f} MiB")
    print(f"load average at start {info['loadavg at start']}, at end {info['loadavg at end']}")


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--run-variant" and sys.argv[3] == "--":
        sys.exit(run_variant(sys.argv[2], sys.argv[4:]))
    sys.exit(main())
