"""Source codenames: generation from the EFF large wordlist and the Argon2id lookup id."""

from __future__ import annotations

import secrets
from functools import cache
from importlib.resources import files

from crypto.kdf import PRODUCTION_KDF, KdfParams, derive

WORDS = 7
SALT_BYTES = 32
# Input is capped before any derivation, so a huge login field costs nothing.
MAX_CODENAME_CHARS = 256


@cache
def wordlist() -> tuple[str, ...]:
    """The 7,776 words of the EFF large wordlist."""
    text = files("crypto").joinpath("wordlists/eff_large_wordlist.txt").read_text("utf-8")
    words = tuple(text.split())
    if len(words) != 7776 or len(set(words)) != 7776:  # pragma: no cover - packaging error
        raise RuntimeError("EFF large wordlist is damaged")
    return words


class Codename:
    """A source's codename. Its repr hides it; `reveal()` is the one way to read it."""

    __slots__ = ("_words",)

    def __init__(self, text: str) -> None:
        self._words = normalize(text)

    def __repr__(self) -> str:
        return "Codename(<hidden>)"

    __str__ = __repr__

    def reveal(self) -> str:
        """The codename as the source must write it down."""
        return self._words


def normalize(text: str) -> str:
    """Lower-case words separated by single spaces, as typed on any keyboard."""
    return " ".join(text[:MAX_CODENAME_CHARS].lower().split())


def generate_codename() -> Codename:
    """Seven words drawn uniformly with `secrets`: about 90 bits."""
    return Codename(generate_passphrase(WORDS))


def generate_passphrase(words: int = 7) -> str:
    """A passphrase of `words` EFF words, for accounts the desk creates (about 90 bits)."""
    return " ".join(secrets.choice(wordlist()) for _ in range(words))


def new_salt() -> bytes:
    """A fresh per-desk salt."""
    return secrets.token_bytes(SALT_BYTES)


def lookup_id(codename: Codename, salt: bytes, params: KdfParams = PRODUCTION_KDF) -> str:
    """The id the desk stores for a source: Argon2id(codename, per-desk salt), 64 hex digits."""
    return derive(codename.reveal().encode("utf-8"), salt, 32, params).hex()
