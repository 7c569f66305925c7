"""Errors raised by the crypto layer. Each docstring is the explanation shown to a journalist.

Also the parsing rules every document of crypto/FORMAT.md shares ("Conventions").
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


class CryptoError(Exception):
    """Something in the desk's cryptography failed."""


class GpgUnavailable(CryptoError):
    """GnuPG could not be started: install the Debian package gnupg."""


class KeyRefused(CryptoError):
    """The OpenPGP key cannot be used by the desk; the message says why."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


class EncryptionFailed(CryptoError):
    """GnuPG did not produce a complete ciphertext; nothing was kept."""


class DecryptionFailed(CryptoError):
    """GnuPG could not decrypt: wrong or missing key, or damaged ciphertext. Nothing was kept."""


class PlaintextTooLarge(DecryptionFailed):
    """A message decrypted to more than it may: more than its own size (only compression does
    that, and the desk never compresses) or more than its record says. Nothing was kept."""


class CompressedMessage(DecryptionFailed):
    """A message holds a compressed packet, which FORMAT.md forbids (the desk never compresses,
    and a compressed packet can expand without bound): refused before anything expanded."""


class SigningFailed(CryptoError):
    """GnuPG could not sign: no usable secret key, or its passphrase was not given."""


class UnsealFailed(CryptoError):
    """A sealed value did not open: another key or associated data, or damaged bytes."""


class FormatError(CryptoError):
    """A record does not follow crypto/FORMAT.md and was rejected."""


class CustodyBroken(CryptoError):
    """The chain of custody does not verify: `seq` names the first bad entry, or `object_id`
    the first object whose ciphertext does not match what custody recorded."""

    def __init__(self, reason: str, *, seq: int | None = None,
                 object_id: str | None = None, kind: str = "object") -> None:
        self.seq, self.object_id, self.reason = seq, object_id, reason
        where = f"custody entry {seq}" if seq is not None else f"{kind} {object_id}"
        super().__init__(f"{where}: {reason}")


def is_version(value: object, expected: int) -> bool:
    """True if a parsed JSON `version` field is exactly the integer `expected` (JSON true and
    1.0 compare equal to 1 in Python, and must not pass)."""
    return type(value) is int and value == expected


# JSON integers must survive parsers that read numbers as IEEE doubles (FORMAT.md, "JSON").
MAX_JSON_INTEGER = 2**53 - 1


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise FormatError("a JSON object repeats a member name")
    return dict(pairs)


def _integer(text: str) -> int:
    if len(text) > 17 or abs(int(text)) > MAX_JSON_INTEGER:
        raise FormatError(f"a JSON integer is out of range: {text[:30]}")
    return int(text)


def _no_number(text: str) -> Any:
    raise FormatError(f"a JSON number must be an integer, not {text[:30]}")


def _no_surrogates(value: Any) -> None:
    if isinstance(value, str):
        if any(0xD800 <= ord(char) <= 0xDFFF for char in value):
            raise FormatError("a JSON string holds an unpaired surrogate")
    elif isinstance(value, dict):
        for name, item in value.items():
            _no_surrogates(name)
            _no_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _no_surrogates(item)


def load_json(data: bytes, what: str) -> Any:
    """Parse a document of FORMAT.md's JSON profile: UTF-8 without a byte order mark, no
    repeated member names, integers only (within +-(2**53 - 1)), no NaN or Infinity, no
    unpaired surrogates. FormatError naming `what` otherwise."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_members,
                           parse_int=_integer, parse_float=_no_number,
                           parse_constant=_no_number)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{what} is not UTF-8 JSON: {exc}") from exc
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from exc
    _no_surrogates(value)
    return value


def b64decode_canonical(value: object) -> bytes:
    """Standard base64 with padding (RFC 4648 section 4), exactly as `base64.b64encode`
    writes it; ValueError for anything else (other characters, line breaks, missing
    padding, non-zero padding bits)."""
    if not isinstance(value, str):
        raise ValueError("base64 must be a string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64: {exc}") from exc
    if base64.b64encode(decoded).decode("ascii") != value:
        raise ValueError("base64 is not in canonical form")
    return decoded
