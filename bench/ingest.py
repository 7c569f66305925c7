"""Form upload ingest benchmark: the desk against stock gpg and a SecureDrop-style pipeline.

Run by hand, never as a test:

    .venv/bin/python -m bench.ingest [--size-mib 512] [--runs 3] [--sendfile]
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
import http.client
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import common
from bench.common import CHUNK, Monitor, Run, mbps, median, proc_stat
from tests.harness.data import MiB
from tests.harness.desks import cli_add_journalist, cli_init_desk
from tests.harness.forms import StreamedForm
from tests.harness.gpg import Keypair
from tests.harness.http import open_source_session
from tests.harness.servers import Server, start_server

# --------------------------------------------------------------------------- the server


@dataclass
class Desk:
    root: Path
    data: Path
    server: Server
    server_tmp: Path
    journalist: Keypair

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def log(self) -> Path:
        return self.server.log

    @property
    def arbiter(self) -> int:
        return self.server.arbiter

    @property
    def fingerprint(self) -> str:
        return self.journalist.fingerprint

    def workers(self) -> list[int]:
        return self.server.worker_pids()

    @property
    def gnupg_home(self) -> Path:
        return self.data / "gnupg"

    @property
    def objects(self) -> Path:
        return self.data / "store" / "objects"


def start_desk(root: Path, max_upload: int) -> Desk:
    """A throwaway desk (stock-gpg keypair, `desk init`, `desk journalist add bench`) and
    `desk serve source` with its temp files in a dir of their own."""
    data = root / "desk-data"
    cli_init_desk(data)
    journalist = cli_add_journalist(data, "bench", root / "journalist" / "home", "Bench")
    server_tmp = root / "server-tmp"
    server = start_server(data, "source", log=root / "server.log", tmpdir=server_tmp,
                          env={"DESK_MAX_UPLOAD_BYTES": str(max_upload)}, workers=2)
    return Desk(root, data, server, server_tmp, journalist.keypair)


def stop_desk(desk: Desk) -> None:
    desk.server.stop()


# --------------------------------------------------------------------------- the methods

def run_baseline_a(desk: Desk, file: Path, out: Path) -> Run:
    return common.run_baseline_a(desk.gnupg_home, desk.fingerprint, file, out)


def run_baseline_b(desk: Desk, file: Path, out: Path) -> Run:
    return common.run_baseline_b(desk.gnupg_home, desk.fingerprint, file, out)


def source_session(desk: Desk) -> tuple[str, str]:
    """Walk a source through /, /generate and /submit; return (Cookie header, CSRF token)."""
    session = open_source_session(desk.url, timeout=60)
    return session.cookie, session.token


def upload(desk: Desk, file: Path, size: int, sha256: str, monitor: Monitor,
           use_sendfile: bool = False) -> Run:
    """One multipart POST of `file`, timed from the first byte sent to the response read."""
    cookie, token = source_session(desk)
    form = StreamedForm.build(token, "bench.bin", message=None,
                              file_type="application/octet-stream")
    head, tail = form.head, form.tail
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
            conn.putheader("Content-Type", form.content_type)
            conn.putheader("Content-Length", str(form.length(size)))
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
                   out_dir: Path) -> dict[str, Path]:
    """One upload per py-spy mode; raw collapsed stacks of every gunicorn process."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    # py-spy pauses the target to sample unless --nonblocking; --native needs the pauses.
    modes = {"all": ["--threads", "--idle", "--nonblocking"],
             "gil": ["--threads", "--gil", "--nonblocking"],
             "native": ["--threads", "--native"]}
    for name, flags in modes.items():
        path = out_dir / f"pyspy-{name}.txt"
        with common.pyspy(desk.arbiter, path, flags) as said:
            run = upload(desk, file, size, sha256, monitor)
        print(f"  py-spy {name}: upload {run.seconds:.2f} s ({mbps(size, run.seconds):.0f} MB/s)"
              f" under profiling; {said}")
        results[name] = path
    return results


def _role(label: str, frames: list[str]) -> str:
    if "(_copy_data)" in label:
        return "copy thread (python-gnupg _copy_data: body -> gpg stdin)"
    if "(_read_data)" in label or "(_read_response)" in label:
        return "gpg stdout/stderr readers"
    if any(f.startswith("submit (desk/web/source/views.py") for f in frames):
        return "request thread (view submit)"
    return "other (idle pools, arbiter, other requests)"


def summarise_profile(path: Path, top: int = 10) -> str:
    """Where the upload's threads spent their samples, from py-spy raw output (by role)."""
    return common.summarise_profile(path, _role, top)


# --------------------------------------------------------------------------- main

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
    common.exit_on_sigterm()
    size = args.size_mib * MiB
    info = common.machine(tools=("gpg", "gzip"))
    print("machine:", json.dumps(info, indent=1))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")

    with common.workspace("desk-bench-") as root:
        file = root / "random.bin"
        t0 = time.perf_counter()
        sha256 = common.write_random(file, size)
        print(f"wrote {size} random bytes in {time.perf_counter() - t0:.1f} s; sha256 {sha256}")
        desk = start_desk(root, max_upload=size + 64 * MiB)
        monitor = Monitor(desk.arbiter)
        try:
            return bench(args, info, root, desk, monitor, file, size, sha256)
        except BaseException:
            print("---- server log ----\n" + desk.server.log_tail())
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
    b_file, b_size, probe_run, projected = common.choose_b_input(
        desk.gnupg_home, desk.fingerprint, file, size, root)
    probe_size = min(size, 32 * MiB)
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
            got, n, cipher = common.decrypt_sha256(desk.journalist, out)
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
            got, n, cipher = common.decrypt_sha256(desk.journalist, parts[0])
            assert (got, n) == (sha256, size), "the stored part does not decrypt to the file"
            verified["desk"] = cipher
            record = json.loads(desk.journalist.decrypt(obj / "meta.gpg"))
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
        if not common.PYSPY.exists():
            print("py-spy is not installed in the venv: skipping profiling")
        else:
            print("\nprofiling (py-spy, every gunicorn process):")
            profiles = profile_upload(desk, file, size, sha256, monitor, args.profile_dir)
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
