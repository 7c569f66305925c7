"""Argon2id, one derivation at a time in each process.

cryptography runs an Argon2id derivation's lanes on OpenSSL's thread pool. Two derivations
with more than one lane started at the same time in one process wait on each other for ever
(cryptography 50.0 with OpenSSL 4.0.3: both threads stop using CPU and never return;
bench/RESULTS.md, "Codename login"). Every derivation in the desk and the console therefore
goes through this module, which holds one lock around it. Logins then queue: a burst of eight
takes about eight derivations' time on the 2-core reference machine (bench/RESULTS.md).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

_ONE_AT_A_TIME = threading.Lock()


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost: memory in KiB, passes, lanes."""

    memory_cost: int
    iterations: int
    lanes: int


# About 0.1-0.16 s and 64 MiB on the reference machine: one derivation per login or codename.
PRODUCTION_KDF = KdfParams(memory_cost=65536, iterations=3, lanes=4)


def _kdf(salt: bytes, length: int, params: KdfParams) -> Argon2id:
    return Argon2id(salt=salt, length=length, iterations=params.iterations,
                    lanes=params.lanes, memory_cost=params.memory_cost)


def derive(secret: bytes, salt: bytes, length: int, params: KdfParams = PRODUCTION_KDF
           ) -> bytes:
    """Argon2id(secret, salt) of `length` bytes."""
    with _ONE_AT_A_TIME:
        return _kdf(salt, length, params).derive(secret)


def phc_hash(secret: bytes, salt: bytes, params: KdfParams = PRODUCTION_KDF) -> str:
    """An Argon2id PHC string for a password (32-byte hash)."""
    with _ONE_AT_A_TIME:
        return _kdf(salt, 32, params).derive_phc_encoded(secret)


def phc_verify(secret: bytes, encoded: str) -> None:
    """Check a password against a PHC string; InvalidKey or ValueError if it does not match."""
    with _ONE_AT_A_TIME:
        Argon2id.verify_phc_encoded(secret, encoded)
