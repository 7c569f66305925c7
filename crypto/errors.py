"""Errors raised by the crypto layer. Each docstring is the explanation shown to a journalist."""


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
