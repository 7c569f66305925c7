"""Derivations run on a thread of their own at a lower CPU priority (crypto/kdf.py), so that in
a burst the threads that serve pages get the CPU first; the callers see no difference."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import pytest
from cryptography.exceptions import InvalidKey

import crypto.kdf
from crypto.kdf import LOWER_PRIORITY_BY, PRODUCTION_KDF, KdfParams, derive, phc_hash, phc_verify

linux_only = pytest.mark.skipif(sys.platform != "linux",
                                reason="a CPU priority belongs to one thread only on Linux")
TINY = KdfParams(memory_cost=64, iterations=1, lanes=1)


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


@linux_only
@pytest.mark.skipif(os.getpriority(os.PRIO_PROCESS, 0) >= 19, reason="no lower priority left")
def test_a_derivation_runs_on_a_thread_with_a_lower_priority(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []
    real = crypto.kdf.Argon2id

    class Watched:
        def __init__(self, **kwargs: Any) -> None:
            self._kdf = real(**kwargs)

        def derive(self, data: bytes) -> bytes:
            me = threading.get_native_id()
            seen.append((me, nice_of(me)))
            return self._kdf.derive(data)

    monkeypatch.setattr(crypto.kdf, "Argon2id", Watched)
    caller = threading.get_native_id()
    assert derive(b"secret", b"salt" * 4, 32, TINY) == real(
        salt=b"salt" * 4, length=32, iterations=1, lanes=1, memory_cost=64).derive(b"secret")
    derive(b"other", b"salt" * 4, 32, TINY)
    assert len(seen) == 2
    (first, first_nice), (second, _) = seen
    assert first != caller
    assert first == second  # one thread, so one derivation at a time
    assert first_nice == min(19, nice_of(caller) + LOWER_PRIORITY_BY)
    assert first_nice > nice_of(caller)


@linux_only
@pytest.mark.skipif(os.getpriority(os.PRIO_PROCESS, 0) >= 19, reason="no lower priority left")
def test_the_lane_threads_openssl_starts_inherit_the_lower_priority() -> None:
    """Every thread that appears while a multi-lane derivation runs has the lowered priority:
    the lanes would otherwise compete with the requests at full priority."""
    derive(b"warm", b"salt" * 4, 32, TINY)  # the derivation thread exists before we look
    before = set(os.listdir("/proc/self/task"))
    lowered = min(19, os.getpriority(os.PRIO_PROCESS, 0) + LOWER_PRIORITY_BY)
    new: dict[str, int] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for task in set(os.listdir("/proc/self/task")) - before:
                try:
                    new[task] = nice_of(int(task))
                except OSError:
                    continue  # it ended between the listing and the look
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        derive(b"secret", b"salt" * 4, 32, PRODUCTION_KDF)
    finally:
        done.set()
        watcher.join()
    new.pop(str(watcher.native_id), None)
    if not new:
        pytest.skip("this OpenSSL ran the lanes without threads of its own")
    assert set(new.values()) == {lowered}, new
    assert lowered > os.getpriority(os.PRIO_PROCESS, 0)


def test_what_a_derivation_raises_reaches_the_caller() -> None:
    encoded = phc_hash(b"right", b"salt" * 4, TINY)
    phc_verify(b"right", encoded)
    with pytest.raises(InvalidKey):
        phc_verify(b"wrong", encoded)
