"""What a settle costs at 10,000 stored items (deploy/STORAGE.md, "Settling").

Seeds a store with N items (default 10,000), each a folder holding `meta.gpg` (1 KiB) and
`part-000000.gpg` (4 KiB) of random bytes (the settle never reads what a file holds, so no gpg
runs), then times, in this process, with `desk.storage.settle.settle`:

- the first settle, which re-births every file and folder (a desk's first settle after an
  upgrade, or after `desk init`);
- a settle with nothing new since the last (the steady state of a quiet desk), several runs;
- a settle after 100 new items written outside the pool (a busy interval), several runs.

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
from pathlib import Path

from crypto.names import GNUPG_DIR, STORE_DIR
from desk.storage.settle import settle
from desk.storage.store import Store


def seed(store: Store, count: int) -> None:
    """`count` items of two small files each, written as the store writes (no pool)."""
    for _ in range(count):
        folder = store.objects / secrets.token_hex(16)
        folder.mkdir(mode=0o700)
        (folder / "meta.gpg").write_bytes(os.urandom(1024))
        (folder / "part-000000.gpg").write_bytes(os.urandom(4096))


def timed(data_dir: Path) -> tuple[float, int]:
    """Seconds one settle took, and how many things it re-birthed."""
    start = time.perf_counter()
    report = settle(data_dir)
    return time.perf_counter() - start, report.reborn


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


def main() -> None:
    """Seed, settle, print medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="seed here and leave it (default: a temp dir)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="desk-bench-settle-"))
    data_dir = root / "data"
    try:
        (data_dir / GNUPG_DIR).mkdir(mode=0o700, parents=True)
        store = Store(data_dir / STORE_DIR)
        store.create()
        start = time.perf_counter()
        seed(store, args.items)
        print(f"machine: {machine()}")
        print(f"seeded {args.items} items in {time.perf_counter() - start:.1f} s under {root}")
        first, reborn = timed(data_dir)
        print(f"first settle: {first:.2f} s, {reborn} re-born")
        quiet = [timed(data_dir)[0] for _ in range(args.runs)]
        print(f"nothing new: median {statistics.median(quiet):.2f} s, runs "
              + ", ".join(f"{s:.2f}" for s in quiet))
        busy = []
        for _ in range(args.runs):
            seed(store, 100)
            busy.append(timed(data_dir)[0])
        print(f"100 new items: median {statistics.median(busy):.2f} s, runs "
              + ", ".join(f"{s:.2f}" for s in busy))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
