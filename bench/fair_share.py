"""Fair share under attack: an honest source beside one that tries to take every thread.

Run by hand, never as a test:

    .venv/bin/python -m bench.fair_share [--via front|direct|both] [--header-circuits 10]
        [--patch-circuits 7] [--slow-headers 200] [--slow-patches 140] [--drip 5]
        [--pages 20] [--upload-mib 16] [--settle 20] [--runs 1]

It makes a throwaway desk (one journalist) and runs `desk serve source` as production runs it
(gunicorn, the settings of desk/ops/serve.py) and, for `--via front`, the front before it
(HAProxy with what `desk front-config` writes). tor is played by the bench: each stream opens
with the PROXY line tor's `HiddenServiceExportCircuitID haproxy` sends, its source address
carrying the stream's circuit. The attacker keeps --slow-headers streams that never finish
their headers, spread over --header-circuits circuits, and --slow-patches tus PATCHes that
announce 1 MiB and send a byte every --drip seconds (each started again when the desk ends it),
spread over --patch-circuits circuits (20 streams a circuit, tor's cap, at the defaults), and
creates uploads as fast as it is answered on one more circuit. After --settle seconds the honest
source, on a circuit of its own, loads the submit page and its style sheet --pages times (every
0.5 s) and uploads --upload-mib MiB with tus in 16 MiB PATCHes (as the desk's upload.js
does), resuming from HEAD after a failure; it gives up after 3 failures of either. With
`--via direct` the same streams go straight to the source interface (no circuit can be told
there).

It prints, per run: the honest page loads' median, p95 and worst (and failures), whether the
upload completed, its time, whether any resume found less than was acknowledged, whether the
stored file decrypts to what was sent, and what the attack got. Goal: page p95 under 2 s,
the upload complete, nothing acknowledged lost.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import machine, median, percentile
from desk.services import Services
from tests.harness.desks import add_account, desk_config, new_desk, read_objects
from tests.harness.front import running_front
from tests.harness.gpg import Keypair, make_keypair
from tests.harness.http import open_source_session
from tests.harness.servers import start_server
from tests.harness.siege import (
    CreationFlood,
    HonestResult,
    SlowHeaders,
    SlowPatches,
    Target,
    attacker_uploads,
    honest_pages,
    honest_upload,
)

HONEST_CIRCUIT = 0x7E57
PAGE_TIMEOUT = 60
GIVE_UP_AFTER = 3  # failed page loads, or failed PATCHes, before the honest source gives up
ATTACK_SECONDS = 900
CHUNK = 16 * 1024 * 1024
SETTLE = 20  # seconds the attack runs before the honest source starts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--via", choices=["front", "direct", "both"], default="both")
    parser.add_argument("--header-circuits", type=int, default=10)
    parser.add_argument("--patch-circuits", type=int, default=7)
    parser.add_argument("--slow-headers", type=int, default=200)
    parser.add_argument("--slow-patches", type=int, default=140)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--upload-mib", type=int, default=16)
    parser.add_argument("--drip", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--upload-timeout", type=float, default=300,
                        help="Seconds the honest source waits for one PATCH's answer.")
    parser.add_argument("--settle", type=float, default=SETTLE,
                        help="Seconds the attack runs before the honest source starts.")
    args = parser.parse_args()
    print(machine(packages=["gunicorn"]))
    print("haproxy:", subprocess.run(["haproxy", "-v"], capture_output=True, text=True,
                                     check=False).stdout.splitlines()[0])
    ways = ["front", "direct"] if args.via == "both" else [args.via]
    for run_number in range(args.runs):
        for way in ways:
            print(f"\n== run {run_number + 1}, via {way} ==", flush=True)
            with tempfile.TemporaryDirectory() as root_text:
                one_run(args, Path(root_text), way == "front")


def one_run(args: argparse.Namespace, root: Path, via_front: bool) -> None:
    keypair = make_keypair(root / "alice", "Alice")
    services = new_desk(desk_config(root / "data"))
    add_account(services, "alice", keypair)
    server = start_server(root / "data", "source", log=root / "source.log", workers=2)
    try:
        if via_front:
            with running_front(root / "data", root / "front", server.port) as front:
                attack_and_measure(args, Target(front.port, via_front=True), server.url,
                                   keypair, services)
        else:
            attack_and_measure(args, Target(server.port, via_front=False), server.url,
                               keypair, services)
    finally:
        server.abandon()
        services.engine.dispose()


def attack_and_measure(args: argparse.Namespace, target: Target, direct_url: str,
                       keypair: Keypair, services: Services) -> None:
    header_circuits = [0x1000 + i for i in range(args.header_circuits)]
    patch_circuits = [0x2000 + i for i in range(args.patch_circuits)]
    honest = open_source_session(direct_url)
    uploads = attacker_uploads(direct_url, args.slow_patches, patch_circuits)
    print(f"attacker: {len(uploads)} uploads made for the slow PATCHes", flush=True)
    creator = open_source_session(direct_url)
    loops = [SlowHeaders(target, header_circuits, args.slow_headers, ATTACK_SECONDS),
             SlowPatches(target, uploads, args.drip, ATTACK_SECONDS),
             CreationFlood(target, 0x3000, creator, ATTACK_SECONDS)]
    for loop in loops:
        loop.start()
    time.sleep(args.settle)
    result = HonestResult()
    data = os.urandom(args.upload_mib * 1024 * 1024)
    try:
        honest_pages(target, HONEST_CIRCUIT, honest, args.pages, result, PAGE_TIMEOUT,
                     give_up_after=GIVE_UP_AFTER)
        honest_upload(target, HONEST_CIRCUIT, honest, data, CHUNK, result,
                      timeout=args.upload_timeout, tries=GIVE_UP_AFTER)
    finally:
        for loop in loops:
            loop.stop()
    report(args, result, loops, data, services, keypair)


def report(args: argparse.Namespace, result: HonestResult, loops: Sequence[object], data: bytes,
           services: Services, keypair: Keypair) -> None:
    pages = result.page_seconds
    if pages:
        print(f"honest pages: {len(pages)} of {2 * args.pages} loaded; median "
              f"{median(pages):.2f} s, p95 {percentile(pages, 95):.2f} s, worst "
              f"{max(pages):.2f} s")
    print(f"honest page failures: {len(result.page_failures)} {result.page_failures[:5]}")
    done = result.upload_seconds is not None
    print(f"honest upload of {args.upload_mib} MiB: "
          + (f"complete in {result.upload_seconds:.1f} s" if done else "NOT complete")
          + f"; failures {len(result.upload_failures)} {result.upload_failures[:3]}; "
          f"acknowledged lost: {result.lost_acknowledged}")
    stored = [o for o in read_objects(services.config, keypair) if o.plaintext == data]
    print(f"stored file decrypts to what was sent: {bool(stored)}")
    slow_headers, slow_patches, flood = loops
    assert isinstance(slow_headers, SlowHeaders)
    assert isinstance(slow_patches, SlowPatches)
    assert isinstance(flood, CreationFlood)
    print(f"attack: slow-header streams opened {slow_headers.opened}, ended by the other side "
          f"{slow_headers.closed_by_desk}; slow PATCHes started {slow_patches.started}, ended "
          f"{slow_patches.ended_by_desk}; creations {dict(flood.statuses)}")


if __name__ == "__main__":
    main()
