"""The chain of custody: append-only, hash-linked entries signed with the desk's Ed25519 key.

Written by the online desk from the moment of receipt, verified by `desk custody verify` and by
the offline console on a bundle. crypto/FORMAT.md specifies the entry layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto.errors import CustodyBroken, FormatError
from crypto.names import HIDDEN_PREFIX, OBJECT_ID_RE

CUSTODY_VERSION = 1
GENESIS_HASH = "0" * 64
EVENTS = frozenset({"ingest", "export", "download", "delete", "reply"})
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


class SigningKey:
    """The desk's Ed25519 custody signing key. Its repr hides it."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public_hex})"

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read a key written by `save`."""
        raw = bytes.fromhex(path.read_text().strip())
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def save(self, path: Path) -> None:
        """Write the key as hex to a new file readable by its owner only."""
        raw = self._private.private_bytes_raw()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(raw.hex() + "\n")

    @property
    def public_hex(self) -> str:
        """The raw 32-byte public key as hex, as bundles carry it."""
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sign(self, message: bytes) -> str:
        """An Ed25519 signature of `message`, as hex."""
        return self._private.sign(message).hex()


def signature_valid(public_hex: str, message: bytes, signature_hex: str) -> bool:
    """True if `signature_hex` is the desk key `public_hex`'s Ed25519 signature of `message`."""
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
        public.verify(bytes.fromhex(signature_hex), message)
    except (ValueError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class CustodyEntry:
    """One link of the chain."""

    seq: int
    on: date
    event: str
    object_id: str | None
    ciphertext_sha256: str | None
    actor: str | None
    prev_hash: str
    entry_hash: str
    signature: str

    def to_json(self) -> str:
        """One line of JSON, as bundles and `desk custody show` carry it."""
        record = asdict(self)
        record["on"] = self.on.isoformat()
        return json.dumps(record, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> CustodyEntry:
        """Parse one line written by `to_json`."""
        try:
            raw = json.loads(line)
            return cls(seq=raw["seq"], on=date.fromisoformat(raw["on"]), event=raw["event"],
                       object_id=raw["object_id"], ciphertext_sha256=raw["ciphertext_sha256"],
                       actor=raw["actor"], prev_hash=raw["prev_hash"],
                       entry_hash=raw["entry_hash"], signature=raw["signature"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"bad custody entry: {exc}") from exc


def entry_body(seq: int, on: date, event: str, object_id: str | None,
               ciphertext_sha256: str | None, actor: str | None, prev_hash: str) -> bytes:
    """The canonical bytes an entry's hash covers: sorted-key compact JSON, UTF-8."""
    return json.dumps({
        "v": CUSTODY_VERSION, "seq": seq, "on": on.isoformat(), "event": event,
        "object_id": object_id, "ciphertext_sha256": ciphertext_sha256, "actor": actor,
        "prev_hash": prev_hash,
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def make_entry(key: SigningKey, previous: CustodyEntry | None, on: date, event: str,
               object_id: str | None = None, ciphertext_sha256: str | None = None,
               actor: str | None = None) -> CustodyEntry:
    """The signed entry that follows `previous` (None for the first entry)."""
    if event not in EVENTS:
        raise ValueError(f"unknown custody event: {event!r}")
    seq = 1 if previous is None else previous.seq + 1
    prev_hash = GENESIS_HASH if previous is None else previous.entry_hash
    body = entry_body(seq, on, event, object_id, ciphertext_sha256, actor, prev_hash)
    entry_hash = hashlib.sha256(body).hexdigest()
    return CustodyEntry(seq, on, event, object_id, ciphertext_sha256, actor, prev_hash,
                        entry_hash, key.sign(bytes.fromhex(entry_hash)))


def verify_chain(entries: Iterable[CustodyEntry], public_hex: str) -> list[CustodyEntry]:
    """Check a whole chain from its first entry; return it, or raise CustodyBroken at the
    first entry that is missing, out of order, altered, or not signed by `public_hex`."""
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    checked: list[CustodyEntry] = []
    expected_prev, expected_seq = GENESIS_HASH, 1
    for entry in entries:
        if entry.seq != expected_seq:
            raise CustodyBroken(f"expected entry {expected_seq}, found {entry.seq} (an entry "
                                "is missing or out of order)", seq=expected_seq)
        _check_fields(entry)
        if entry.prev_hash != expected_prev:
            raise CustodyBroken("does not link to the entry before it", seq=entry.seq)
        body = entry_body(entry.seq, entry.on, entry.event, entry.object_id,
                          entry.ciphertext_sha256, entry.actor, entry.prev_hash)
        if hashlib.sha256(body).hexdigest() != entry.entry_hash:
            raise CustodyBroken("its contents do not match its hash (altered)", seq=entry.seq)
        try:
            public.verify(bytes.fromhex(entry.signature), bytes.fromhex(entry.entry_hash))
        except (InvalidSignature, ValueError) as exc:
            raise CustodyBroken("its signature is not the desk's", seq=entry.seq) from exc
        checked.append(entry)
        expected_prev, expected_seq = entry.entry_hash, entry.seq + 1
    return checked


def _check_fields(entry: CustodyEntry) -> None:
    if entry.event not in EVENTS:
        raise CustodyBroken(f"unknown event {entry.event!r}", seq=entry.seq)
    if entry.object_id is not None and not OBJECT_ID_RE.match(entry.object_id):
        raise CustodyBroken("bad object id", seq=entry.seq)
    for value in (entry.ciphertext_sha256, entry.prev_hash, entry.entry_hash):
        if value is not None and not HEX64_RE.match(value):
            raise CustodyBroken("bad hash field", seq=entry.seq)


def ciphertext_digest(files: Mapping[str, tuple[int, str]]) -> str:
    """The SHA-256 that custody records for an object: over 'name size sha256' lines of every
    ciphertext file, sorted by name (FORMAT.md, "Ciphertext digest")."""
    lines = "".join(f"{name} {size} {sha}\n" for name, (size, sha) in sorted(files.items()))
    return hashlib.sha256(lines.encode("ascii")).hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> tuple[int, str]:
    """Size and SHA-256 of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def object_files(directory: Path) -> dict[str, tuple[int, str]]:
    """Size and SHA-256 of each ciphertext file of a stored object directory."""
    return {path.name: file_sha256(path) for path in sorted(directory.iterdir())
            if path.is_file() and not path.name.startswith(HIDDEN_PREFIX)}


def entries_from_lines(lines: Iterable[str]) -> Iterator[CustodyEntry]:
    """Parse JSON lines, skipping blank ones."""
    for line in lines:
        if line.strip():
            yield CustodyEntry.from_json(line)
