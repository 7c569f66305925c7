"""What a settle costs at 10,000 stored items (deploy/STORAGE.md, "Settling").

Seeds a store with N items (default 10,000), each a folder holding `meta.gpg` (1 KiB) and
`part-000000.gpg` (4 KiB) of random bytes (the settle never reads what a file holds, so no gpg
runs) into a desk made by `desk init` whose database holds a row for each item, then times,
in this process, with `desk.ops.settling.settle_desk` (the database step, then the file
times), what `desk settle` and the running desk's interval run:

- the first settle, which re-births every file and folder (a desk's first settle after an
  upgrade, or after `desk init`);
- a settle with nothing new since the last (the steady state of a quiet desk), several runs;
- a settle after 100 new items written outside the pool (a busy interval), several runs;
- the database step alone (clearing expired login values, emptying the write-ahead log),
  with a journalist's used TOTP step and failed logins to clear each time.

    .venv/bin/python -m bench.settle [--items 10000] [--runs 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import update

from crypto.custody import new_custody_key
from desk.config import Config
from desk.ops.settling import settle_database, settle_desk
from desk.records.instance import init_desk
from desk.records.models import Item, Journalist
from desk.records.sources import create_source
from desk.services import open_services
from desk.storage.store import Store
from tests.harness.desks import desk_config


def seed(config: Config, store: Store, count: int) -> None:
    """`count` items of two small files each, written as the store writes (no pool), each
    with its row, for one source."""
    services = open_services(config)
    with services.transaction() as db:
        source = create_source(db, secrets.token_hex(32), b"k")
        db.flush()
        for _ in range(count):
            item_id = secrets.token_hex(16)
            folder = store.objects / item_id
            folder.mkdir(mode=0o700)
            (folder / "meta.gpg").write_bytes(os.urandom(1024))
            (folder / "part-000000.gpg").write_bytes(os.urandom(4096))
            db.add(Item(id=item_id, source_id=source.id, kind="file", ciphertext_size=5120,
                        ciphertext_sha256="0" * 64, custody_key=new_custody_key(),
                        part_count=1, received_on=source.created_on))
    services.engine.dispose()


def timed(config: Config) -> tuple[float, int]:
    """Seconds one settle took, and how many things it re-birthed."""
    start = time.perf_counter()
    report = settle_desk(config)
    return time.perf_counter() - start, report.files.reborn


def database_step(config: Config) -> float:
    """Seconds the database step took, with an expired login value to clear."""
    services = open_services(config)
    with services.transaction() as db:
        db.execute(update(Journalist).values(totp_last_step=1, failed_logins=1))
    services.engine.dispose()
    start = time.perf_counter()
    forgotten, emptied = settle_database(config)
    elapsed = time.perf_counter() - start
    if not (forgotten and emptied):
        raise SystemExit("the database step cleared nothing or left the log: not measured")
    return elapsed


def machine() -> str:
    """The machine, in one line."""
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")
    memory = next(line.split(":", 1)[1].strip() for line in
                  Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return (f"{os.cpu_count()} CPUs ({model}), {memory} memory, kernel {platform.release()}, "
            f"Python {platform.python_version()}")


def add_journalist_row(config: Config) -> None:
    """One journalist row (no key: the database step never runs gpg)."""
    services = open_services(config)
    with services.transaction() as db:
        db.add(Journalist(username="alice", fingerprint="A" * 40,
                          created_on=datetime.now(UTC).date()))
    services.engine.dispose()


def main() -> None:
    """Seed, settle, print medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="seed here and leave it (default: a temp dir)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="desk-bench-settle-"))
    config = desk_config(root / "data")
    try:
        init_desk(config)
        add_journalist_row(config)
        store = Store(config.store_dir)
        start = time.perf_counter()
        seed(config, store, args.items)
        print(f"machine: {machine()}")
        print(f"seeded {args.items} items in {time.perf_counter() - start:.1f} s under {root}")
        first, reborn = timed(config)
        print(f"first settle: {first:.2f} s, {reborn} re-born")
        quiet = [timed(config)[0] for _ in range(args.runs)]
        print(f"nothing new: median {statistics.median(quiet):.2f} s, runs "
              + ", ".join(f"{s:.2f}" for s in quiet))
        busy = []
        for _ in range(args.runs):
            seed(config, store, 100)
            busy.append(timed(config)[0])
        print(f"100 new items: median {statistics.median(busy):.2f} s, runs "
              + ", ".join(f"{s:.2f}" for s in busy))
        step = [database_step(config) for _ in range(args.runs)]
        print(f"database step alone: median {statistics.median(step) * 1000:.1f} ms, runs "
              + ", ".join(f"{s * 1000:.1f}" for s in step))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
