"""Journalist key policy: which OpenPGP public keys the desk will encrypt to, and why not."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crypto.errors import KeyRefused

FINGERPRINT_RE = re.compile(r"[0-9A-F]{40}")  # used with fullmatch: "$" admits a final newline

# OpenPGP public-key algorithm ids (RFC 4880 section 9.1, RFC 6637, RFC 9580).
RSA_ALGORITHMS = frozenset({1, 2, 3})
FINITE_FIELD_ALGORITHMS = frozenset({16, 17, 20})  # ElGamal, DSA, ElGamal (sign+encrypt)
ECC_ALGORITHMS = frozenset({18, 19, 22})  # ECDH, ECDSA, EdDSA
ALGORITHM_NAMES = {1: "RSA", 2: "RSA", 3: "RSA", 16: "ElGamal", 17: "DSA", 18: "ECDH",
                   19: "ECDSA", 20: "ElGamal", 22: "EdDSA"}
MIN_FINITE_FIELD_BITS = 3072
SAFE_CURVES = frozenset({
    "ed25519", "cv25519", "ed448", "cv448", "nistp256", "nistp384", "nistp521",
    "brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1",
})
EXPIRY_WARNING = timedelta(days=30)

# gpg's colon-listing validity letters that make a key or subkey unusable.
REVOKED, EXPIRED, INVALID, DISABLED = "r", "e", "i", "d"


def parse_fingerprint(text: str) -> str:
    """Return a 40-hex OpenPGP v4 fingerprint in upper case, or raise ValueError."""
    fingerprint = text.replace(" ", "").upper()
    if not FINGERPRINT_RE.fullmatch(fingerprint):
        raise ValueError(f"not a 40-hex OpenPGP fingerprint: {text!r}")
    return fingerprint


@dataclass(frozen=True)
class KeyPart:
    """A primary key or subkey as gpg lists it."""

    fingerprint: str
    algorithm: int
    bits: int
    curve: str
    validity: str
    capabilities: str
    created: datetime
    expires: datetime | None

    @property
    def algorithm_name(self) -> str:
        """A readable algorithm name such as 'RSA-2048' or 'ECDH cv25519'."""
        name = ALGORITHM_NAMES.get(self.algorithm)
        if name is None:
            return f"algorithm {self.algorithm}"
        if self.algorithm in ECC_ALGORITHMS:
            return f"{name} {self.curve}"
        return f"{name}-{self.bits}"

    def usable_at(self, now: datetime) -> bool:
        """True when gpg would use this key part at `now`: not revoked, expired or invalid."""
        if self.validity in (REVOKED, EXPIRED, INVALID, DISABLED):
            return False
        return self.expires is None or self.expires > now

    def strength_problem(self) -> str | None:
        """Why this key part's algorithm or size is too weak, or None."""
        if self.algorithm in RSA_ALGORITHMS | FINITE_FIELD_ALGORITHMS:
            if self.bits < MIN_FINITE_FIELD_BITS:
                return (f"{self.algorithm_name} is too weak: RSA, DSA and ElGamal keys need "
                        f"at least {MIN_FINITE_FIELD_BITS} bits")
            return None
        if self.algorithm in ECC_ALGORITHMS:
            if self.curve not in SAFE_CURVES:
                return f"curve {self.curve or 'unknown'} is not accepted"
            return None
        return f"{self.algorithm_name} is not a supported public-key algorithm"


@dataclass(frozen=True)
class KeyInfo:
    """An OpenPGP public key (primary plus subkeys) as listed by gpg."""

    primary: KeyPart
    subkeys: tuple[KeyPart, ...]
    user_ids: tuple[str, ...]
    secret: bool = False

    @property
    def fingerprint(self) -> str:
        """The primary key's 40-hex fingerprint, which the desk pins."""
        return self.primary.fingerprint

    @property
    def revoked(self) -> bool:
        """True when the primary key carries a revocation."""
        return self.primary.validity == REVOKED

    def encryption_parts(self, now: datetime) -> list[KeyPart]:
        """The key parts gpg could encrypt to at `now`."""
        parts = [self.primary] if "e" in self.primary.capabilities.lower() else []
        parts += [sub for sub in self.subkeys if "e" in sub.capabilities.lower()]
        return [part for part in parts if part.usable_at(now)]

    def encrypts_until(self, now: datetime) -> datetime | None:
        """When this key stops being usable for encryption (None: no expiry)."""
        ends = [part.expires for part in self.encryption_parts(now)]
        latest = None if None in ends or not ends else max(e for e in ends if e is not None)
        if self.primary.expires is None:
            return latest
        return self.primary.expires if latest is None else min(latest, self.primary.expires)


def key_problems(key: KeyInfo, now: datetime | None = None) -> list[str]:
    """Every reason the desk must not encrypt to `key`; empty when it is fine."""
    now = now or datetime.now(UTC)
    if key.revoked:
        return ["the key has been revoked"]
    if key.primary.validity == EXPIRED or (key.primary.expires and key.primary.expires <= now):
        return [f"the key expired on {key.primary.expires:%Y-%m-%d}" if key.primary.expires
                else "the key has expired"]
    if key.primary.validity in (INVALID, DISABLED):
        return ["gpg considers the key invalid"]
    problems = []
    if (weak := key.primary.strength_problem()) is not None:
        problems.append(weak)
    encryption = key.encryption_parts(now)
    if not encryption:
        problems.append("the key cannot encrypt: it has no valid encryption subkey")
    problems += [p for part in encryption if (p := part.strength_problem()) is not None]
    return list(dict.fromkeys(problems))


def single_public_key(keys: list[KeyInfo]) -> KeyInfo:
    """The one public key a journalist's key file must hold, or KeyRefused."""
    if not keys:
        raise KeyRefused(["the file holds no OpenPGP key"])
    if any(key.secret for key in keys):
        raise KeyRefused(["the file contains a secret key: export and send the public key only"])
    if len(keys) > 1:
        raise KeyRefused([f"the file holds {len(keys)} keys: send one journalist's key"])
    return keys[0]


def check_key(key: KeyInfo, now: datetime | None = None) -> KeyInfo:
    """Return `key` if the desk may encrypt to it, else raise KeyRefused with the reasons."""
    problems = key_problems(key, now)
    if problems:
        raise KeyRefused(problems)
    return key
