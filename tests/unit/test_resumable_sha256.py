"""desk/intake/resumable_sha256.py: a SHA-256 whose state is kept between requests gives
hashlib's digest however the bytes were split and wherever the state was saved."""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from desk.intake.resumable_sha256 import ResumableSha256


def test_an_empty_state_is_the_empty_strings_digest() -> None:
    assert ResumableSha256().hexdigest() == hashlib.sha256(b"").hexdigest()
    assert ResumableSha256.load(ResumableSha256().dump()).hexdigest() == \
        hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("seed", range(8))
def test_saved_and_loaded_anywhere_it_gives_hashlibs_digest(seed: int) -> None:
    chooser = random.Random(seed)  # noqa: S311 - reproducible splits, not secrets
    data = os.urandom(chooser.randrange(0, 300_000))
    state = ResumableSha256()
    at = 0
    while at < len(data):
        # Splits at block boundaries, inside blocks, of a byte or of many blocks.
        size = chooser.choice([1, 63, 64, 65, chooser.randrange(1, 70_000)])
        state.update(data[at:at + size])
        at += size
        if chooser.random() < 0.5:
            state = ResumableSha256.load(state.dump())
    assert state.hexdigest() == hashlib.sha256(data).hexdigest()
    # Taking the digest does not end the state: it goes on hashing.
    state.update(b"more")
    assert state.hexdigest() == hashlib.sha256(data + b"more").hexdigest()


def test_the_saved_state_is_plain_data_of_a_known_shape() -> None:
    # Before any byte: SHA-256's initial hash value (FIPS 180-4, 5.3.3), words big-endian.
    assert ResumableSha256().dump() == [
        "6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19", 0, ""]
    state = ResumableSha256()
    state.update(b"a" * 100)
    words, count, rest = state.dump()
    assert count == 100
    assert rest == "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh"  # the last 36 bytes
    assert isinstance(words, str)
    assert len(words) == 64
    assert words != ResumableSha256().dump()[0]


@pytest.mark.parametrize("bad", [
    ["00" * 32, 100, ""],  # 100 bytes hashed, but none waiting for a block
    ["00" * 31, 0, ""],
    ["zz" * 32, 0, ""],
    ["00" * 32, -64, ""],
    ["00" * 32, 1, "not base64!"],
    ["00" * 32, 64, "AA=="],
    ["00" * 32],
    "00" * 32,
])
def test_a_damaged_state_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="SHA-256 state"):
        ResumableSha256.load(bad)
