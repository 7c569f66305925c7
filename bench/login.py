"""Source codename login: what a login costs, against one raw Argon2id derivation.

Run by hand, never as a test:

    .venv/bin/python -m bench.login [--sources 10000] [--rounds 15] [--clients 8]
                                    [--hang-seconds 20] [--json FILE]

It makes two throwaway desks (`desk init`, `desk journalist add` with a stock-gpg keypair). The
small one's `sources` table holds 1 row, the large one's --sources rows: all but one are
inserted straight into the table with SQLAlchemy (random ids and lookup ids, random
designations, no reply key), the last one is made by a real `POST /generate`, whose page shows
its codename. `desk serve source` (gunicorn, 2 gthread workers) runs on each desk, with this
checkout's code as it is: every derivation goes through crypto/kdf.py, one at a time per
process (two at once in one process never returned at production cost; see bench/RESULTS.md).

Each round, in an order that rotates from round to round:

    raw       one Argon2id derivation at crypto.codename.PRODUCTION_KDF in this process
              (cryptography's Argon2id, a fresh salt and a fresh seven-word input)
    wrong-1   a login with a wrong codename, 1 source
    wrong-N   a login with a wrong codename, --sources sources
    right-N   a login with the generated codename, --sources sources (two derivations)
    burst     --clients wrong logins at once, each in its own session, --sources sources:
              the wall time from their release to the last answer, each request's time,
              and each worker's peak RSS (VmHWM, reset through /proc/PID/clear_refs first)
              and CPU seconds

Every login is a fresh session: GET /login (not timed) for the cookie and the CSRF token, then
the timed POST /login on the same keep-alive connection. A wrong codename is seven random EFF
words. The desk throttles logins in memory (desk/web/throttle.py, a bucket per process and one per
session). The client keeps its own copy of the desk's bucket for each server, as if one process
took every login, and waits for enough tokens before each login or burst, so that no login
should meet a 429; each 429 is counted all the same.

After the rounds, the burst once more against the large desk's server, each request given
--hang-seconds: how many answered (all of them, unless derivations hang again), the workers' CPU
and RSS, and whether the server still answers GET / and one more login. That server is then
stopped with SIGKILL to its workers, in case some request thread never returns.

Everything (temp dir, servers, gpg-agents) is removed at the end, also on failure or `kill`.
About 2 minutes at the defaults. See bench/README.md and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from sqlalchemy import insert

from bench import common
from bench.common import cpu_seconds, median, status_kib, summary
from crypto.codename import SALT_BYTES, generate_passphrase
from crypto.kdf import PRODUCTION_KDF
from desk.records.db import make_engine
from desk.records.designations import random_designation
from desk.records.models import Source
from desk.web.throttle import Limits
from tests.harness import servers
from tests.harness.desks import cli_add_journalist, cli_init_desk
from tests.harness.forms import csrf_token
from tests.harness.http import HttpBrowser
from tests.harness.paths import REPO
from tests.harness.servers import Server

MEASUREMENTS = ("raw", "wrong-1", "wrong-N", "right-N", "burst")
# The failure notice of desk/templates/source/login.html, whatever the page's language.
WRONG_ANSWER = 'role="alert"'


# --------------------------------------------------------------------------- the desks

@dataclass
class Desk:
    """A throwaway desk with a known number of sources, one of them with a known codename."""

    name: str
    data: Path
    sources: int
    codename: str = ""
    seed_seconds: float = 0.0

    @property
    def db_path(self) -> Path:
        return self.data / "desk.db"


def make_desk(root: Path, name: str, sources: int) -> Desk:
    """`desk init`, a journalist (the source interface refuses everything without a key), and
    all but one of the sources inserted directly."""
    desk = Desk(name, root / f"{name}-data", sources)
    cli_init_desk(desk.data)
    cli_add_journalist(desk.data, "alice", root / f"{name}-keys" / "alice", "Alice")
    desk.seed_seconds = seed_sources(desk, sources - 1)
    return desk


def seed_sources(desk: Desk, count: int) -> float:
    """Insert `count` source rows straight into the desk's database; return the seconds taken."""
    t0 = time.perf_counter()
    today = datetime.now(UTC).date()
    designations: set[str] = set()
    while len(designations) < count:
        designations.add(random_designation())
    rows = [{"id": secrets.token_hex(16), "lookup_id": secrets.token_hex(32),
             "designation": name, "created_on": today, "last_activity_on": today,
             "reply_public_key": None} for name in designations]
    engine = make_engine(f"sqlite:///{desk.db_path}")  # the desk's own pragmas
    try:
        if rows:
            with engine.begin() as conn:
                conn.execute(insert(Source), rows)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return time.perf_counter() - t0


def count_sources(desk: Desk) -> int:
    with contextlib.closing(sqlite3.connect(desk.db_path)) as db:
        return int(db.execute("SELECT count(*) FROM sources").fetchone()[0])


def lookup_plan(desk: Desk) -> str:
    """SQLite's plan for the login's lookup (find_source selects the source by lookup_id)."""
    with contextlib.closing(sqlite3.connect(desk.db_path)) as db:
        rows = db.execute("EXPLAIN QUERY PLAN SELECT * FROM sources WHERE lookup_id = ?",
                          ("0" * 64,)).fetchall()
    return "; ".join(str(row[-1]) for row in rows)


def new_codename(url: str, pacer: Pacer) -> str:
    """A source made through the interface (GET /, POST /generate); its codename."""
    pacer.take(1)  # the desk may throttle /generate like a login
    with requests.Session() as http:
        return HttpBrowser(url, http).get_codename(timeout=120)


# --------------------------------------------------------------------------- the servers

def start_server(desk: Desk, root: Path, label: str) -> Server:
    """`desk serve source` on the desk's data, running this checkout's code like this process."""
    return servers.start_server(desk.data, "source", log=root / f"server-{label}.log",
                                env={"PYTHONPATH": str(REPO)}, workers=2)


def kill_server(server: Server) -> None:
    """Stop a server whose request threads may never return (Server.abandon)."""
    server.abandon()


def reset_peak_rss(pids: list[int]) -> dict[int, int]:
    """Set each process's VmHWM back to its VmRSS (/proc/PID/clear_refs); return the VmRSS."""
    rss = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        rss[pid] = status_kib(pid, "VmRSS") or 0
    return rss


def peak_rss(pids: list[int]) -> dict[int, int]:
    return {pid: status_kib(pid, "VmHWM") or 0 for pid in pids}


# --------------------------------------------------------------------------- the client

class Pacer:
    """The client's copy of the desk's login bucket (desk.throttle.Limits) for one server, as if
    one process took every login; `take(n)` waits until n tokens are there."""

    def __init__(self) -> None:
        limits = Limits()
        self.capacity = limits.desk_capacity
        self.rate = limits.desk_per_second
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.waited = 0.0

    def take(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < n:
            wait = (n - self.tokens) / self.rate
            time.sleep(wait)
            self.waited += wait
            self.tokens, self.updated = float(n), time.monotonic()
        self.tokens -= n


@dataclass
class Answer:
    ms: float
    status: int | None  # None: no answer within the timeout
    location: str = ""
    body: str = ""


@dataclass
class LoginForm:
    """A fresh session that has fetched the login form: its connection and CSRF token."""

    url: str
    browser: requests.Session
    token: str

    def post(self, codename: str, timeout: float) -> Answer:
        """The timed POST /login; a read timeout gives an Answer with no status."""
        t0 = time.perf_counter()
        try:
            response = self.browser.post(
                self.url + "/login", data={"csrf_token": self.token, "codename": codename},
                allow_redirects=False, timeout=timeout)
            body = response.text
        except requests.Timeout:
            return Answer((time.perf_counter() - t0) * 1000, None)
        finally:
            self.browser.close()
        return Answer((time.perf_counter() - t0) * 1000, response.status_code,
                      response.headers.get("Location", ""), body)


def open_form(url: str) -> LoginForm:
    browser = requests.Session()
    page = browser.get(url + "/login", timeout=60)
    assert page.status_code == 200, (page.status_code, page.text[:300])
    return LoginForm(url, browser, csrf_token(page.text))


def wrong_codename() -> str:
    return generate_passphrase(7)


@dataclass
class Tally:
    """Every login's status, by measurement."""

    statuses: dict[str, dict[str, int]] = field(default_factory=dict)

    def check(self, name: str, answer: Answer, right: bool) -> None:
        """Count the answer; fail the run on anything but the expected page or a 429."""
        key = str(answer.status)
        counts = self.statuses.setdefault(name, {})
        counts[key] = counts.get(key, 0) + 1
        if answer.status in (None, 429):
            return
        if right:
            assert answer.status == 302, f"{name}: right codename answered {answer.status}"
            assert answer.location.endswith("/submit"), f"{name}: redirected to {answer.location}"
        else:
            assert answer.status == 401, f"{name}: wrong codename answered {answer.status}"
            assert WRONG_ANSWER in answer.body, f"{name}: {answer.body[:300]}"

    def count(self, status: int | None) -> int:
        return sum(c.get(str(status), 0) for c in self.statuses.values())


def login_once(url: str, codename: str, pacer: Pacer, tally: Tally, name: str, right: bool
               ) -> float:
    """One login in a fresh session; the POST's milliseconds."""
    form = open_form(url)
    pacer.take(1)
    answer = form.post(codename, timeout=120)
    if answer.status is None:
        raise RuntimeError(f"{name}: no answer to POST /login in 120 s")
    tally.check(name, answer, right)
    return answer.ms


@dataclass
class Burst:
    wall_ms: float
    answers: list[Answer]
    rss_before_kib: dict[int, int]  # worker -> VmRSS at the release
    peak_rss_kib: dict[int, int]    # worker -> VmHWM from the release to the last answer
    cpu_s: dict[int, float]         # worker -> CPU seconds over the same time


def burst(server: Server, clients: int, pacer: Pacer, timeout: float) -> Burst:
    """`clients` wrong logins released at once, each in a session of its own; what each worker
    did meanwhile."""
    forms = [open_form(server.url) for _ in range(clients)]
    codenames = [wrong_codename() for _ in range(clients)]
    answers: list[Answer | None] = [None] * clients
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        barrier.wait()
        try:
            answers[i] = forms[i].post(codenames[i], timeout)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    workers = server.worker_pids()
    pacer.take(clients)
    before = reset_peak_rss(workers)
    cpu0 = {pid: cpu_seconds(pid) for pid in workers}
    barrier.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = (time.perf_counter() - t0) * 1000
    if errors:
        raise errors[0]
    return Burst(wall, [a for a in answers if a is not None], before, peak_rss(workers),
                 {pid: cpu_seconds(pid) - cpu0[pid] for pid in workers})


def raw_derivation() -> float:
    """One Argon2id derivation at the production parameters, here; milliseconds."""
    kdf = Argon2id(salt=os.urandom(SALT_BYTES), length=32,
                   iterations=PRODUCTION_KDF.iterations, lanes=PRODUCTION_KDF.lanes,
                   memory_cost=PRODUCTION_KDF.memory_cost)
    secret = generate_passphrase(7).encode()
    t0 = time.perf_counter()
    kdf.derive(secret)
    return (time.perf_counter() - t0) * 1000


def idle_share() -> tuple[int, int]:
    """(idle + iowait, total) jiffies of all CPUs so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


# --------------------------------------------------------------------------- the rounds

@dataclass
class Rounds:
    """Per round, each measurement's figure (ms; a burst's is its wall time)."""

    rows: list[dict[str, float]] = field(default_factory=list)
    burst_requests: list[list[float]] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)

    def values(self, name: str) -> list[float]:
        return [row[name] for row in self.rows]

    def ratio(self, name: str, to: str = "raw") -> float:
        """The median over rounds of name / to within each round."""
        return median([row[name] / row[to] for row in self.rows])


def run_rounds(args: argparse.Namespace, small: Server, large: Server,
               desks: dict[str, Desk], pacers: dict[str, Pacer], tally: Tally) -> Rounds:
    rounds = Rounds()
    steps: dict[str, Any] = {
        "raw": raw_derivation,
        "wrong-1": lambda: login_once(small.url, wrong_codename(), pacers["small"], tally,
                                      "wrong-1", right=False),
        "wrong-N": lambda: login_once(large.url, wrong_codename(), pacers["large"], tally,
                                      "wrong-N", right=False),
        "right-N": lambda: login_once(large.url, desks["large"].codename, pacers["large"],
                                      tally, "right-N", right=True),
    }
    for number in range(-1, args.rounds):  # round -1 warms up and is not kept
        shift = number % len(MEASUREMENTS)
        row: dict[str, float] = {}
        for name in MEASUREMENTS[shift:] + MEASUREMENTS[:shift]:
            if name != "burst":
                row[name] = steps[name]()
                continue
            result = burst(large, args.clients, pacers["large"], 120)
            for answer in result.answers:
                if answer.status is None:  # derivations hang again (bench/RESULTS.md)
                    raise RuntimeError("burst: a login did not answer in 120 s")
                tally.check("burst", answer, right=False)
            row["burst"] = result.wall_ms
            if number >= 0:
                rounds.bursts.append(result)
        if number < 0:
            continue
        rounds.rows.append(row)
        print(f"round {number + 1:2}/{args.rounds}: " + ", ".join(
            f"{name} {row[name]:.0f}" for name in MEASUREMENTS) + " ms", flush=True)
    return rounds


def probe_as_is(server: Server, clients: int, pacer: Pacer, hang_seconds: float
                ) -> dict[str, Any]:
    """The burst once more, each login given `hang_seconds`; what answered, what the workers
    did, and whether the server still answers."""
    workers = server.worker_pids()
    result = burst(server, clients, pacer, hang_seconds)
    answered = [a for a in result.answers if a.status is not None]
    cpu1 = {pid: cpu_seconds(pid) for pid in workers}
    time.sleep(2)
    cpu2 = {pid: cpu_seconds(pid) for pid in workers}
    threads = {pid: len(list(Path(f"/proc/{pid}/task").iterdir())) for pid in workers}
    rss = {pid: status_kib(pid, "VmRSS") or 0 for pid in workers}
    after: dict[str, str] = {}
    try:
        after["GET /"] = str(requests.get(server.url + "/", timeout=10).status_code)
    except requests.Timeout:
        after["GET /"] = "no answer in 10 s"
    form = open_form(server.url)
    pacer.take(1)
    answer = form.post(wrong_codename(), timeout=hang_seconds)
    after["one more wrong login"] = (str(answer.status) if answer.status is not None
                                     else f"no answer in {hang_seconds:.0f} s")
    return {"clients": clients, "wall_ms": result.wall_ms, "answered": len(answered),
            "answered_ms": [a.ms for a in answered],
            "statuses": [a.status for a in result.answers],
            "rss_before_kib": result.rss_before_kib, "peak_rss_kib": result.peak_rss_kib,
            "rss_after_kib": rss, "threads": threads, "worker_cpu_s_during": result.cpu_s,
            "worker_cpu_s_2s_after": {p: cpu2[p] - cpu1[p] for p in workers}, "after": after}


# --------------------------------------------------------------------------- report

def mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def report(args: argparse.Namespace, rounds: Rounds, probe: dict[str, Any]) -> dict[str, Any]:
    print(f"\n{args.rounds} rounds, medians (ms); ratios: of the medians, and the median of the "
          "same-round ratios")
    print("| measurement | median ms | p95 | min | max | / raw (medians) | / raw (per round) |")
    print("|---|---|---|---|---|---|---|")
    raw = median(rounds.values("raw"))
    figures: dict[str, Any] = {}
    for name in MEASUREMENTS:
        s = summary(rounds.values(name))
        figures[name] = s | {"ratio_to_raw": s["median"] / raw,
                             "round_ratio_to_raw": rounds.ratio(name)}
        label = f"burst of {args.clients}, wall" if name == "burst" else name
        print(f"| {label} | {s['median']:.0f} | {s['p95']:.0f} | {s['min']:.0f} | "
              f"{s['max']:.0f} | {s['median'] / raw:.2f} | {rounds.ratio(name):.2f} |")
    each = [a.ms for b in rounds.bursts for a in b.answers]
    s = summary(each)
    figures["burst-request"] = s | {"ratio_to_raw": s["median"] / raw}
    print(f"| burst, each request ({len(each)}) | {s['median']:.0f} | {s['p95']:.0f} | "
          f"{s['min']:.0f} | {s['max']:.0f} | {s['median'] / raw:.2f} | |")
    figures["wrong-N/wrong-1"] = {"medians": median(rounds.values("wrong-N"))
                                  / median(rounds.values("wrong-1")),
                                  "per_round": rounds.ratio("wrong-N", "wrong-1")}
    figures["right-N/wrong-N"] = {"medians": median(rounds.values("right-N"))
                                  / median(rounds.values("wrong-N")),
                                  "per_round": rounds.ratio("right-N", "wrong-N")}
    print(f"wrong-N / wrong-1: {figures['wrong-N/wrong-1']['medians']:.3f} (medians), "
          f"{figures['wrong-N/wrong-1']['per_round']:.3f} (per round); right-N / wrong-N: "
          f"{figures['right-N/wrong-N']['medians']:.2f} (medians), "
          f"{figures['right-N/wrong-N']['per_round']:.2f} (per round)")

    before = [kib for b in rounds.bursts for kib in b.rss_before_kib.values()]
    peaks = [kib for b in rounds.bursts for kib in b.peak_rss_kib.values()]
    rises = [b.peak_rss_kib[p] - b.rss_before_kib[p] for b in rounds.bursts
             for p in b.peak_rss_kib]
    totals = [sum(b.peak_rss_kib.values()) for b in rounds.bursts]
    # The busier worker's share of the burst's worker CPU: 0.5 is an even split.
    shares = [max(b.cpu_s.values()) / max(1e-9, sum(b.cpu_s.values())) for b in rounds.bursts]
    figures["burst_rss_kib"] = {"worker_before_median": median(before),
                                "worker_peak_median": median(peaks), "worker_peak_max": max(peaks),
                                "worker_rise_max": max(rises), "workers_peak_sum_max": max(totals)}
    figures["burst_busier_worker_cpu_share"] = shares
    print(f"\nburst, {args.sources} sources: worker VmRSS before {mib(median(before))} (median); "
          f"worker peak RSS {mib(median(peaks))} median, {mib(max(peaks))} max (rise at most "
          f"{mib(max(rises))}); both workers' peaks summed, at most {mib(max(totals))}; "
          f"busier worker's share of the worker CPU: median {median(shares):.2f}, "
          f"{min(shares):.2f} to {max(shares):.2f}; worker CPU per burst median "
          f"{median([sum(b.cpu_s.values()) for b in rounds.bursts]):.2f} s")

    print(f"\nafter the rounds, {probe['clients']} wrong logins at once, "
          f"{args.hang_seconds:.0f} s each: {probe['answered']} of {probe['clients']} answered "
          f"(statuses {probe['statuses']}), wall {probe['wall_ms'] / 1000:.1f} s")
    for pid in probe["peak_rss_kib"]:
        print(f"  worker {pid}: VmRSS {mib(probe['rss_before_kib'][pid])} before, peak "
              f"{mib(probe['peak_rss_kib'][pid])}, {mib(probe['rss_after_kib'][pid])} after; "
              f"CPU {probe['worker_cpu_s_during'][pid]:.2f} s during, "
              f"{probe['worker_cpu_s_2s_after'][pid]:.2f} s in the 2 s after; "
              f"{probe['threads'][pid]} threads")
    print("  then: " + "; ".join(f"{k}: {v}" for k, v in probe["after"].items()))
    return figures


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=10_000, help="sources in the large desk")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--clients", type=int, default=8, help="wrong logins in a burst")
    parser.add_argument("--hang-seconds", type=float, default=20.0,
                        help="how long each login of the burst against the server as it is "
                             "may take")
    parser.add_argument("--json", type=Path, help="write all measurements here")
    args = parser.parse_args()
    if args.sources < 2:
        parser.error("--sources must be at least 2")
    common.exit_on_sigterm()
    info = common.machine(packages=("cryptography", "flask", "gunicorn", "sqlalchemy",
                                    "requests"), sqlite=True)
    info["openssl"] = subprocess.run(
        [sys.executable, "-c", "from cryptography.hazmat.backends.openssl import backend; "
         "print(backend.openssl_version_text())"], capture_output=True, text=True).stdout.strip()
    print("machine:", json.dumps(info, indent=1))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    started = time.perf_counter()
    servers: dict[str, Server] = {}
    with common.workspace("desk-bench-login-") as root:
        try:
            return bench(args, info, root, servers, started)
        except BaseException:
            for label, server in servers.items():
                print(f"---- {label} server log ----\n" + server.log_tail())
            raise
        finally:
            for server in servers.values():
                kill_server(server)


def bench(args: argparse.Namespace, info: dict[str, str], root: Path,
          servers: dict[str, Server], started: float) -> int:
    desks = {"small": make_desk(root, "small", 1), "large": make_desk(root, "large", args.sources)}
    print(f"seeded {args.sources - 1} sources in {desks['large'].seed_seconds:.2f} s")
    servers["small"] = start_server(desks["small"], root, "small")
    servers["large"] = start_server(desks["large"], root, "large")
    pacers = {name: Pacer() for name in servers}
    for name, desk in desks.items():
        desk.codename = new_codename(servers[name].url, pacers[name])
        count = count_sources(desk)
        assert count == desk.sources, f"{name}: {count} sources, expected {desk.sources}"
    plan = lookup_plan(desks["large"])
    print(f"sources: {desks['small'].sources} and {desks['large'].sources}; "
          f"setup {time.perf_counter() - started:.0f} s; lookup plan: {plan}", flush=True)

    tally = Tally()
    idle0 = idle_share()
    t0 = time.perf_counter()
    rounds = run_rounds(args, servers["small"], servers["large"], desks, pacers, tally)
    rounds_seconds = time.perf_counter() - t0
    idle1 = idle_share()
    idle = (idle1[0] - idle0[0]) / max(1, idle1[1] - idle0[1])
    probe = probe_as_is(servers["large"], args.clients, pacers["large"], args.hang_seconds)
    kill_server(servers.pop("large"))

    figures = report(args, rounds, probe)
    waited = sum(p.waited for p in pacers.values())
    print(f"\nrounds took {rounds_seconds:.0f} s (machine idle {idle:.0%}, this run's own load "
          f"included), {waited:.0f} s of it waiting for the throttle's tokens; 429s: "
          f"{tally.count(429)}; statuses: {json.dumps(tally.statuses)}")
    revision = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                              capture_output=True, text=True).stdout.strip()
    print(f"whole run {time.perf_counter() - started:.0f} s; checkout at the end: {revision}")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "args": vars(args) | {"json": str(args.json)},
            "lookup_plan": plan, "figures": figures, "rounds": rounds.rows,
            "bursts": [asdict(b) for b in rounds.bursts], "as_is_burst": probe,
            "statuses": tally.statuses, "throttle_wait_s": waited,
            "rounds_seconds": rounds_seconds, "idle_share": idle}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
