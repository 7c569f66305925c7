"""A burst of new codenames and logins against a real server: how long pages wait meanwhile.

Run by hand, never as a test:

    .venv/bin/python -m bench.burst [--generations 60] [--logins 60] [--upload-mib 64]

It makes a throwaway desk (one journalist who can log in) and runs `desk serve source` and
`desk serve journalist` as production runs them (gunicorn, the settings of desk/ops/serve.py,
production Argon2id). While --generations POST /generate and --logins POST /login (wrong
codenames, each its own session) are released at once, one source uploads --upload-mib MiB by
the form, and two clients load pages in a loop: the source landing page and the journalist's
sources page. It prints the answers the burst got (200, 401, 429) and each page's worst and
median wait during the burst, the upload's time, and the machine's load average before and
after the burst (the machine may be shared: a high load says the figures were taken on a busy
machine).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import machine, median
from tests.harness.desks import PASSWORDS, add_account, desk_config, fresh_code, new_desk
from tests.harness.forms import csrf_token
from tests.harness.gpg import make_keypair
from tests.harness.http import HttpBrowser, journalist_session
from tests.harness.servers import start_server

TIMEOUT = 120


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generations", type=int, default=60)
    parser.add_argument("--logins", type=int, default=60)
    parser.add_argument("--upload-mib", type=int, default=64)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as root_text:
        root = Path(root_text)
        services = new_desk(desk_config(root / "data"))
        add_account(services, "alice", make_keypair(root / "alice", "Alice"), can_log_in=True)
        source = start_server(root / "data", "source", log=root / "source.log", workers=2)
        newsroom = start_server(root / "data", "journalist", log=root / "journalist.log",
                                workers=2)
        try:
            run(args, source.url, newsroom.url, services)
        finally:
            source.stop()
            newsroom.stop()
            services.engine.dispose()


def run(args: argparse.Namespace, source_url: str, newsroom_url: str, services: object) -> None:
    from desk.services import Services

    assert isinstance(services, Services)
    alice = journalist_session(newsroom_url, "alice", PASSWORDS["alice"],
                               fresh_code(services, "alice"))
    uploader = HttpBrowser(source_url)
    uploader.get_codename()
    token = uploader.form_token()
    # Sessions and forms ready before the release, so the burst is only the timed POSTs.
    ready: list[tuple[str, requests.Session, dict[str, str]]] = []
    for _ in range(args.generations):
        http = requests.Session()
        ready.append(("/generate", http, {
            "csrf_token": csrf_token(http.get(source_url + "/", timeout=TIMEOUT).text)}))
    for _ in range(args.logins):
        http = requests.Session()
        ready.append(("/login", http, {
            "csrf_token": csrf_token(http.get(source_url + "/login", timeout=TIMEOUT).text),
            "codename": "seven words that are not any codename here"}))
    waits: dict[str, list[float]] = {"source /": [], "journalist /": []}
    stop = threading.Event()

    def pages(label: str, http: requests.Session, url: str) -> None:
        while not stop.is_set():
            started = time.monotonic()
            assert http.get(url, timeout=TIMEOUT).status_code == 200
            waits[label].append(time.monotonic() - started)
            time.sleep(0.1)

    def upload() -> float:
        started = time.monotonic()
        answer = uploader.http.post(source_url + "/submit", files={
            "csrf_token": (None, token.encode()),
            "files": ("f.bin", os.urandom(args.upload_mib << 20))}, timeout=600)
        assert answer.status_code == 200, answer.status_code
        return time.monotonic() - started

    def fire(job: tuple[str, requests.Session, dict[str, str]]) -> tuple[int, float]:
        path, http, form = job
        started = time.monotonic()
        status = http.post(source_url + path, data=form, timeout=TIMEOUT,
                           allow_redirects=False).status_code
        return status, time.monotonic() - started

    watchers = [threading.Thread(target=pages, args=("source /", requests.Session(),
                                                     source_url + "/")),
                threading.Thread(target=pages, args=("journalist /", alice, newsroom_url + "/"))]
    for watcher in watchers:
        watcher.start()
    load_before = load_average()
    with ThreadPoolExecutor(max_workers=1) as side:
        uploading = side.submit(upload)
        time.sleep(0.5)
        for label in waits:
            waits[label].clear()
        with ThreadPoolExecutor(max_workers=len(ready)) as pool:
            started = time.monotonic()
            answers = list(pool.map(fire, ready))
            wall = time.monotonic() - started
        load_after = load_average()
        stop.set()
        upload_seconds = uploading.result()
    for watcher in watchers:
        watcher.join()
    statuses = [status for status, _ in answers]
    print(f"burst: {len(ready)} requests in {wall:.2f} s; "
          + ", ".join(f"{code}: {statuses.count(code)}" for code in sorted(set(statuses))))
    for code in sorted(set(statuses)):
        took = [t for s, t in answers if s == code]
        print(f"  {code}: median {median(took):.3f} s, worst {max(took):.3f} s")
    for label, seen in waits.items():
        print(f"page {label}: {len(seen)} loads during the burst, median {median(seen):.3f} s,"
              f" worst {max(seen):.3f} s")
    print(f"upload of {args.upload_mib} MiB: {upload_seconds:.2f} s")
    print(f"load average (1 min): {load_before} before the burst, {load_after} after it")


def load_average() -> str:
    """The machine's 1-minute load average."""
    return Path("/proc/loadavg").read_text().split()[0]


if __name__ == "__main__":
    main()
