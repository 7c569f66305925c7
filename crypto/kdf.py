"""Argon2id, one derivation at a time in each process, at a lower CPU priority.

cryptography runs an Argon2id derivation's lanes on OpenSSL's thread pool. Two derivations
with more than one lane started at the same time in one process wait on each other for ever
(cryptography 50.0 with OpenSSL 4.0.3: both threads stop using CPU and never return;
bench/RESULTS.md, "Codename login"). Every derivation in the desk and the console therefore
goes through this module, which runs them one after the other on a thread of its own. Logins
then queue: a burst of eight
takes about eight derivations' time on the 2-core reference machine (bench/RESULTS.md), so
callers that serve requests ask `expected_seconds()` how long a queue would take before they
join it (desk/web/throttle.py, DerivationGate).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost: memory in KiB, passes, lanes."""

    memory_cost: int
    iterations: int
    lanes: int


# About 0.1-0.16 s and 64 MiB on the reference machine: one derivation per login or codename.
PRODUCTION_KDF = KdfParams(memory_cost=65536, iterations=3, lanes=4)

# A running estimate, per cost, of how long one derivation takes in this process, in seconds,
# from what this process has measured. There is none before the first derivation: the
# reference machine's idle figure (about 0.15 s) says little about a burst, where a process's
# first derivations took 0.4 to 1.4 s (bench/RESULTS.md, "A burst of new codenames").
_typical: dict[KdfParams, float] = {}
# When the derivation running now started (monotonic seconds), or None.
_running_since: float | None = None

T = TypeVar("T")


def expected_seconds(params: KdfParams = PRODUCTION_KDF) -> float | None:
    """How long the next derivation at `params` should be expected to take in this process:
    what one has lately taken, or longer while the one running now has already run longer.
    None until this process has timed one."""
    typical = _typical.get(params)
    if typical is None:
        return None
    started = _running_since
    return typical if started is None else max(typical, time.monotonic() - started)


def _timed(params: KdfParams | None, work: Callable[[], T]) -> T:
    def timed() -> T:
        global _running_since
        started = _running_since = time.monotonic()
        try:
            result = work()
        finally:
            _running_since = None
        if params is not None:
            took, before = time.monotonic() - started, _typical.get(params)
            # Rise at once, fall slowly: a loaded machine must shorten queues straight away.
            _typical[params] = took if before is None or took > before else \
                0.8 * before + 0.2 * took
        return result

    return _the_deriver().run(timed)


# The derivation thread runs at a lower CPU priority than the threads that serve requests
# (Linux: this many nice levels below the process). OpenSSL starts a derivation's lane threads
# from it, and they inherit that priority, so a derivation takes the CPU that requests leave.
# At the same priority, in a burst of new codenames and logins, the lane threads of the two
# workers' derivations took most of both cores, and the Python threads that serve pages got a
# third of their share or less (bench/RESULTS.md, "A burst of new codenames").
LOWER_PRIORITY_BY = 10


class _Deriver:
    """The thread that runs this process's derivations, one after the other."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = \
            queue.SimpleQueue()
        threading.Thread(target=self._serve, name="argon2id", daemon=True).start()

    def run(self, work: Callable[[], T]) -> T:
        """`work()` on the derivation thread, after the derivations asked for before it."""
        done: Future[T] = Future()
        self._jobs.put((work, done))
        return done.result()

    def _serve(self) -> None:
        _lower_priority()
        while True:
            work, done = self._jobs.get()
            try:
                done.set_result(work())
            except BaseException as exc:  # raised in the caller, as if it had run the work
                done.set_exception(exc)


def _lower_priority() -> None:
    """Lower this thread's CPU priority by LOWER_PRIORITY_BY, on Linux, where a priority
    belongs to one thread (elsewhere it would be the whole process's)."""
    if sys.platform != "linux":
        return
    me = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, me,
                       min(19, os.getpriority(os.PRIO_PROCESS, me) + LOWER_PRIORITY_BY))


_deriver: _Deriver | None = None
_deriver_lock = threading.Lock()


def _the_deriver() -> _Deriver:
    global _deriver
    with _deriver_lock:
        if _deriver is None:
            _deriver = _Deriver()
        return _deriver


def _forget_deriver() -> None:
    """In a forked child, which has no copy of the parent's thread: start one when needed."""
    global _deriver, _deriver_lock
    _deriver, _deriver_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_deriver)



def _kdf(salt: bytes, length: int, params: KdfParams) -> Argon2id:
    return Argon2id(salt=salt, length=length, iterations=params.iterations,
                    lanes=params.lanes, memory_cost=params.memory_cost)


def derive(secret: bytes, salt: bytes, length: int, params: KdfParams = PRODUCTION_KDF
           ) -> bytes:
    """Argon2id(secret, salt) of `length` bytes."""
    return _timed(params, lambda: _kdf(salt, length, params).derive(secret))


def phc_hash(secret: bytes, salt: bytes, params: KdfParams = PRODUCTION_KDF) -> str:
    """An Argon2id PHC string for a password (32-byte hash)."""
    return _timed(params, lambda: _kdf(salt, 32, params).derive_phc_encoded(secret))


def phc_verify(secret: bytes, encoded: str) -> None:
    """Check a password against a PHC string; InvalidKey or ValueError if it does not match."""
    _timed(None, lambda: Argon2id.verify_phc_encoded(secret, encoded))
