"""Exporting a desk of many items while a source sends messages (review 2, finding 4).

A desk is filled with `--items` stored items through the desk's own write path
(tests/harness/bulk.py: one message encrypted once, then hard links, rows and ingest entries),
and served by `desk serve source` and `desk serve journalist` (gunicorn, the production
settings). Each run, a journalist posts "Export everything" and reads the whole bundle, while
a source posts a message every half second until the export ends. Measured: the export's
time to first byte and to the end, the journalist worker's peak RSS over its RSS before the
export (the peak is reset first through /proc/PID/clear_refs), and each message's answer and
latency.

    PYTHONPATH=$PWD .venv/bin/python -m bench.export_lock --items 20000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import requests

from bench.common import exit_on_sigterm, machine, median, status_kib, workspace
from tests.harness.bulk import fill_desk
from tests.harness.desks import PASSWORDS, add_account, desk_config, fresh_code, new_desk
from tests.harness.forms import csrf_token
from tests.harness.gpg import make_keypair
from tests.harness.http import HttpBrowser, journalist_session
from tests.harness.servers import start_server

MESSAGE_EVERY = 0.5  # seconds between a source's messages during an export
TIMEOUT = 600


def export_once(url: str, alice: requests.Session, out: Path) -> dict[str, Any]:
    """Post "Export everything" and read the bundle to the end."""
    token = csrf_token(alice.get(f"{url}/", timeout=TIMEOUT).text)
    started = time.perf_counter()
    with alice.post(f"{url}/export", data={"csrf_token": token, "scope": "all"}, stream=True,
                    timeout=TIMEOUT) as response, out.open("wb") as handle:
        first = time.perf_counter() - started
        size = 0
        for chunk in response.iter_content(1 << 20):
            handle.write(chunk)
            size += len(chunk)
    return {"status": response.status_code, "first_byte_s": first,
            "total_s": time.perf_counter() - started, "bytes": size,
            "length": int(response.headers.get("Content-Length", -1))}


def send_messages(source: HttpBrowser, token: str, stop: threading.Event,
                  answers: list[tuple[int, float]]) -> None:
    """Post a message every MESSAGE_EVERY seconds until `stop`; note each status and latency."""
    while not stop.is_set():
        started = time.perf_counter()
        sent = source.http.post(f"{source.url}/submit", timeout=TIMEOUT, files={
            "csrf_token": (None, token.encode()), "message": (None, b"during the export")})
        answers.append((sent.status_code, time.perf_counter() - started))
        stop.wait(MESSAGE_EVERY)


def reset_peak(pid: int) -> None:
    """Start the process's VmHWM again from its current RSS (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def run(items: int, runs: int) -> dict[str, Any]:
    with workspace("desk-bench-export-") as root:
        keypair = make_keypair(root / "alice", "Alice")
        desk = new_desk(desk_config(root / "data"))
        add_account(desk, "alice", keypair, can_log_in=True)
        started = time.perf_counter()
        fill_desk(desk, items)
        filled_s = time.perf_counter() - started
        data = desk.config.data_dir
        source_server = start_server(data, "source", log=root / "source.log", workers=2)
        newsroom = start_server(data, "journalist", log=root / "journalist.log", workers=2)
        results: list[dict[str, Any]] = []
        try:
            source = HttpBrowser.with_codename(source_server.url)
            token = source.form_token()
            for number in range(runs):
                alice = journalist_session(newsroom.url, "alice", PASSWORDS["alice"],
                                           fresh_code(desk, "alice"))
                workers = newsroom.worker_pids()
                before = {pid: status_kib(pid, "VmRSS") or 0 for pid in workers}
                for pid in workers:
                    reset_peak(pid)
                answers: list[tuple[int, float]] = []
                stop = threading.Event()
                sender = threading.Thread(target=send_messages,
                                          args=(source, token, stop, answers))
                sender.start()
                try:
                    result = export_once(newsroom.url, alice, root / f"bundle-{number}.tar")
                finally:
                    stop.set()
                    sender.join(TIMEOUT)
                growth = {pid: (status_kib(pid, "VmHWM") or 0) - before[pid] for pid in workers}
                latencies = [seconds for _status, seconds in answers]
                result.update({
                    "worker_rss_before_mib": max(before.values()) / 1024,
                    "worker_peak_growth_mib": max(growth.values()) / 1024,
                    "messages": len(answers),
                    "messages_not_200": sum(status != 200 for status, _ in answers),
                    "message_median_s": median(latencies) if latencies else None,
                    "message_max_s": max(latencies) if latencies else None})
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            newsroom.stop()
            source_server.stop()
            desk.engine.dispose()
    return {"items": items, "fill_s": filled_s, "runs": results,
            "machine": machine(tools=("gpg",), sqlite=True)}


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    report = run(args.items, args.runs)
    runs = report["runs"]
    print(json.dumps(report, indent=1))
    print(f"items {args.items}: export total median {median([r['total_s'] for r in runs]):.1f} s,"
          f" first byte median {median([r['first_byte_s'] for r in runs]):.1f} s, worker peak "
          f"growth median {median([r['worker_peak_growth_mib'] for r in runs]):.1f} MiB, "
          f"messages {sum(r['messages'] for r in runs)} sent, "
          f"{sum(r['messages_not_200'] for r in runs)} not 200, worst "
          f"{max((r['message_max_s'] or 0) for r in runs):.2f} s")


if __name__ == "__main__":
    main()
