"""Token buckets for codename logins.

Every Tor client reaches the desk from 127.0.0.1, so there is no address to throttle by. A
login must pass two buckets: one for the whole desk, which caps how fast anyone can guess, and
one per session, which keeps a single guessing session from draining the desk's bucket before
others get a turn. The buckets live in this process's memory, never on disk: they would
otherwise record when sources tried to log in. Each server process has its own, so the desk's
rate is the per-process rate times the number of processes (two with deploy/gunicorn.conf.py).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """`capacity` tokens, refilled at `rate` tokens per second."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(frozen=True)
class Limits:
    """Bucket sizes and rates for the desk and for each session."""

    desk_capacity: float = 60
    desk_per_second: float = 1.0
    session_capacity: float = 5
    session_per_second: float = 1 / 12
    # Sessions remembered; the oldest are forgotten first (and start again full).
    max_sessions: int = 10_000


class LoginThrottle:
    """Decides whether a login attempt may cost an Argon2id derivation now."""

    def __init__(self, limits: Limits = Limits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._desk = TokenBucket(limits.desk_capacity, limits.desk_per_second,
                                 limits.desk_capacity, now)
        self._sessions: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, session_key: str) -> bool:
        """True if both the session's bucket and the desk's have a token; spends them."""
        limits = self.limits
        with self._lock:
            now = self._clock()
            bucket = self._sessions.pop(session_key, None) or TokenBucket(
                limits.session_capacity, limits.session_per_second, limits.session_capacity, now)
            self._sessions[session_key] = bucket
            while len(self._sessions) > limits.max_sessions:
                self._sessions.popitem(last=False)
            # The session pays first: a session over its limit spends none of the desk's.
            return bucket.take(now) and self._desk.take(now)


class DerivationGate:
    """Admits Argon2id derivations only while the queue ahead of them is short.

    Derivations run one at a time per process (crypto/kdf.py). Rather than let a burst of new
    codenames and logins queue for many seconds, each on a worker thread that pages and uploads
    then cannot use, a request asks to join: it is admitted while the derivations already
    admitted plus its own would take at most `budget` seconds at the current pace, and refused
    at once (429) otherwise. So at most a handful of threads ever wait on derivations, and every
    other request keeps its thread. The pace is a measurement of the past: a burst itself slows
    the derivations it lets in (they run at a lower priority than requests), and in bench.burst
    the admitted requests took 1.1 to 2.3 s (bench/RESULTS.md, "A burst of new codenames").

    `pace` is how long one derivation should be expected to take now, or None while the process
    has not timed one yet: then nothing is promised, and requests are admitted one at a time.
    """

    def __init__(self, pace: Callable[[], float | None], budget: float = 1.0) -> None:
        self.budget = budget
        self._pace = pace
        self._lock = threading.Lock()
        self._admitted = 0
        # The most derivations ever admitted at once, and how many requests were refused.
        self.peak = 0
        self.refused = 0

    def try_admit(self, derivations: int) -> bool:
        """Reserve `derivations` if they fit in the budget; False (nothing reserved) if not.
        Pair an admission with `release`."""
        with self._lock:
            if self._admitted:
                pace = self._pace()
                if pace is None or (self._admitted + derivations) * pace > self.budget:
                    self.refused += 1
                    return False
            self._admitted += derivations
            self.peak = max(self.peak, self._admitted)
            return True

    def release(self, derivations: int) -> None:
        """Give back what try_admit reserved."""
        with self._lock:
            self._admitted -= derivations

    def expected_wait(self) -> float:
        """Seconds the derivations admitted now will take (infinite if the pace is unknown)."""
        with self._lock:
            if not self._admitted:
                return 0.0
            pace = self._pace()
            return math.inf if pace is None else self._admitted * pace
