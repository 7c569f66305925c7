"""What emptying the WAL after a deletion costs: a delete's commit alone, against the same
commit followed by `PRAGMA wal_checkpoint(TRUNCATE)`, on a desk database with --sources rows.

Run by hand, never as a test:

    .venv/bin/python -m bench.deletion [--sources 2000] [--rounds 200]

Each round deletes one source row (with secure_delete, synchronous=FULL, as the desk does),
alternately with and without the checkpoint, and times it; medians and p95 in ms.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from datetime import date
from pathlib import Path

from sqlalchemy import delete

from bench.common import median, percentile
from desk.records.db import make_engine, make_sessionmaker, scrub_journal
from desk.records.migrations import upgrade
from desk.records.models import Source


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        engine = make_engine(f"sqlite:///{Path(root) / 'desk.db'}")
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        ids = [secrets.token_hex(16) for _ in range(args.sources)]
        today = date.today()
        with sessions() as db:
            for sid in ids:
                db.add(Source(id=sid, lookup_id=secrets.token_hex(32),
                              designation=secrets.token_hex(8), created_on=today,
                              last_activity_on=today, reply_public_key=os.urandom(1216)))
            db.commit()
        times: dict[bool, list[float]] = {False: [], True: []}
        for round_ in range(min(args.rounds, len(ids))):
            scrub = bool(round_ % 2)
            started = time.perf_counter()
            with sessions() as db:
                db.execute(delete(Source).where(Source.id == ids[round_]))
                db.commit()
            if scrub:
                assert scrub_journal(engine)
            times[scrub].append((time.perf_counter() - started) * 1000)
        for scrub, label in ((False, "delete + commit"), (True, "delete + commit + TRUNCATE")):
            print(f"{label}: median {median(times[scrub]):.2f} ms, "
                  f"p95 {percentile(times[scrub], 95):.2f} ms, n={len(times[scrub])}")
        engine.dispose()


if __name__ == "__main__":
    main()
