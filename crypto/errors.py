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


class FormatError(CryptoError):
    """A record does not follow crypto/FORMAT.md and was rejected."""
