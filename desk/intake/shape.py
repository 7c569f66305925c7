"""The stored shape of an item, the same however it was sent (crypto/FORMAT.md, version 2).

An item of L bytes is padded with zeros to Padmé(L) and cut into parts of PART_SIZE plaintext
bytes, all but the last exactly that size. A form post, a tus upload in one PATCH and one in
many therefore leave the same number of files of the same sizes.
"""

from __future__ import annotations

import hashlib

from crypto.gpg import Readable
from crypto.items import padme

# The canonical plaintext size of a part: a server constant, not a setting.
PART_SIZE = 64 * 1024 * 1024
# Test hook, None (off) unless a test sets it in the server's own process: parts then have
# this size instead, so that tests see several parts without sending hundreds of MiB. Nothing
# in the desk reads it from a setting or the environment.
simulated_part_size: int | None = None
ZERO_CHUNK = 1 << 20


def part_size() -> int:
    """The plaintext size of every part but an item's last."""
    return simulated_part_size or PART_SIZE


def part_count(length: int) -> int:
    """How many parts an item of `length` bytes is stored as (at least one)."""
    return max(1, -(-padme(length) // part_size()))


class PaddedStream:
    """What `source` yields, then zeros up to Padmé of its length; hashes the content."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self._pending = b""
        self._sha256 = hashlib.sha256()
        self.size = 0  # content bytes read so far
        self._padded: int | None = None  # Padmé(size), once the source has ended
        self._emitted = 0

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (of content, then of padding); b'' at the padded end."""
        if self._pending:
            data, self._pending = self._pending, b""
            if 0 <= n < len(data):
                data, self._pending = data[:n], data[n:]
            self._emitted += len(data)
            return data
        if self._padded is None:
            data = self._source.read(n)
            if data:
                self._sha256.update(data)
                self.size += len(data)
                self._emitted += len(data)
                return data
            self._padded = padme(self.size)
        want = self._padded - self._emitted
        if n >= 0:
            want = min(want, n)
        zeros = bytes(min(want, ZERO_CHUNK))
        self._emitted += len(zeros)
        return zeros

    def more(self) -> bool:
        """Whether any byte is left (reading ahead from the source if need be)."""
        if self._pending:
            return True
        if self._padded is None:
            data = self.read()
            if data:
                self._emitted -= len(data)
                self._pending = data
                return True
        return self._padded is not None and self._emitted < self._padded

    def content_sha256(self) -> str:
        """SHA-256 of the content (without padding); complete once the source has ended."""
        return self._sha256.hexdigest()


class Limited:
    """At most `limit` bytes of `source`."""

    def __init__(self, source: Readable, limit: int) -> None:
        self._source = source
        self._left = limit

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes, never past the limit."""
        if self._left <= 0:
            return b""
        data = self._source.read(self._left if n < 0 else min(n, self._left))
        self._left -= len(data)
        return data


class PaddedTo:
    """What `source` yields, then zeros up to `total` bytes in all."""

    def __init__(self, source: Readable, total: int) -> None:
        self._source = source
        self._left = total
        self._ended = False

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes; b'' after `total`."""
        want = self._left if n < 0 else min(n, self._left)
        if want <= 0:
            return b""
        data = b"" if self._ended else self._source.read(want)
        if not data:
            self._ended = True
            data = bytes(min(want, ZERO_CHUNK))
        self._left -= len(data)
        return data
