"""Sealing small secrets under a derived key: the desk's one AES-GCM and one HKDF.

`derive(secret, purpose)` is HKDF-SHA256 with no salt, `purpose` as the info, to a 32-byte key.
`seal(key, plaintext, aad)` is a fresh random 12-byte nonce followed by the AES-256-GCM
ciphertext and its 16-byte tag; `unseal` reverses it or raises UnsealFailed. Callers choose the
purpose and the associated data, and any text encoding around the sealed bytes (base64 where a
session keeps it in JSON); crypto/FORMAT.md lists each use. The known-answer file is
`tests/vectors/sealing-v1.json`.

`SealedWriter` and `open_sealed` seal a stream of any length (a resumable upload's tail) as
chunks, STREAM-style (Hoang, Reyhanitabar, Rogaway and Vizár, 2015): a random 16-byte salt
heads the stream and gives it its own key, `derive(key, "desk sealed stream " || salt)`; chunk
i is sealed with the nonce i (11 bytes, big-endian) || last (1 byte, 1 for the final chunk,
else 0) and the associated data `aad || i (8 bytes, big-endian) || last`, and framed by a 4-byte
big-endian word: the sealed chunk's length, with the top bit set on the final chunk. Chunks
cannot be reordered, dropped, moved to another stream or cut off at the end unnoticed; a
stream that lacks its final chunk (its writer died) does not open.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

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


STREAM_SALT_BYTES = 16
STREAM_CHUNK = 64 * 1024
STREAM_INFO = b"desk sealed stream "
_LAST = 0x80000000


class SealedWriter:
    """Seals what is written to it, chunk by chunk, onto `out`; `close` seals the final chunk
    (the stream does not open without it)."""

    def __init__(self, key: bytes, aad: bytes, out: BinaryIO) -> None:
        salt = os.urandom(STREAM_SALT_BYTES)
        self._cipher = _cipher(derive(key, STREAM_INFO + salt))
        self._aad = aad
        self._out = out
        self._index = 0
        self._buffer = bytearray()
        out.write(salt)

    def write(self, data: bytes) -> None:
        """Seal `data` (whole chunks go out at once; the rest waits in memory)."""
        self._buffer += data
        while len(self._buffer) > STREAM_CHUNK:
            self._chunk(bytes(self._buffer[:STREAM_CHUNK]), last=False)
            del self._buffer[:STREAM_CHUNK]

    def close(self) -> None:
        """Seal what is left as the final chunk (possibly empty)."""
        self._chunk(bytes(self._buffer), last=True)
        self._buffer.clear()

    def _chunk(self, data: bytes, last: bool) -> None:
        nonce, aad = _chunk_nonce(self._index, last, self._aad)
        sealed = self._cipher.encrypt(nonce, data, aad)
        self._out.write((len(sealed) | (_LAST if last else 0)).to_bytes(4, "big") + sealed)
        self._index += 1


def open_sealed(key: bytes, aad: bytes, source: BinaryIO) -> Iterator[bytes]:
    """The plaintext chunks of a stream `SealedWriter` made with `key` and `aad`; UnsealFailed,
    on the chunk where it shows, if anything differs, is missing or follows the final chunk."""
    salt = source.read(STREAM_SALT_BYTES)
    if len(salt) != STREAM_SALT_BYTES:
        raise UnsealFailed("sealed stream too short")
    cipher = _cipher(derive(key, STREAM_INFO + salt))
    index = 0
    while True:
        _length, last, sealed = _frame(source)
        nonce, chunk_aad = _chunk_nonce(index, last, aad)
        try:
            yield cipher.decrypt(nonce, sealed, chunk_aad)
        except InvalidTag as exc:
            raise UnsealFailed(f"sealed stream chunk {index} does not open") from exc
        if last:
            if source.read(1):
                raise UnsealFailed("data after the end of a sealed stream")
            return
        index += 1


def sealed_plaintext_size(source: BinaryIO) -> int | None:
    """The plaintext size of a sealed stream from its framing alone (no key: for checks of a
    store's leftovers); None if it is not whole (a writer died before its final chunk)."""
    if len(source.read(STREAM_SALT_BYTES)) != STREAM_SALT_BYTES:
        return None
    total = 0
    try:
        while True:
            _length, last, sealed = _frame(source)
            total += len(sealed) - TAG_BYTES
            if last:
                return None if source.read(1) else total
    except UnsealFailed:
        return None


def _frame(source: BinaryIO) -> tuple[int, bool, bytes]:
    word = source.read(4)
    if len(word) != 4:
        raise UnsealFailed("sealed stream cut off (no final chunk)")
    value = int.from_bytes(word, "big")
    length, last = value & ~_LAST, bool(value & _LAST)
    if not TAG_BYTES <= length <= STREAM_CHUNK + TAG_BYTES:
        raise UnsealFailed("bad chunk length in a sealed stream")
    sealed = source.read(length)
    if len(sealed) != length:
        raise UnsealFailed("sealed stream cut off mid-chunk")
    return length, last, sealed


def _chunk_nonce(index: int, last: bool, aad: bytes) -> tuple[bytes, bytes]:
    flag = b"\x01" if last else b"\x00"
    return index.to_bytes(11, "big") + flag, aad + index.to_bytes(8, "big") + flag
