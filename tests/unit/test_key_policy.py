"""The journalist key policy itself (crypto/keys.py), on keys described by hand: no gpg, no
desk. Keys made with stock gpg, pinned and refused by a desk: tests/web/test_keys.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crypto.keys import KeyInfo, KeyPart, key_problems, parse_fingerprint

NOW = datetime(2025, 6, 1, tzinfo=UTC)
CREATED = datetime(2024, 1, 1, tzinfo=UTC)


def part(algorithm: int, bits: int = 0, curve: str = "", capabilities: str = "e",
         validity: str = "-", expires: datetime | None = None, name: str = "A") -> KeyPart:
    """A key part with a made-up fingerprint."""
    return KeyPart(fingerprint=name * 40, algorithm=algorithm, bits=bits, curve=curve,
                   validity=validity, capabilities=capabilities, created=CREATED,
                   expires=expires)


def key(primary: KeyPart, *subkeys: KeyPart) -> KeyInfo:
    """A public key made of `primary` and `subkeys`."""
    return KeyInfo(primary=primary, subkeys=subkeys, user_ids=("Test <t@desk.invalid>",))


ED25519_CERT = part(22, 255, "ed25519", "cSC")
CV25519 = part(18, 255, "cv25519", "e", name="B")


def test_policy_accepts_ed25519_with_cv25519_subkey() -> None:
    assert key_problems(key(ED25519_CERT, CV25519), NOW) == []


@pytest.mark.parametrize(("primary", "subkeys", "expected"), [
    (part(17, 2048, capabilities="scSC"), (part(16, 3072, name="B"),),
     "DSA-2048 is too weak"),
    (part(17, 3072, capabilities="scSC"), (part(16, 2048, name="B"),),
     "ElGamal-2048 is too weak"),
    (part(1, 4096, capabilities="cSC"), (part(1, 2048, name="B"),), "RSA-2048 is too weak"),
    (part(22, 255, "secp256k1", "cSC"), (CV25519,), "curve secp256k1 is not accepted"),
    (ED25519_CERT, (part(18, 256, "secp256k1", name="B"),), "curve secp256k1 is not accepted"),
    (ED25519_CERT, (part(18, 255, "", name="B"),), "curve unknown is not accepted"),
    (part(99, 4096, capabilities="cESC"), (), "not a supported public-key algorithm"),
    (ED25519_CERT, (), "cannot encrypt"),
    (ED25519_CERT, (part(18, 255, "cv25519", expires=NOW - timedelta(days=1), name="B"),),
     "cannot encrypt"),
    (ED25519_CERT, (part(18, 255, "cv25519", validity="r", name="B"),), "cannot encrypt"),
    (ED25519_CERT, (part(18, 255, "cv25519", capabilities="s", name="B"),), "cannot encrypt"),
    (part(22, 255, "ed25519", "cSC", validity="r"), (CV25519,), "revoked"),
    (part(22, 255, "ed25519", "cSC", expires=NOW), (CV25519,), "expired on 2025-06-01"),
    (part(22, 255, "ed25519", "cSC", validity="e"), (CV25519,), "the key has expired"),
    (part(22, 255, "ed25519", "cSC", validity="i"), (CV25519,), "invalid"),
])
def test_policy_refuses_with_reason(
        primary: KeyPart, subkeys: tuple[KeyPart, ...], expected: str) -> None:
    problems = key_problems(key(primary, *subkeys), NOW)

    assert any(expected in problem for problem in problems), problems


def test_policy_ignores_a_weak_subkey_that_cannot_encrypt() -> None:
    signing = part(1, 2048, capabilities="s", name="C")

    assert key_problems(key(ED25519_CERT, CV25519, signing), NOW) == []


def test_expired_subkey_is_ignored_when_a_valid_one_remains() -> None:
    old = part(18, 255, "cv25519", expires=NOW - timedelta(days=1), name="C")

    assert key_problems(key(ED25519_CERT, old, CV25519), NOW) == []


def test_encrypts_until_is_the_earlier_of_primary_and_subkey_expiry() -> None:
    soon, later = NOW + timedelta(days=10), NOW + timedelta(days=100)
    primary_first = key(part(22, 255, "ed25519", "cSC", expires=soon),
                        part(18, 255, "cv25519", expires=later, name="B"))
    subkey_first = key(part(22, 255, "ed25519", "cSC", expires=later),
                       part(18, 255, "cv25519", expires=soon, name="B"))
    subkey_only = key(ED25519_CERT, part(18, 255, "cv25519", expires=soon, name="B"))

    assert primary_first.encrypts_until(NOW) == soon
    assert subkey_first.encrypts_until(NOW) == soon
    assert subkey_only.encrypts_until(NOW) == soon
    assert key(ED25519_CERT, CV25519).encrypts_until(NOW) is None


def test_encrypts_until_is_the_latest_of_several_encryption_subkeys() -> None:
    soon, later = NOW + timedelta(days=10), NOW + timedelta(days=100)
    rotated = key(ED25519_CERT, part(18, 255, "cv25519", expires=soon, name="B"),
                  part(18, 255, "cv25519", expires=later, name="C"))

    assert rotated.encrypts_until(NOW) == later


def test_parse_fingerprint_accepts_spaced_lower_case() -> None:
    text = "0123 4567 89ab cdef 0123  4567 89ab cdef 0123 4567"

    assert parse_fingerprint(text) == "0123456789ABCDEF0123456789ABCDEF01234567"


@pytest.mark.parametrize("text", [
    "0123456789ABCDEF0123456789ABCDEF0123456",  # 39 hex
    "0123456789ABCDEF0123456789ABCDEF012345678",  # 41 hex
    "0123456789ABCDEF0123456789ABCDEF0123456G",
    "",
])
def test_parse_fingerprint_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="not a 40-hex OpenPGP fingerprint"):
        parse_fingerprint(text)
