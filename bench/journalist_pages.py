"""Journalist pages at scale: latency of the sources list and per-source pages.

Run by hand, never as a test:

    .venv/bin/python -m bench.journalist_pages [--sources 10000] [--submissions 100000]
                                               [--requests 200] [--profile] [--json FILE]

It makes a throwaway desk (stock-gpg keypair, `desk init`, `desk journalist add alice
--admin`), seeds the database directly with SQLAlchemy bulk inserts (sources with random
designations, submissions spread unevenly over them; the store holds no files, the pages do not
need them), starts `desk serve journalist` (gunicorn, threaded workers), logs in with requests
and times, client side, GET of the sources list (first, middle and last page) and of two
per-source pages (a typical source with ~10 items and the largest one): median, p95 and max
over --requests requests after a few warm-up ones, then the first list page with 4 concurrent
clients. Each page's content is checked once against the seeded data.

Then, in-process (Flask test client on the same database, the server idle): the SQL each page
issues, EXPLAIN QUERY PLAN of the list's queries and of the per-source query (is each index
used?), each statement's time run alone with sqlite3, and where a request's time goes (SQL,
template rendering, session load and save). If any p95 is above --slow-ms (default 300), or
with --profile, the slowest page is profiled (cProfile in-process, py-spy on the workers).

Everything (temp dir, server, gpg-agents) is removed at the end, also on failure or `kill`.
See bench/README.md and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import pstats
import random
import re
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import event, insert, select

from bench import common
from bench.common import PROFILE_RATE, cpu_seconds, summary
from desk.records.db import make_engine
from desk.records.designations import random_designation
from desk.records.models import Item, Journalist, Source
from tests.harness import servers
from tests.harness.desks import cli_add_journalist, cli_init_desk
from tests.harness.servers import Server

PAGE_SIZE = 50  # desk.journalist.views.PAGE_SIZE
PASSWORD = "bench-long-passphrase-for-alice"  # noqa: S105 - a throwaway desk
INDEXES = ("ix_sources_starred_activity", "ix_submissions_source_id_seen")
ROW_RE = re.compile(r'class="designation">([^<]+)</a></td>\s*<td>(\d+)</td><td>(\d+)</td>'
                    r"<td>([0-9-]+)</td>")
ITEM_RE = re.compile(r'name="item" value="([0-9a-f]{32})"')


# --------------------------------------------------------------------------- the desk

@dataclass
class Desk:
    root: Path
    data: Path
    totp_secret: bytes
    server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def log(self) -> Path | None:
        return self.server.log if self.server else None

    @property
    def db_path(self) -> Path:
        return self.data / "desk.db"

    def workers(self) -> list[int]:
        return self.server.worker_pids() if self.server else []


def add_journalist(desk: Desk, username: str, admin: bool = False) -> bytes:
    """`desk journalist add` with a fresh stock-gpg keypair; return the printed TOTP secret."""
    added = cli_add_journalist(desk.data, username, desk.root / "keys" / username,
                                  username.capitalize(), password=PASSWORD, admin=admin)
    assert added.totp_secret is not None
    return added.totp_secret


def make_desk(root: Path) -> Desk:
    data = root / "desk-data"
    cli_init_desk(data)
    desk = Desk(root, data, b"")
    desk.totp_secret = add_journalist(desk, "alice", admin=True)
    return desk


def start_server(desk: Desk) -> None:
    desk.server = servers.start_server(desk.data, "journalist", log=desk.root / "server.log",
                                       workers=2)


def stop_server(desk: Desk) -> None:
    if desk.server is not None:
        desk.server.stop()


# --------------------------------------------------------------------------- seeding

@dataclass
class Seeded:
    sources: dict[str, dict[str, Any]]            # id -> row
    items: dict[str, list[tuple[date, str, bool]]]  # source id -> (received_on, id, seen)
    seconds: dict[str, float] = field(default_factory=dict)

    def count(self, source_id: str) -> int:
        return len(self.items[source_id])


def item_counts(rng: random.Random, n_sources: int, n_items: int) -> list[int]:
    """Every source gets one item; a few heavy sources get hundreds; Pareto for the rest."""
    counts = [1] * n_sources
    left = n_items - n_sources
    heavy = max(1, n_sources // 500)
    for i in range(heavy):
        extra = min(left, rng.randint(200, 800))
        counts[i] += extra
        left -= extra
    weights = [0.0] * heavy + [min(rng.paretovariate(1.5), 50.0)
                               for _ in range(n_sources - heavy)]
    if left:
        for i in rng.choices(range(n_sources), weights=weights, k=left):
            counts[i] += 1
    rng.shuffle(counts)
    return counts


def seed(desk: Desk, n_sources: int, n_items: int, rng: random.Random) -> Seeded:
    """Bulk-insert sources and submissions straight into the desk's database."""
    today = datetime.now(UTC).date()
    t0 = time.perf_counter()
    designations: set[str] = set()
    while len(designations) < n_sources:
        designations.add(random_designation())
    names = sorted(designations)
    rng.shuffle(names)
    counts = item_counts(rng, n_sources, n_items)
    sources: dict[str, dict[str, Any]] = {}
    items: dict[str, list[tuple[date, str, bool]]] = {}
    submissions: list[dict[str, Any]] = []
    for name, count in zip(names, counts, strict=True):
        source_id = rng.randbytes(16).hex()
        last = today - timedelta(days=rng.randint(0, 364))
        created = last - timedelta(days=rng.randint(0, 180))
        span = (last - created).days
        sources[source_id] = {
            "id": source_id, "lookup_id": rng.randbytes(32).hex(), "designation": name,
            "created_on": created, "last_activity_on": last, "starred": rng.random() < 0.05}
        rows: list[dict[str, Any]] = []
        for i in range(count):
            received = last if i == 0 else created + timedelta(days=rng.randint(0, span))
            is_file = rng.random() < 0.4
            size = (int(min(rng.lognormvariate(13, 2.5), 4e9)) if is_file
                    else rng.randint(600, 20_000))
            row: dict[str, Any] = {"id": rng.randbytes(16).hex(), "source_id": source_id,
                   "kind": "file" if is_file else "message", "ciphertext_size": size,
                   "ciphertext_sha256": rng.randbytes(32).hex(),
                   "part_count": rng.randint(1, 3) if is_file else 1,
                   "received_on": received, "seen": rng.random() >= 0.30}
            rows.append(row)
            submissions.append(row)
        items[source_id] = [(r["received_on"], r["id"], r["seen"]) for r in rows]
    seeded = Seeded(sources, items)
    seeded.seconds["generate"] = time.perf_counter() - t0

    engine = make_engine(f"sqlite:///{desk.db_path}")  # the desk's own pragmas
    try:
        t1 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(insert(Source), list(sources.values()))
        seeded.seconds["insert_sources"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        with engine.begin() as conn:
            for start in range(0, len(submissions), 20_000):
                conn.execute(insert(Item), submissions[start:start + 20_000])
        seeded.seconds["insert_submissions"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        seeded.seconds["checkpoint"] = time.perf_counter() - t3
    finally:
        engine.dispose()
    seeded.seconds["total"] = time.perf_counter() - t0
    return seeded


def expected_order(seeded: Seeded) -> list[str]:
    """Source ids in the list's order: starred first, then last activity (newest), then id."""
    rows = sorted(seeded.sources.values(), key=lambda s: s["id"])
    rows.sort(key=lambda s: s["last_activity_on"], reverse=True)
    rows.sort(key=lambda s: s["starred"], reverse=True)
    return [s["id"] for s in rows]


# --------------------------------------------------------------------------- the client

def log_in(desk: Desk, username: str = "alice", secret: bytes | None = None
           ) -> requests.Session:
    return common.log_in(desk.url, username, PASSWORD, secret or desk.totp_secret)


@dataclass
class Page:
    name: str
    path: str
    check: Callable[[str], None]


def list_check(seeded: Seeded, order: list[str], page: int, pages: int
               ) -> Callable[[str], None]:
    def check(html: str) -> None:
        assert f"Page {page} of {pages}" in html, f"page {page}: no 'Page {page} of {pages}'"
        assert f"({len(order)})" in html, f"page {page}: total {len(order)} not shown"
        shown = ROW_RE.findall(html)
        want = order[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        assert len(shown) == len(want), f"page {page}: {len(shown)} rows, expected {len(want)}"
        for (name, n, unseen, last), source_id in zip(shown, want, strict=True):
            src = seeded.sources[source_id]
            expect = (src["designation"], str(seeded.count(source_id)),
                      str(sum(not seen for _, _, seen in seeded.items[source_id])),
                      src["last_activity_on"].isoformat())
            assert (name, n, unseen, last) == expect, f"page {page}: {(name, n, unseen, last)}" \
                                                      f" != {expect}"
    return check


def source_check(seeded: Seeded, source_id: str) -> Callable[[str], None]:
    def check(html: str) -> None:
        want = [i for _, i, _ in sorted(seeded.items[source_id])]
        shown = ITEM_RE.findall(html)
        assert shown == want, f"source {source_id}: {len(shown)} items shown, {len(want)} seeded"
    return check


def fetch(browser: requests.Session, url: str) -> tuple[float, int, str]:
    """(wall ms, status, body) of one GET, the body read to the end."""
    t0 = time.perf_counter()
    response = browser.get(url, allow_redirects=False, timeout=120)
    body = response.text
    return (time.perf_counter() - t0) * 1000, response.status_code, body


def get(browser: requests.Session, url: str) -> tuple[float, str]:
    ms, status, body = fetch(browser, url)
    assert status == 200, (url, status, body[:300])
    return ms, body


def time_page(desk: Desk, browser: requests.Session, page: Page, n: int, warmup: int
              ) -> dict[str, Any]:
    _, body = get(browser, desk.url + page.path)
    page.check(body)
    for _ in range(warmup - 1):
        get(browser, desk.url + page.path)
    workers = desk.workers()
    cpu0 = sum(cpu_seconds(p) for p in workers)
    wall0 = time.perf_counter()
    ms = [get(browser, desk.url + page.path)[0] for _ in range(n)]
    wall = time.perf_counter() - wall0
    cpu = sum(cpu_seconds(p) for p in workers) - cpu0
    return {**summary(ms), "bytes": len(body.encode()), "worker_cpu_ms": cpu / n * 1000,
            "rate": n / wall, "samples": ms}


def time_concurrent(desk: Desk, browsers: list[requests.Session], page: Page, n: int,
                    warmup: int) -> dict[str, Any]:
    """One thread per logged-in session, each on its own keep-alive connection, `n` GETs each.

    Failed requests (any status but 200) are counted, not retried; latency figures are over
    the 200s, with the failures' own latencies kept apart."""
    for browser in browsers:
        for _ in range(warmup):
            fetch(browser, desk.url + page.path)
    clients = len(browsers)
    results: list[list[tuple[float, int]]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        barrier.wait()
        try:
            for _ in range(n):
                ms, status, _ = fetch(browsers[i], desk.url + page.path)
                results[i].append((ms, status))
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    workers = desk.workers()
    cpu0 = sum(cpu_seconds(p) for p in workers)
    barrier.wait()
    wall0 = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall0
    cpu = sum(cpu_seconds(p) for p in workers) - cpu0
    if errors:
        raise errors[0]
    every = [x for r in results for x in r]
    ok = [ms for ms, status in every if status == 200]
    failed = collections.Counter(status for _, status in every if status != 200)
    failed_ms = [ms for ms, status in every if status != 200]
    return {**(summary(ok) if ok else {}), "clients": clients, "requests": len(every),
            "ok": len(ok), "failed": dict(failed),
            "failed_median_ms": statistics.median(failed_ms) if failed_ms else None,
            "rate": len(every) / wall, "worker_cpu_ms": cpu / len(every) * 1000,
            "samples": every}


def log_lines(desk: Desk, since: int) -> tuple[int, collections.Counter[str]]:
    """(new offset, count of each exception line) in the server log after `since` bytes."""
    assert desk.log is not None
    text = desk.log.read_bytes()
    found: collections.Counter[str] = collections.Counter()
    for line in text[since:].decode(errors="replace").splitlines():
        if re.match(r"^\w+(\.\w+)*(Error|Exception): ", line) or line.startswith("[SQL: "):
            found[line[:160]] += 1
    return len(text), found


def _copy_session(browser: requests.Session) -> requests.Session:
    copy = requests.Session()
    copy.cookies.update(browser.cookies)
    return copy


# --------------------------------------------------------------------------- in-process

class Probe:
    """The journalist app in this process, with its SQL, rendering and session work timed."""

    def __init__(self, desk: Desk) -> None:
        from flask import template_rendered
        from flask.signals import before_render_template

        from desk.app import create_app
        from desk.config import load_config

        self.app = create_app(load_config({"DESK_DATA": str(desk.data)}), "journalist")
        services = self.app.extensions["desk"]
        self.engine = services.engine
        self.statements: list[tuple[str, tuple[Any, ...], float]] = []
        self.render_ms = 0.0
        self.session_ms = 0.0
        self._render_t0 = 0.0
        self._stmt_t0 = 0.0

        def before(_conn: Any, _cursor: Any, *_: Any) -> None:
            self._stmt_t0 = time.perf_counter()

        def after(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            self.statements.append((statement, tuple(parameters or ()),
                                    (time.perf_counter() - self._stmt_t0) * 1000))

        event.listen(self.engine, "before_cursor_execute", before)
        event.listen(self.engine, "after_cursor_execute", after)

        def render_start(*_: Any, **__: Any) -> None:
            self._render_t0 = time.perf_counter()

        def render_end(*_: Any, **__: Any) -> None:
            self.render_ms += (time.perf_counter() - self._render_t0) * 1000

        # Signals hold weak references: keep the receivers alive on self.
        self._receivers = (render_start, render_end)
        before_render_template.connect(render_start, self.app)
        template_rendered.connect(render_end, self.app)

        interface = self.app.session_interface
        for method in ("open_session", "save_session"):
            original = getattr(interface, method)

            def timed(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.session_ms += (time.perf_counter() - t0) * 1000

            setattr(interface, method, timed)

        with services.sessions() as db:
            journalist_id = db.scalar(select(Journalist.id).where(Journalist.username == "alice"))
        self.client = self.app.test_client()
        with self.client.session_transaction() as session:
            session["journalist_id"] = journalist_id

    def request(self, path: str) -> dict[str, Any]:
        self.statements, self.render_ms, self.session_ms = [], 0.0, 0.0
        t0 = time.perf_counter()
        response = self.client.get(path)
        body = response.get_data()
        total = (time.perf_counter() - t0) * 1000
        assert response.status_code == 200, (path, response.status_code)
        return {"total": total, "sql": sum(s[2] for s in self.statements),
                "statements": len(self.statements), "render": self.render_ms,
                "session": self.session_ms, "bytes": len(body),
                "sql_text": list(self.statements)}

    def close(self) -> None:
        self.engine.dispose()


def explain(db: sqlite3.Connection, statement: str, params: tuple[Any, ...]) -> list[str]:
    rows = db.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


def time_statement(db: sqlite3.Connection, statement: str, params: tuple[Any, ...],
                   runs: int = 20) -> float:
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        db.execute(statement, params).fetchall()
        ms.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ms)


def classify(statement: str) -> str:
    s = " ".join(statement.split())
    if s.upper() in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT"):
        return s
    if "journalist_sessions" in s.split(" WHERE")[0]:
        return "session " + s.split()[0].lower()
    if "count(*)" in s and "EXISTS" in s:
        return "list: count with EXISTS"
    if "FROM sources" in s and "ORDER BY sources.starred DESC" in s:
        return "list: page query"
    if "GROUP BY submissions.source_id" in s:
        return "list: grouped counts"
    if "FROM submissions" in s and "submissions.source_id = ?" in s:
        return "source: its submissions"
    if "FROM journalists" in s:
        return "journalist (login_required)"
    if "FROM instance" in s:
        return "instance (page context)"
    if "FROM sources" in s and "sources.id = ?" in s:
        return "source: by id"
    return s[:60]


def analyse(desk: Desk, pages: list[Page], runs: int) -> dict[str, Any]:
    """Per page in-process: the statements, their plans and times alone, and a breakdown."""
    probe = Probe(desk)
    db = sqlite3.connect(f"file:{desk.db_path}?mode=ro", uri=True)
    out: dict[str, Any] = {}
    try:
        for page in pages:
            for _ in range(3):
                probe.request(page.path)
            samples = [probe.request(page.path) for _ in range(runs)]
            last = samples[-1]
            statements = []
            for i, (statement, params, _) in enumerate(last["sql_text"]):
                kind = classify(statement)
                in_request = [s["sql_text"][i][2] for s in samples
                              if len(s["sql_text"]) == len(last["sql_text"])]
                entry: dict[str, Any] = {"kind": kind, "sql": " ".join(statement.split()),
                                         "in_request_ms": statistics.median(in_request)}
                if statement.lstrip().upper().startswith("SELECT"):
                    entry["plan"] = explain(db, statement, params)
                    entry["alone_ms"] = time_statement(db, statement, params)
                    entry["uses"] = [ix for ix in INDEXES if any(ix in p for p in entry["plan"])]
                statements.append(entry)
            out[page.name] = {
                "total_ms": statistics.median(s["total"] for s in samples),
                "sql_execute_ms": statistics.median(s["sql"] for s in samples),
                "render_ms": statistics.median(s["render"] for s in samples),
                "session_ms": statistics.median(s["session"] for s in samples),
                "statements": last["statements"],
                "per_statement": statements,
            }
    finally:
        db.close()
        probe.close()
    return out


def cprofile_page(desk: Desk, page: Page, runs: int) -> str:
    probe = Probe(desk)
    try:
        for _ in range(3):
            probe.request(page.path)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(runs):
            probe.request(page.path)
        profiler.disable()
    finally:
        probe.close()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(35)
    return text.getvalue()


def pyspy_page(desk: Desk, browser: requests.Session, page: Page, n: int, out: Path
               ) -> str:
    if not common.PYSPY.exists():
        return "py-spy is not installed in the venv: skipped"
    assert desk.server is not None
    with common.pyspy(desk.server.arbiter, out, ["--threads", "--idle", "--nonblocking"]):
        for _ in range(n):
            get(browser, desk.url + page.path)
    return summarise_pyspy(out)


def summarise_pyspy(path: Path, top: int = 15) -> str:
    """Samples of request-handling threads only (stacks through Flask's wsgi_app)."""
    if not path.exists():
        return f"(no profile at {path})"
    leaves: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit() or "wsgi_app (flask/app.py" not in stack:
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        leaves[_short(frames[-1])] += count
        for name in {re.sub(r":\d+\)$", ")", _short(f)) for f in frames}:
            inclusive[name] += count
    lines = [f"{total} samples in request threads ({total / PROFILE_RATE:.2f} s); leaf frames:"]
    lines += [f"  {n / total:6.1%}  {k}" for k, n in leaves.most_common(top)]
    lines.append(" inclusive:")
    lines += [f"  {n / total:6.1%}  {k}" for k, n in inclusive.most_common(top * 2)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    return re.sub(r"\(/[^)]*/(site-packages|lib/python3\.\d+|main)/", "(", frame)


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--submissions", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--slow-ms", type=float, default=300.0,
                        help="profile the slowest page when any p95 is above this")
    parser.add_argument("--profile", action="store_true", help="profile whatever the p95")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write all measurements here")
    args = parser.parse_args()
    if args.submissions < args.sources:
        parser.error("--submissions must be at least --sources (every source gets one item)")
    common.exit_on_sigterm()
    info = common.machine(packages=("sqlalchemy", "flask", "werkzeug", "jinja2", "gunicorn",
                                    "requests"), sqlite=True)
    print("machine:", json.dumps(info, indent=1))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    with common.workspace("desk-bench-pages-") as root:
        desk = make_desk(root)
        try:
            return bench(args, info, desk)
        except BaseException:
            if desk.server is not None:
                print("---- server log ----\n" + desk.server.log_tail())
            raise
        finally:
            stop_server(desk)


def bench(args: argparse.Namespace, info: dict[str, str], desk: Desk) -> int:
    rng = random.Random(args.seed)  # noqa: S311 - made-up rows, reproducible, not secrets
    seeded = seed(desk, args.sources, args.submissions, rng)
    counts = sorted((seeded.count(s) for s in seeded.sources), reverse=True)
    starred = sum(s["starred"] for s in seeded.sources.values())
    unseen = sum(not seen for rows in seeded.items.values() for _, _, seen in rows)
    print(f"seeded {len(seeded.sources)} sources ({starred} starred) and {sum(counts)} "
          f"submissions ({unseen} unseen) in {seeded.seconds['total']:.1f} s: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in seeded.seconds.items() if k != "total"))
    print(f"items per source: max {counts[0]}, top 5 {counts[:5]}, median "
          f"{statistics.median(counts)}, mean {statistics.mean(counts):.1f}, "
          f">=100: {sum(c >= 100 for c in counts)}, 1: {sum(c == 1 for c in counts)}; "
          f"database {desk.db_path.stat().st_size / 1e6:.1f} MB")

    order = expected_order(seeded)
    n_pages = max(-(-len(order) // PAGE_SIZE), 1)
    middle = (n_pages + 1) // 2
    typical = min(seeded.sources, key=lambda s: (abs(seeded.count(s) - 10), s))
    largest = max(seeded.sources, key=lambda s: (seeded.count(s), s))
    pages = [
        Page("list page 1", "/", list_check(seeded, order, 1, n_pages)),
        Page(f"list page {middle} (middle)", f"/?page={middle}",
             list_check(seeded, order, middle, n_pages)),
        Page(f"list page {n_pages} (last)", f"/?page={n_pages}",
             list_check(seeded, order, n_pages, n_pages)),
        Page(f"source, {seeded.count(typical)} items", f"/sources/{typical}",
             source_check(seeded, typical)),
        Page(f"source, {seeded.count(largest)} items (largest)", f"/sources/{largest}",
             source_check(seeded, largest)),
    ]

    start_server(desk)
    t0 = time.perf_counter()
    browser = log_in(desk)
    print(f"logged in ({(time.perf_counter() - t0) * 1000:.0f} ms, Argon2id at production cost)")

    results: dict[str, dict[str, Any]] = {}
    print(f"\nsequential, one keep-alive connection, {args.requests} requests per page after "
          f"{args.warmup} warm-up ones (content checked against the seeded data):")
    print("| page | median ms | p95 ms | max ms | worker CPU ms/request | bytes |")
    print("|---|---|---|---|---|---|")
    for page in pages:
        r = time_page(desk, browser, page, args.requests, args.warmup)
        results[page.name] = r
        print(f"| {page.name} | {r['median']:.1f} | {r['p95']:.1f} | {r['max']:.1f} | "
              f"{r['worker_cpu_ms']:.1f} | {r['bytes']} |", flush=True)
    concurrent: dict[str, Any] = {}
    others = [f"journalist{i}" for i in range(2, args.clients + 1)]
    secrets_ = {name: add_journalist(desk, name) for name in others}
    variants = {
        f"{args.clients} clients, one login (alice's cookie in {args.clients} sessions)":
            [browser] + [_copy_session(browser) for _ in range(args.clients - 1)],
        f"{args.clients} clients, {args.clients} journalists (one login each)":
            [browser] + [log_in(desk, name, secrets_[name]) for name in others],
    }
    offset = desk.log.stat().st_size if desk.log else 0
    for label, browsers in variants.items():
        r = time_concurrent(desk, browsers, pages[0], args.requests, args.warmup)
        offset, errors = log_lines(desk, offset)
        r["server_errors"] = dict(errors)
        concurrent[label] = r
        figures = (f"median {r['median']:.1f} ms, p95 {r['p95']:.1f} ms, max {r['max']:.1f} ms"
                   if "median" in r else "no 200 at all")
        print(f"\n{label}, {pages[0].name}, {args.requests} requests each: {r['ok']} of "
              f"{r['requests']} answered 200: {figures}; {r['rate']:.1f} requests/s; worker "
              f"CPU {r['worker_cpu_ms']:.1f} ms/request")
        if r["failed"]:
            print(f"  FAILED: {r['failed']} (median {r['failed_median_ms']:.1f} ms); server "
                  "log:")
            for line, count in errors.most_common(6):
                print(f"    {count} x {line}")
        for extra in browsers[1:]:
            extra.close()

    print("\nin-process (Flask test client, same database, server idle), medians of "
          f"{min(args.requests, 50)} requests:")
    analysis = analyse(desk, pages, min(args.requests, 50))
    print("| page | total ms | SQL execute ms | render ms | session load+save ms | statements |")
    print("|---|---|---|---|---|---|")
    for name, a in analysis.items():
        print(f"| {name} | {a['total_ms']:.1f} | {a['sql_execute_ms']:.1f} | "
              f"{a['render_ms']:.1f} | {a['session_ms']:.1f} | {a['statements']} |")
    print("\nstatements (one request of each page), time alone with sqlite3 (median of 20, "
          "execute + fetchall) and query plan:")
    for name, a in analysis.items():
        sequence = [s["kind"] + (" (write)" if s["sql"].split()[0] in ("UPDATE", "INSERT",
                                                                       "DELETE") else "")
                    for s in a["per_statement"]]
        print(f"- {name}: {len(sequence)} statements: {', '.join(sequence)}")
        for s in a["per_statement"]:
            if not s["kind"].startswith(("list", "source: its")):
                continue
            used = ", ".join(s["uses"]) or "none of " + ", ".join(INDEXES)
            print(f"    {s['kind']}: {s['alone_ms']:.2f} ms alone, {s['in_request_ms']:.2f} ms "
                  f"in the request (execute only); indexes used: {used}")
            print("        SQL: " + s["sql"])
            for line in s.get("plan", []):
                print("        " + line)

    slowest = max(pages, key=lambda p: results[p.name]["p95"])
    slow = results[slowest.name]["p95"] > args.slow_ms
    profiles: dict[str, str] = {}
    if slow or args.profile:
        why = f"p95 {results[slowest.name]['p95']:.0f} ms > {args.slow_ms:.0f} ms" if slow \
            else "--profile"
        print(f"\nprofiling {slowest.name} ({why}):")
        profiles["cprofile"] = cprofile_page(desk, slowest, 20)
        print("cProfile, in-process, 20 requests:\n" + profiles["cprofile"])
        profiles["py-spy"] = pyspy_page(desk, browser, slowest, 50,
                                        desk.root / "pyspy-pages.txt")
        print("py-spy on the gunicorn workers, 50 requests (--idle, request threads only):\n"
              + profiles["py-spy"])

    browser.close()
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "args": vars(args) | {"json": str(args.json)},
            "seeding": seeded.seconds, "items_per_source_top": counts[:20],
            "pages": results, "concurrent": concurrent, "analysis": analysis,
            "profiles": profiles}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
