"""Test data: sizes, digests, random bytes with markers to look for later."""

from __future__ import annotations

import hashlib
import os
import secrets

KiB = 1024
MiB = 1024 * KiB


def sha256(data: bytes) -> str:
    """Hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def new_markers(count: int) -> list[bytes]:
    """Unique, unguessable byte strings to look for later."""
    return [secrets.token_hex(16).encode() for _ in range(count)]


def marked_data(size: int, markers: list[bytes], stride: int = 32 * KiB) -> bytes:
    """`size` random bytes with a marker (round robin) at the start of every `stride` bytes."""
    out = bytearray()
    while len(out) < size:
        marker = markers[(len(out) // stride) % len(markers)]
        out += marker + os.urandom(stride - len(marker))
    return bytes(out[:size])


def noise(size: int, seed: bytes = b"noise") -> bytes:
    """`size` reproducible bytes that look random."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])
