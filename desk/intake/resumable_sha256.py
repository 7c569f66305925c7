"""A SHA-256 that stops at the end of one request and goes on in another: its state is data.

A resumable upload arrives over many requests, perhaps days apart and in other server
processes, and the desk keeps none of its bytes readable in between. To hand the source the
SHA-256 of the whole file when its last byte arrives (the receipt a form post gives), the
hash's state after each request is kept, sealed in the upload's record: the eight chaining
words, the count of bytes hashed, and the 0 to 63 bytes not yet in a whole block. hashlib can
neither export nor import that state, so the hashing is done by OpenSSL's SHA256_* functions
(the libcrypto that Python's hashlib and ssl load) on a SHA256_CTX this module fills in.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import re

BLOCK = 64
WORDS_RE = re.compile(r"[0-9a-f]{64}")
# Where OpenSSL 3 is not found by name (no ldconfig cache), its usual file name.
LIBCRYPTO_NAMES = ("libcrypto.so.3",)


class _Context(ctypes.Structure):
    """OpenSSL's SHA256_CTX (openssl/sha.h), a public structure: the chaining words, the bit
    count in two 32-bit halves, the partial block, its length, and the digest length."""

    _fields_ = (("h", ctypes.c_uint32 * 8), ("Nl", ctypes.c_uint32), ("Nh", ctypes.c_uint32),
                ("data", ctypes.c_uint8 * BLOCK), ("num", ctypes.c_uint),
                ("md_len", ctypes.c_uint))


def _libcrypto() -> ctypes.CDLL:
    found = ctypes.util.find_library("crypto")
    for name in ((found,) if found else ()) + LIBCRYPTO_NAMES:
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        context = ctypes.POINTER(_Context)
        library.SHA256_Init.argtypes = (context,)
        library.SHA256_Init.restype = ctypes.c_int
        library.SHA256_Update.argtypes = (context, ctypes.c_char_p, ctypes.c_size_t)
        library.SHA256_Update.restype = ctypes.c_int
        library.SHA256_Final.argtypes = (ctypes.c_char_p, context)
        library.SHA256_Final.restype = ctypes.c_int
        return library
    raise OSError("OpenSSL's libcrypto was not found")


_LIB = _libcrypto()


class ResumableSha256:
    """SHA-256 of the bytes given to `update`, whose state `dump` writes as JSON-ready data
    and `load` reads back, in this process or another."""

    def __init__(self) -> None:
        self._context = _Context()
        _LIB.SHA256_Init(ctypes.byref(self._context))

    def update(self, data: bytes) -> None:
        """Hash `data` after everything before it."""
        if data:
            _LIB.SHA256_Update(ctypes.byref(self._context), data, len(data))

    def hexdigest(self) -> str:
        """The digest of everything so far; the state goes on unchanged."""
        copy = _Context.from_buffer_copy(self._context)
        digest = ctypes.create_string_buffer(32)
        _LIB.SHA256_Final(digest, ctypes.byref(copy))
        return digest.raw.hex()

    def dump(self) -> list[str | int]:
        """[the chaining words as 64 hex digits (each word big-endian), the count of bytes
        hashed, standard base64 of the bytes past the last whole block]."""
        context = self._context
        words = b"".join(word.to_bytes(4, "big") for word in context.h)
        count = ((context.Nh << 32) | context.Nl) >> 3
        rest = bytes(context.data[:context.num])
        return [words.hex(), count, base64.b64encode(rest).decode("ascii")]

    @classmethod
    def load(cls, state: object) -> ResumableSha256:
        """The hash `dump` described; ValueError for anything it could not have written."""
        if not isinstance(state, list) or len(state) != 3:
            raise ValueError("not a SHA-256 state")
        words, count, encoded = state
        if not isinstance(words, str) or not WORDS_RE.fullmatch(words) or \
                not isinstance(count, int) or isinstance(count, bool) or count < 0 or \
                count >= 1 << 61 or not isinstance(encoded, str):
            raise ValueError("not a SHA-256 state")
        try:
            rest = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("not a SHA-256 state: bad base64") from exc
        if len(rest) != count % BLOCK:
            raise ValueError("not a SHA-256 state: the partial block does not match the count")
        hashed = cls()
        context = hashed._context
        raw = bytes.fromhex(words)
        for index in range(8):
            context.h[index] = int.from_bytes(raw[4 * index:4 * index + 4], "big")
        bits = count << 3
        context.Nl, context.Nh = bits & 0xFFFFFFFF, bits >> 32
        ctypes.memmove(context.data, rest, len(rest))
        context.num = len(rest)
        return hashed
