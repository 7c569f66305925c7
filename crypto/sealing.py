"""Sealing small secrets under a derived key: the desk's one AES-GCM and one HKDF.

`derive(secret, purpose)` is HKDF-SHA256 with no salt, `purpose` as the info, to a 32-byte key.
`seal(key, plaintext, aad)` is a fresh random 12-byte nonce followed by the AES-256-GCM
ciphertext and its 16-byte tag; `unseal` reverses it or raises UnsealFailed. Callers choose the
purpose and the associated data, and any text encoding around the sealed bytes (base64 where a
session keeps it in JSON); crypto/FORMAT.md lists each use. The known-answer file is
`tests/vectors/sealing-v1.json`.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import UnsealFailed

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def derive(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key from `secret` for `purpose`: HKDF-SHA256, no salt, info = `purpose`."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=purpose).derive(secret)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """`plaintext` sealed under `key` with `aad` bound to it: nonce, then ciphertext and tag."""
    return _seal_with_nonce(key, os.urandom(NONCE_BYTES), plaintext, aad)


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """What `seal` sealed; UnsealFailed if `key` or `aad` differ or a byte changed."""
    cipher = _cipher(key)
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise UnsealFailed("too short to be sealed")
    try:
        return cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise UnsealFailed("does not open with this key and associated data") from exc


def _seal_with_nonce(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """`seal` with a given nonce: for the known-answer test only, as a nonce must never
    repeat under one key."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
    return nonce + _cipher(key).encrypt(nonce, plaintext, aad)


def _cipher(key: bytes) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise ValueError(f"a sealing key is {KEY_BYTES} bytes (AES-256)")
    return AESGCM(key)
