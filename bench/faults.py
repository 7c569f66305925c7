"""Fault injection, the long versions: crash cycles against a real server, then the malformed
input and full disk suites with their larger example counts.

Run by hand, never as a test:

    .venv/bin/python -m bench.faults [--cycles 10] [--uploads 20] [--seed N]
                                     [--no-crash] [--no-suites] [--json FILE]

1. Crash cycles, with the crash test's own machinery (tests/harness: `CrashableServer`,
   `CrashRun`) on a throwaway desk (`desk init`, `desk journalist add` with a stock-gpg
   keypair): --uploads sources, each in its own session, send form posts and tus uploads of
   random content (200 KiB to 3 MiB, tus in 3 to 6 PATCHes) while `desk serve source` is
   SIGKILLed, arbiter, workers and gpg at once, at a random moment 0.3 to 2.5 s in. After each
   kill: `desk doctor`, `desk doctor --repair` (which must leave nothing and remove no file a
   committed row vouches for), `desk doctor` again (must find nothing), `PRAGMA
   integrity_check`, a restart on the same data directory, HEAD of every unfinished tus upload
   (never below the acknowledged offset), every new object decrypted with stock gpg (each must
   be the whole of something sent, and everything acknowledged must be there), `desk custody
   verify`. Unfinished tus uploads resume in the next cycle; after the last one every upload is
   finished and checked once more, the server stops gracefully and `desk doctor` must find
   nothing. Cycle n uses seed --seed + n.
2. `pytest tests/assurance/bad_input` and `pytest tests/assurance/test_disk_full.py`, each in
   its own process with DESK_FAULTS_LONG=1 (they then generate more examples): outcome counts
   and wall time.

Everything (temp dir, server, gpg-agents) is removed at the end, also on failure or `kill`.
About 3 minutes for 10 crash cycles on the 2-core machine, plus the two suites. See
bench/README.md and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import common
from tests.harness.crash import CrashReport, CrashRun
from tests.harness.desks import cli_add_journalist, cli_init_desk
from tests.harness.paths import REPO
from tests.harness.servers import CrashableServer

SUITES = ("tests/assurance/bad_input", "tests/assurance/test_disk_full.py")
OUTCOME_RE = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")


@dataclass
class SuiteRun:
    """One pytest run of a fault suite."""

    path: str
    returncode: int
    seconds: float
    outcomes: dict[str, int]
    summary: str
    failures: list[str]


def crash_cycles(root: Path, cycles: int, uploads: int, seed: int) -> tuple[CrashReport, float,
                                                                          str | None]:
    """Run the crash cycles on a throwaway desk; the report, seconds, and the failure if any."""
    data = root / "data"
    cli_init_desk(data)
    journalist = cli_add_journalist(data, "alice", root / "alice-gnupg", "Alice")
    server = CrashableServer(data, root / "server.log", root / "server-tmp")
    run = CrashRun(server, journalist.keypair, uploads, say=lambda line: print(line, flush=True))
    started = time.perf_counter()
    failure = None
    try:
        run.run(cycles, seed)
    except Exception as exc:  # what the test would report, seed included
        failure = "".join(traceback.format_exception_only(exc)).strip()
    finally:
        server.kill()
    return run.report, time.perf_counter() - started, failure


def run_suite(path: str) -> SuiteRun:
    """`pytest path` with DESK_FAULTS_LONG=1; outcome counts, time and failing test ids."""
    env = {**os.environ, "DESK_FAULTS_LONG": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rfE", path], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=3 * 3600)
    seconds = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else done.stderr.strip()[-500:]
    outcomes = {kind.rstrip("s") if kind.startswith("error") else kind: int(count)
                for count, kind in OUTCOME_RE.findall(summary)}
    failures = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return SuiteRun(path, done.returncode, seconds, outcomes, summary, failures)


def show_crash(report: CrashReport, seconds: float, failure: str | None, cycles: int) -> None:
    """Print the crash cycles' figures."""
    acknowledged = report.forms_acknowledged + report.tus_completed
    print(f"crash cycles survived: {report.cycles_survived} of {cycles} "
          f"(seeds {report.seeds[0] if report.seeds else '-'}..)"
          f"{'' if failure is None else ' -- FAILED'}")
    print(f"  uploads started: {report.started}; acknowledged whole: {acknowledged} "
          f"({report.forms_acknowledged} form posts, {report.tus_completed} tus uploads, "
          f"{report.tus_resumed_after_crash} tus resumptions after a crash)")
    print(f"  objects verified with stock gpg: {report.objects_verified}, "
          f"{report.bytes_verified} bytes ({report.bytes_verified / 2**20:.1f} MiB)")
    print(f"  doctor found {sum(report.found.values())}, repaired "
          f"{sum(report.repaired.values())}: {dict(report.repaired.most_common())}")
    print(f"  refusals from a live server, retried: {dict(report.refusals) or 'none'}")
    print(f"  kills after (s): {', '.join(f'{t:.2f}' for t in report.kill_after)}; "
          f"whole uploads acknowledged before each kill: {report.acknowledged_per_cycle}")
    print(f"  {seconds:.0f} s")
    if failure is not None:
        print(failure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=10, help="crash cycles")
    parser.add_argument("--uploads", type=int, default=20, help="sources uploading at once")
    parser.add_argument("--seed", type=int, help="seed of the first cycle (default: random)")
    parser.add_argument("--no-crash", action="store_true", help="skip the crash cycles")
    parser.add_argument("--no-suites", action="store_true",
                        help="skip the bad-input and disk-full test suites")
    parser.add_argument("--json", type=Path, help="write all figures here")
    args = parser.parse_args()
    common.exit_on_sigterm()
    info = common.machine(tools=("gpg",), packages=("gunicorn", "flask", "sqlalchemy",
                                                    "hypothesis", "pytest"), sqlite=True)
    print("machine:", json.dumps(info, indent=1))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}", flush=True)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    figures: dict[str, Any] = {"machine": info, "command": sys.argv, "seed": seed}
    failed = False
    if not args.no_crash:
        with common.workspace("desk-bench-faults-") as root:
            report, seconds, failure = crash_cycles(root, args.cycles, args.uploads, seed)
        show_crash(report, seconds, failure, args.cycles)
        figures["crash"] = {**vars(report), "seconds": seconds, "failure": failure}
        failed |= failure is not None
    if not args.no_suites:
        for path in SUITES:
            suite = run_suite(path)
            print(f"{path} (DESK_FAULTS_LONG=1): {'passed' if suite.returncode == 0 else 'FAILED'}"
                  f" in {suite.seconds:.0f} s: {suite.summary}", flush=True)
            for line in suite.failures:
                print(f"  {line}")
            figures.setdefault("suites", []).append(asdict(suite))
            failed |= suite.returncode != 0
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
