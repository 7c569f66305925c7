"""How long a derivation is expected to take (crypto/kdf.py) and the gate that admits them on
that estimate (desk/web/throttle.py): nothing is promised before a derivation has been timed,
and one running long makes the estimate long at once, not only when it ends."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import crypto.kdf
from crypto.kdf import KdfParams, derive, expected_seconds
from desk.web.throttle import DerivationGate

# A cost no other test uses, so this process has timed none of it before the test does.
_costs = iter(range(1000, 1100))


def fresh_params() -> KdfParams:
    return KdfParams(memory_cost=next(_costs), iterations=97, lanes=3)


class HeldArgon2id:
    """An Argon2id stand-in that returns at once, or waits for `release` when `hold` is set."""

    hold = threading.Event()
    release = threading.Event()
    entered = threading.Event()

    def __init__(self, **_kwargs: Any) -> None:
        pass

    def derive(self, _data: bytes) -> bytes:
        if self.hold.is_set():
            self.entered.set()
            assert self.release.wait(timeout=30)
        return b"\0" * 32


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> type[HeldArgon2id]:
    for event in (HeldArgon2id.hold, HeldArgon2id.release, HeldArgon2id.entered):
        event.clear()
    monkeypatch.setattr(crypto.kdf, "Argon2id", HeldArgon2id)
    return HeldArgon2id


def test_nothing_is_expected_before_a_derivation_is_timed(held: type[HeldArgon2id]) -> None:
    params = fresh_params()
    assert expected_seconds(params) is None
    derive(b"secret", b"salt" * 4, 32, params)
    measured = expected_seconds(params)
    assert measured is not None
    assert measured < 1


def test_a_derivation_running_long_makes_the_estimate_long_while_it_runs(
        held: type[HeldArgon2id]) -> None:
    params = fresh_params()
    derive(b"secret", b"salt" * 4, 32, params)  # timed: a fake derivation takes no time
    quick = expected_seconds(params)
    assert quick is not None
    assert quick < 0.1
    held.hold.set()
    running = threading.Thread(target=derive, args=(b"secret", b"salt" * 4, 32, params))
    running.start()
    try:
        assert held.entered.wait(timeout=30)
        time.sleep(0.3)
        during = expected_seconds(params)
        assert during is not None
        assert during >= 0.3
    finally:
        held.release.set()
        running.join(timeout=30)
    # Once it is over the estimate is what it took: it rose at once, and falls slowly.
    after = expected_seconds(params)
    assert after is not None
    assert after >= 0.3


def test_the_gate_admits_one_at_a_time_until_the_pace_is_known() -> None:
    pace: list[float | None] = [None]
    gate = DerivationGate(pace=lambda: pace[0], budget=1.0)
    assert gate.try_admit(2)
    assert not gate.try_admit(2)
    assert gate.expected_wait() == float("inf")
    gate.release(2)
    assert gate.expected_wait() == 0
    assert gate.try_admit(2)
    pace[0] = 0.2  # two requests of two derivations fit in one second, a third does not
    assert gate.try_admit(2)
    assert not gate.try_admit(2)
    assert gate.refused == 2
    assert gate.peak == 4
    assert gate.expected_wait() == pytest.approx(0.8)


def test_the_gate_refuses_while_the_running_derivation_overruns(
        held: type[HeldArgon2id]) -> None:
    params = fresh_params()
    derive(b"secret", b"salt" * 4, 32, params)
    gate = DerivationGate(pace=lambda: expected_seconds(params), budget=1.0)
    assert gate.try_admit(2)
    assert gate.try_admit(2)  # at the measured pace many would fit
    held.hold.set()
    running = threading.Thread(target=derive, args=(b"secret", b"salt" * 4, 32, params))
    running.start()
    try:
        assert held.entered.wait(timeout=30)
        time.sleep(0.3)  # (4 + 2) x 0.3 s > 1 s
        assert not gate.try_admit(2)
    finally:
        held.release.set()
        running.join(timeout=30)
