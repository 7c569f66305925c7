"""The chain of custody: append-only, hash-linked entries signed with the desk's Ed25519 key.

Written by the online desk from the moment of receipt, verified by `desk custody verify` and by
the offline console on a bundle. crypto/FORMAT.md specifies the entry layout.

An entry names what it is about by a subject and a digest. In version 1 they are the item's or
reply's id and ciphertext digest in clear. In version 2 (every item and reply received since)
they are HMAC-SHA256 commitments under the item's own random custody key, which lives in the
item's row and travels in bundles; once the item is deleted, its key is gone and the entries
about it say nothing about which item it was.
"""

from __future__ import annotations

import hashlib
import hmac
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

from crypto.durable import write_durably
from crypto.errors import CustodyBroken, FormatError, load_json
from crypto.names import HIDDEN_PREFIX, OBJECT_ID_RE

# Version 1 entries name items in clear; version 2 entries carry keyed commitments.
CUSTODY_VERSIONS = (1, 2)
CUSTODY_KEY_BYTES = 32
SUBJECT_CONTEXT = b"desk custody subject v2\x00"
DIGEST_CONTEXT = b"desk custody digest v2\x00"
GENESIS_HASH = "0" * 64
EVENTS = frozenset({"ingest", "export", "download", "delete", "reply"})
# The events that bring an object or a reply into the log; every later entry about it carries
# the digest they recorded.
FIRST_EVENTS = frozenset({"ingest", "reply"})
# Every field of an entry is drawn from a small ASCII alphabet (FORMAT.md, "Custody entry"), so
# any JSON encoder writes the same canonical bytes. \Z, not $: "$" matches before a newline.
HEX64_RE = re.compile(r"^[0-9a-f]{64}\Z")
SIGNATURE_RE = re.compile(r"^[0-9a-f]{128}\Z")
# Journalists' usernames, and the fixed actors below, which no journalist may be called.
CLI_ACTOR = "desk-cli"  # the server's command line
RETENTION_ACTOR = "retention"  # deletions after the retention period
FIXED_ACTORS = frozenset({CLI_ACTOR, RETENTION_ACTOR})
ACTOR_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
# seq must stay exact in JSON parsers that read numbers as IEEE doubles.
MAX_SEQ = 2**53 - 1
# The members of an entry's line, by version: version 1's names are the clear id and digest.
V1_NAMES = ("object_id", "ciphertext_sha256")
V2_NAMES = ("subject", "digest")
COMMON_MEMBERS = frozenset({"seq", "on", "event", "actor", "prev_hash", "entry_hash",
                            "signature"})
ENTRY_MEMBERS = {1: COMMON_MEMBERS | set(V1_NAMES), 2: COMMON_MEMBERS | set(V2_NAMES) | {"v"}}


def new_custody_key() -> bytes:
    """A fresh random custody key for an item or a reply."""
    return os.urandom(CUSTODY_KEY_BYTES)


@dataclass(frozen=True)
class Subject:
    """What custody entries about one item or reply carry, and in which version.

    `custody_key` is None for items received before version 2: their entries name them in
    clear.
    """

    object_id: str
    ciphertext_sha256: str
    custody_key: bytes | None = None

    @property
    def version(self) -> int:
        """The custody version of every entry about it."""
        return 1 if self.custody_key is None else 2

    @property
    def subject(self) -> str:
        """The entries' `subject` (version 2) or `object_id` (version 1)."""
        if self.custody_key is None:
            return self.object_id
        return _commit(self.custody_key, SUBJECT_CONTEXT, self.object_id)

    @property
    def digest(self) -> str:
        """The entries' `digest` (version 2) or `ciphertext_sha256` (version 1)."""
        if self.custody_key is None:
            return self.ciphertext_sha256
        return _commit(self.custody_key, DIGEST_CONTEXT, self.ciphertext_sha256)

    def matches(self, entry: CustodyEntry) -> bool:
        """True if `entry` is about this item or reply, as received."""
        return (entry.version, entry.subject, entry.digest) == \
            (self.version, self.subject, self.digest)


def _commit(key: bytes, context: bytes, value: str) -> str:
    return hmac.new(key, context + value.encode("ascii"), hashlib.sha256).hexdigest()


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
        """Write the key as hex to a new file readable by its owner only, durably;
        FileExistsError if there is one."""
        raw = self._private.private_bytes_raw()
        write_durably(path, (raw.hex() + "\n").encode("ascii"), replace=False)

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
    # The item or reply concerned and its digest: in clear in version 1, committed in 2.
    subject: str | None
    digest: str | None
    actor: str | None
    prev_hash: str
    entry_hash: str
    signature: str
    version: int = 1

    def to_json(self) -> str:
        """One line of JSON, as bundles and `desk custody show` carry it."""
        record: dict[str, object] = asdict(self)
        record["on"] = self.on.isoformat()
        del record["version"], record["subject"], record["digest"]
        names = V1_NAMES if self.version == 1 else V2_NAMES
        record[names[0]], record[names[1]] = self.subject, self.digest
        if self.version != 1:
            record["v"] = self.version
        return json.dumps(record, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> CustodyEntry:
        """Parse one line written by `to_json`: a JSON object with exactly the members of its
        version, of the right JSON types; FormatError otherwise. A line without `v` is version
        1; one whose `v` is not 2 is refused. Field alphabets are verify_chain's to check."""
        raw = load_json(line.encode("utf-8", "surrogatepass"), "custody entry")
        if not isinstance(raw, dict):
            raise FormatError("bad custody entry: not a JSON object")
        version = raw.get("v", 1)
        if "v" in raw and (type(version) is not int or version == 1 or
                           version not in CUSTODY_VERSIONS):
            raise FormatError(f"custody entry of an unsupported version: {raw['v']!r}")
        if set(raw) != ENTRY_MEMBERS[version]:
            raise FormatError("bad custody entry: its members are not "
                              + ", ".join(sorted(ENTRY_MEMBERS[version])))
        subject_name, digest_name = V1_NAMES if version == 1 else V2_NAMES
        seq, on = raw["seq"], raw["on"]
        if type(seq) is not int:
            raise FormatError(f"bad custody entry: seq is not an integer: {seq!r}")
        if not isinstance(on, str) or not DATE_RE.match(on):
            raise FormatError(f"bad custody entry: on is not a YYYY-MM-DD date: {on!r}")
        strings = ("event", "prev_hash", "entry_hash", "signature")
        nullable = (subject_name, digest_name, "actor")
        if not all(isinstance(raw[name], str) for name in strings) or \
                not all(raw[name] is None or isinstance(raw[name], str) for name in nullable):
            raise FormatError("bad custody entry: a field is not a string (or null)")
        try:
            day = date.fromisoformat(on)
        except ValueError as exc:
            raise FormatError(f"bad custody entry: no such day: {on!r}") from exc
        return cls(seq=seq, on=day, event=raw["event"], subject=raw[subject_name],
                   digest=raw[digest_name], actor=raw["actor"], prev_hash=raw["prev_hash"],
                   entry_hash=raw["entry_hash"], signature=raw["signature"], version=version)


def entry_body(seq: int, on: date, event: str, subject: str | None, digest: str | None,
               actor: str | None, prev_hash: str, version: int = 1) -> bytes:
    """The canonical bytes an entry's hash covers: sorted-key compact JSON, UTF-8."""
    subject_name, digest_name = V1_NAMES if version == 1 else V2_NAMES
    return json.dumps({
        "v": version, "seq": seq, "on": on.isoformat(), "event": event,
        subject_name: subject, digest_name: digest, "actor": actor, "prev_hash": prev_hash,
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def make_entry(key: SigningKey, previous: CustodyEntry | None, on: date, event: str,
               subject: str | None = None, digest: str | None = None,
               actor: str | None = None, version: int = 1) -> CustodyEntry:
    """The signed entry that follows `previous` (None for the first entry). ValueError for
    an entry FORMAT.md's rules would refuse: a field outside its alphabet, or nulls where
    the event needs values. `subject_entry` makes the entry about an item or a reply."""
    seq = 1 if previous is None else previous.seq + 1
    prev_hash = GENESIS_HASH if previous is None else previous.entry_hash
    problem = _field_problem(seq, event, subject, digest, actor, version) or \
        _shape_problem(event, subject, digest, actor)
    if problem is not None:
        raise ValueError(f"refusing to append a custody entry: {problem}")
    body = entry_body(seq, on, event, subject, digest, actor, prev_hash, version)
    entry_hash = hashlib.sha256(body).hexdigest()
    return CustodyEntry(seq, on, event, subject, digest, actor, prev_hash, entry_hash,
                        key.sign(bytes.fromhex(entry_hash)), version)


def subject_entry(key: SigningKey, previous: CustodyEntry | None, on: date, event: str,
                  about: Subject, actor: str | None = None) -> CustodyEntry:
    """The signed entry about an item or reply, in the version its custody key calls for."""
    return make_entry(key, previous, on, event, about.subject, about.digest, actor,
                      about.version)


def verify_chain(entries: Iterable[CustodyEntry], public_hex: str) -> list[CustodyEntry]:
    """Check a whole chain from its first entry; return it, or raise CustodyBroken at the
    first entry that is missing, out of order, altered, or not signed by `public_hex`."""
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    checked: list[CustodyEntry] = []
    expected_prev, expected_seq = GENESIS_HASH, 1
    # The digest each object or reply entered the log with.
    first_digest: dict[str, str | None] = {}
    for entry in entries:
        if type(entry.seq) is not int or entry.seq != expected_seq:
            raise CustodyBroken(f"expected entry {expected_seq}, found {entry.seq} (an entry "
                                "is missing or out of order)", seq=expected_seq)
        problem = _field_problem(entry.seq, entry.event, entry.subject, entry.digest,
                                 entry.actor, entry.version) or _hashes_problem(entry)
        if problem is not None:
            raise CustodyBroken(problem, seq=entry.seq)
        if entry.prev_hash != expected_prev:
            raise CustodyBroken("does not link to the entry before it", seq=entry.seq)
        body = entry_body(entry.seq, entry.on, entry.event, entry.subject, entry.digest,
                          entry.actor, entry.prev_hash, entry.version)
        if hashlib.sha256(body).hexdigest() != entry.entry_hash:
            raise CustodyBroken("its contents do not match its hash (altered)", seq=entry.seq)
        try:
            public.verify(bytes.fromhex(entry.signature), bytes.fromhex(entry.entry_hash))
        except (InvalidSignature, ValueError) as exc:
            raise CustodyBroken("its signature is not the desk's", seq=entry.seq) from exc
        problem = _shape_problem(entry.event, entry.subject, entry.digest, entry.actor) or \
            _history_problem(entry, first_digest)
        if problem is not None:
            raise CustodyBroken(problem, seq=entry.seq)
        checked.append(entry)
        expected_prev, expected_seq = entry.entry_hash, entry.seq + 1
    return checked


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.match(value) is not None


def _field_problem(seq: int, event: str, subject: str | None, digest: str | None,
                   actor: str | None, version: int = 1) -> str | None:
    """What puts a field outside its alphabet (rule custody.alphabet), or None."""
    if version not in CUSTODY_VERSIONS:
        return f"unknown custody version {version!r}"
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        return f"bad seq {seq!r}"
    if event not in EVENTS:
        return f"unknown event {event!r}"
    if subject is not None and not _matches(OBJECT_ID_RE if version == 1 else HEX64_RE,
                                            subject):
        return "bad object id" if version == 1 else "bad subject"
    if digest is not None and not _matches(HEX64_RE, digest):
        return "bad hash field"
    if actor is not None and not _matches(ACTOR_RE, actor):
        return f"bad actor {actor!r}"
    return None


def _hashes_problem(entry: CustodyEntry) -> str | None:
    if not _matches(HEX64_RE, entry.prev_hash) or not _matches(HEX64_RE, entry.entry_hash):
        return "bad hash field"
    if not _matches(SIGNATURE_RE, entry.signature):
        return "bad signature field: not 128 lower-case hex digits"
    return None


def _shape_problem(event: str, subject: str | None, digest: str | None,
                   actor: str | None) -> str | None:
    """Nulls where the event needs values, or an actor on an ingest (rule custody.shape)."""
    if subject is None or digest is None:
        return f"a {event} entry names no object or no digest"
    if (actor is None) != (event == "ingest"):
        return "an ingest entry has no actor, and every other entry has one"
    return None


def _history_problem(entry: CustodyEntry, first_digest: dict[str, str | None]) -> str | None:
    """An object or reply that enters the log twice, is named before it entered, or whose
    digest changes (rule custody.object); records the entries that bring one in."""
    subject = entry.subject or ""
    if entry.event in FIRST_EVENTS:
        if subject in first_digest:
            return f"{subject} entered the log before ({entry.event} again)"
        first_digest[subject] = entry.digest
        return None
    if subject not in first_digest:
        return f"{entry.event} of {subject}, which no earlier ingest or reply entry names"
    if first_digest[subject] != entry.digest:
        return f"{entry.event} of {subject} with a digest other than the one it entered with"
    return None


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


def log_entries(data: bytes) -> Iterator[CustodyEntry]:
    """The entries of a custody log as bundles carry it: ASCII text, one JSON line per entry,
    each ending in LF; lines of nothing but spaces, tabs and CRs are skipped. FormatError if
    it is not ASCII or a line is not an entry."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FormatError("the custody log is not ASCII text") from exc
    # LF only: str.splitlines would also split at form feeds and \x1c-\x1e, which other
    # readers take as part of a line.
    return (CustodyEntry.from_json(line) for line in text.split("\n")
            if line.strip(" \t\r"))


def entries_from_lines(lines: Iterable[str]) -> Iterator[CustodyEntry]:
    """Parse JSON lines, skipping blank ones."""
    for line in lines:
        if line.strip():
            yield CustodyEntry.from_json(line)
