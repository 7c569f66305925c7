"""An independent reader of the desk's interchange format, written from crypto/FORMAT.md alone.

It imports nothing of the desk: only the standard library and `cryptography`, and it runs
stock gpg for OpenPGP. Given vector files from tests/vectors/, it says for each whether it
accepts it or rejects it, and under which of FORMAT.md's rules, so that the test suite can
show that the document is enough to implement the format.

    python checker.py VECTOR.json [VECTOR.json ...]

prints one JSON object per line: {"file", "verdict": "accept" | "reject", "rule", "reason"}.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import io
import json
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class Reject(Exception):
    """The input breaks `rule`."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule, self.reason = rule, reason


def require(condition: object, rule: str, reason: str) -> None:
    """Reject under `rule` unless `condition` holds."""
    if not condition:
        raise Reject(rule, reason)


# Conventions

HEX32 = re.compile(r"[0-9a-f]{32}")
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX128 = re.compile(r"[0-9a-f]{128}")
FINGERPRINT = re.compile(r"[0-9A-F]{40}")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
INSTANT = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
                     r"(\.[0-9]{1,6})?(Z|[+-]([0-9]{2}):([0-9]{2}))")
ACTOR = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
LARGEST = 2**53 - 1


def full(pattern: re.Pattern[str], value: object) -> bool:
    """True if `value` is a string that `pattern` matches from end to end."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def is_int(value: object) -> bool:
    """A JSON integer (not a boolean)."""
    return type(value) is int


def is_date(value: object) -> bool:
    """YYYY-MM-DD, a real day."""
    if not full(DATE, value):
        return False
    year, month, day = (int(x) for x in str(value).split("-"))
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def is_instant(value: object) -> bool:
    """FORMAT.md's RFC 3339 profile: always a zone, at most six fractional digits."""
    match = INSTANT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if match.group(9) is not None and (int(match.group(9)) > 23 or int(match.group(10)) > 59):
        return False
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({name for name, _ in pairs}) != len(pairs):
        raise ValueError("repeated member name")
    return dict(pairs)


def _number(text: str) -> int:
    if any(c in text for c in ".eE"):
        raise ValueError(f"not an integer: {text}")
    value = int(text)
    if abs(value) > LARGEST:
        raise ValueError(f"integer out of range: {text}")
    return value


def _constant(text: str) -> None:
    raise ValueError(f"not JSON: {text}")


def _walk(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield name
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def load(data: bytes, rule: str) -> dict[str, Any]:
    """A JSON document of FORMAT.md's profile whose top level is an object."""
    try:
        text = data.decode("utf-8")
        require(not text.startswith("\ufeff"), rule, "byte order mark")
        value = json.loads(text, object_pairs_hook=_pairs, parse_int=_number,
                           parse_float=_number, parse_constant=_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Reject(rule, f"not JSON of the profile: {exc}") from exc
    require(isinstance(value, dict), rule, "the top level is not an object")
    for string in _walk(value):
        require(not any(0xD800 <= ord(c) <= 0xDFFF for c in string), rule, "lone surrogate")
    return value


def b64(value: object, rule: str) -> bytes:
    """Canonical standard base64 with padding."""
    require(isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", value)
            and len(value) % 4 == 0, rule, "not base64")
    try:
        decoded = base64.b64decode(str(value), validate=True)
    except binascii.Error as exc:
        raise Reject(rule, f"not base64: {exc}") from exc
    require(base64.b64encode(decoded).decode() == value, rule, "base64 not canonical")
    return decoded


def sha256(data: bytes) -> str:
    """Lower-case hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


# OpenPGP, with stock gpg


class Gpg:
    """A throwaway GnuPG home."""

    def __init__(self, home: Path) -> None:
        home.mkdir(mode=0o700)
        self.home = home

    def run(self, *args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        """gpg in batch mode in this home."""
        return subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--no-tty", "--pinentry-mode",
             "loopback", "--passphrase", "", *args],
            input=data, capture_output=True, check=False, timeout=120)

    def import_keys(self, data: bytes) -> None:
        """Import keys (public or secret)."""
        result = self.run("--import", data=data)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.decode(errors="replace"))

    def decrypt(self, data: bytes) -> bytes | None:
        """The plaintext, or None when gpg does not finish cleanly."""
        result = self.run("--quiet", "--decrypt", data=data)
        return result.stdout if result.returncode == 0 else None

    def signer(self, signature: bytes, data: bytes) -> str | None:
        """The primary fingerprint of a valid key in this home that made `signature`."""
        with tempfile.TemporaryDirectory() as folder:
            sig, signed = Path(folder) / "sig", Path(folder) / "data"
            sig.write_bytes(signature)
            signed.write_bytes(data)
            result = self.run("--status-fd", "1", "--verify", str(sig), str(signed))
        if result.returncode != 0:
            return None
        status = result.stdout.decode(errors="replace").splitlines()
        if not any(line.startswith("[GNUPG:] GOODSIG ") for line in status):
            return None
        for line in status:
            if line.startswith("[GNUPG:] VALIDSIG "):
                return line.split()[-1]
        return None

    def recipients(self, message: bytes) -> set[str]:
        """The key ids of a message's PKESK packets, read without decrypting."""
        result = self.run("--list-packets", data=message)
        text = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
        return {key.upper() for key in re.findall(r"pubkey enc packet:.*keyid ([0-9A-Fa-f]{16})",
                                                  text)}

    def keys(self) -> dict[str, set[str]]:
        """Primary fingerprint -> key ids of its currently usable encryption (sub)keys."""
        listing = self.run("--with-colons", "--list-keys").stdout.decode()
        keys: dict[str, set[str]] = {}
        current: str | None = None
        pending: tuple[str, bool] | None = None
        now = datetime.now(UTC).timestamp()
        for line in listing.splitlines():
            fields = line.split(":")
            if fields[0] in ("pub", "sub"):
                usable = fields[1] not in ("r", "e", "i", "d") and "e" in fields[11] and \
                    (not fields[6] or int(fields[6]) > now)
                pending = (fields[4].upper(), usable)
                if fields[0] == "pub":
                    current = None
            elif fields[0] == "fpr" and pending is not None:
                if current is None:
                    current = fields[9]
                    keys[current] = set()
                if pending[1]:
                    keys[current].add(pending[0])
                pending = None
        return keys


@contextmanager
def gpg_home() -> Iterator[Gpg]:
    """A GnuPG home that is removed, with its agent stopped, afterwards."""
    with tempfile.TemporaryDirectory(prefix="checker-") as folder:
        gpg = Gpg(Path(folder) / "g")
        try:
            yield gpg
        finally:
            subprocess.run(["gpgconf", "--homedir", str(gpg.home), "--kill", "gpg-agent"],
                           capture_output=True, check=False, timeout=30)


# Metadata record


def padme(length: int) -> int:
    """FORMAT.md's padded size: L rounded up to a multiple of 2^(E - S), E = floor(log2 L),
    S = floor(log2 E) + 1; 0 and 1 unchanged."""
    if length < 2:
        return length
    e = length.bit_length() - 1
    z = e - e.bit_length()
    return -(-length // (1 << z)) * (1 << z)


def check_record(data: bytes) -> dict[str, Any]:
    """Rules record.json to record.filename."""
    record = load(data, "record.json")
    require(record.get("format") == "desk-object", "record.format", "format")
    require(is_int(record.get("version")) and record["version"] in (1, 2), "record.version",
            "version")
    require(all(name in record for name in ("id", "kind", "received_at", "parts")) and
            all(record.get(name) is None or isinstance(record[name], str)
                for name in ("content_type", "filename")), "record.field", "members")
    require(full(HEX32, record["id"]), "record.id", "id")
    require(record["kind"] in ("message", "file"), "record.kind", "kind")
    require(is_instant(record["received_at"]), "record.instant", "received_at")
    parts = record["parts"]
    require(isinstance(parts, list) and all(isinstance(p, dict) for p in parts),
            "record.parts", "parts must be objects")
    sizes = [p.get("size") for p in parts]
    require(all(is_int(s) and s >= 0 for s in [*sizes, record.get("size")]) and
            (record["size"] == sum(sizes) if record["version"] == 1 else
             sum(sizes) == padme(record["size"])), "record.size", "sizes")
    require((record.get("sha256") is None or full(HEX64, record["sha256"])) and
            all(full(HEX64, p.get("sha256")) for p in parts), "record.hash", "hashes")
    require(1 <= len(parts) <= 1_000_000 and
            [p.get("name") for p in parts] == [f"part-{i:06d}.gpg" for i in range(len(parts))],
            "record.parts", "part names")
    if "filename_bytes" in record:
        b64(record["filename_bytes"], "record.filename")
    return record


# Ciphertext digest


def ciphertext_digest(files: dict[str, bytes]) -> str:
    """SHA-256 over 'name size sha256' lines, by name in byte order."""
    lines = b"".join(name.encode() + b" " + str(len(data)).encode() + b" " +
                     sha256(data).encode() + b"\n"
                     for name, data in sorted(files.items(), key=lambda item: item[0].encode()))
    return sha256(lines)


# Chain of custody

COMMON = {"seq", "on", "event", "actor", "prev_hash", "entry_hash", "signature"}
# Per version: the members of a line, and the names of its two fields about the item.
MEMBERS = {1: COMMON | {"object_id", "ciphertext_sha256"},
           2: COMMON | {"subject", "digest", "v"}}
NAMES = {1: ("object_id", "ciphertext_sha256"), 2: ("subject", "digest")}
EVENTS = ("ingest", "export", "download", "delete", "reply")


def _quoted(value: str | None) -> str:
    return "null" if value is None else f'"{value}"'


def version(entry: dict[str, Any]) -> int:
    """An entry's custody version: 1 without `v`."""
    return int(entry.get("v", 1))


def subject(entry: dict[str, Any]) -> str | None:
    """What the entry names: the id (version 1) or its commitment (version 2)."""
    value: str | None = entry[NAMES[version(entry)][0]]
    return value


def recorded(entry: dict[str, Any]) -> str | None:
    """The entry's digest: in clear (version 1) or its commitment (version 2)."""
    value: str | None = entry[NAMES[version(entry)][1]]
    return value


def commit(key_hex: str, label: str, value: str) -> str:
    """A version 2 commitment: HMAC-SHA256 under the custody key."""
    return hmac.new(bytes.fromhex(key_hex), label.encode() + b"\x00" + value.encode(),
                    hashlib.sha256).hexdigest()


def names_of(listed: dict[str, Any]) -> tuple[str, Any]:
    """What the log's entries about a listed object or reply carry, and a function that
    turns a ciphertext digest into what they record."""
    key = listed.get("custody_key")
    if key is None:
        return listed["id"], lambda digest: digest
    return (commit(key, "desk custody subject v2", listed["id"]),
            lambda digest: commit(key, "desk custody digest v2", digest))


def body(entry: dict[str, Any]) -> bytes:
    """The canonical body, by FORMAT.md's template (not through a JSON encoder)."""
    if version(entry) == 2:
        return (f'{{"actor":{_quoted(entry["actor"])},"digest":{_quoted(entry["digest"])},'
                f'"event":"{entry["event"]}","on":"{entry["on"]}",'
                f'"prev_hash":"{entry["prev_hash"]}","seq":{entry["seq"]},'
                f'"subject":{_quoted(entry["subject"])},"v":2}}').encode("ascii")
    return (f'{{"actor":{_quoted(entry["actor"])},'
            f'"ciphertext_sha256":{_quoted(entry["ciphertext_sha256"])},'
            f'"event":"{entry["event"]}","object_id":{_quoted(entry["object_id"])},'
            f'"on":"{entry["on"]}","prev_hash":"{entry["prev_hash"]}",'
            f'"seq":{entry["seq"]},"v":1}}').encode("ascii")


def canonical_line(entry: dict[str, Any]) -> str:
    """The line a writer writes for an entry."""
    return (f'{{"actor":{_quoted(entry["actor"])},'
            f'"ciphertext_sha256":{_quoted(entry["ciphertext_sha256"])},'
            f'"entry_hash":"{entry["entry_hash"]}","event":"{entry["event"]}",'
            f'"object_id":{_quoted(entry["object_id"])},"on":"{entry["on"]}",'
            f'"prev_hash":"{entry["prev_hash"]}","seq":{entry["seq"]},'
            f'"signature":"{entry["signature"]}"}}')


def parse_line(line: str) -> dict[str, Any]:
    """Rules custody.line and custody.version for one line."""
    entry = load(line.encode("ascii"), "custody.line")
    require("v" not in entry or (is_int(entry["v"]) and entry["v"] == 2), "custody.version",
            "a line of another version")
    require(set(entry) == MEMBERS[version(entry)], "custody.line", "members")
    require(is_int(entry["seq"]), "custody.line", "seq")
    require(is_date(entry["on"]), "custody.line", "on")
    require(all(isinstance(entry[k], str) for k in ("event", "prev_hash", "entry_hash",
                                                     "signature")) and
            all(entry[k] is None or isinstance(entry[k], str)
                for k in (*NAMES[version(entry)], "actor")), "custody.line", "types")
    return entry


def verify_log(log: bytes, public_hex: str) -> list[dict[str, Any]]:
    """Every rule from custody.line to custody.object; the entries."""
    try:
        text = log.decode("ascii")
    except UnicodeDecodeError as exc:
        raise Reject("custody.line", "not ASCII") from exc
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    entries: list[dict[str, Any]] = []
    first: dict[str, str] = {}
    for line in text.split("\n"):
        if not line.strip(" \t\r"):
            continue
        entry = parse_line(line)
        previous = entries[-1] if entries else None
        require(entry["seq"] == len(entries) + 1, "custody.seq", f"seq {entry['seq']}")
        require(entry["event"] in EVENTS and
                (subject(entry) is None or
                 full(HEX32 if version(entry) == 1 else HEX64, subject(entry))) and
                (recorded(entry) is None or full(HEX64, recorded(entry)))
                and (entry["actor"] is None or full(ACTOR, entry["actor"])) and
                full(HEX64, entry["prev_hash"]) and full(HEX64, entry["entry_hash"]) and
                full(HEX128, entry["signature"]) and entry["seq"] <= LARGEST,
                "custody.alphabet", "a field outside its alphabet")
        require(entry["prev_hash"] == (previous["entry_hash"] if previous else "0" * 64),
                "custody.link", "prev_hash")
        require(sha256(body(entry)) == entry["entry_hash"], "custody.hash", "entry_hash")
        try:
            key.verify(bytes.fromhex(entry["signature"]), bytes.fromhex(entry["entry_hash"]))
        except InvalidSignature as exc:
            raise Reject("custody.signature", f"entry {entry['seq']}") from exc
        name, digest = subject(entry), recorded(entry)
        require(name is not None and digest is not None and
                (entry["actor"] is None) == (entry["event"] == "ingest"), "custody.shape",
                "nulls")
        assert name is not None
        assert digest is not None
        if entry["event"] in ("ingest", "reply"):
            require(name not in first, "custody.object", "entered twice")
            first[name] = digest
        else:
            require(first.get(name) == digest, "custody.object",
                    "not entered, or another digest")
        entries.append(entry)
    return entries


# Reply boxes

XWING_LABEL = bytes.fromhex("5c2e2f2f5e5c")
SUITE_ID = b"HPKE" + struct.pack(">HHH", 0x647A, 0x0001, 0x0003)


def reply_seed(codename: str, salt: bytes, memory: int, passes: int, lanes: int) -> bytes:
    """Argon2id of the normalised codename (an issued codename is already normalised)."""
    normalised = " ".join(codename[:256].lower().split())
    return Argon2id(salt=salt, length=96, iterations=passes, lanes=lanes,
                    memory_cost=memory).derive(normalised.encode("utf-8"))


def reply_public_key(seed: bytes) -> bytes:
    """pk_M || pk_X from the 96-byte seed."""
    mlkem = MLKEM768PrivateKey.from_seed_bytes(seed[:64])
    x25519 = X25519PrivateKey.from_private_bytes(seed[64:])
    return mlkem.public_key().public_bytes_raw() + \
        x25519.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _extract(salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), b"HPKE-v1" + SUITE_ID + label + ikm,
                    hashlib.sha256).digest()


def _expand(prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = struct.pack(">H", length) + b"HPKE-v1" + SUITE_ID + label + info
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + labeled + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def open_steps(seed: bytes, box: bytes) -> dict[str, bytes]:
    """X-Wing decapsulation and the HPKE base-mode key schedule, from the definitions."""
    mlkem = MLKEM768PrivateKey.from_seed_bytes(seed[:64])
    x25519 = X25519PrivateKey.from_private_bytes(seed[64:])
    pk_x = x25519.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    info, enc = box[:58], box[58:58 + 1120]
    ss_m = mlkem.decapsulate(enc[:1088])
    ss_x = x25519.exchange(X25519PublicKey.from_public_bytes(enc[1088:]))
    shared = hashlib.sha3_256(ss_m + ss_x + enc[1088:] + pk_x + XWING_LABEL).digest()
    context = b"\x00" + _extract(b"", b"psk_id_hash", b"") + _extract(b"", b"info_hash", info)
    secret = _extract(shared, b"secret", b"")
    return {"ss_m": ss_m, "ss_x": ss_x, "shared": shared, "context": context,
            "secret": secret, "key": _expand(secret, b"key", context, 32),
            "nonce": _expand(secret, b"base_nonce", context, 12)}


def box_layout(box: bytes, size: str = "box.size", magic: str = "box.magic",
               version: str = "box.version") -> None:
    """Rules box.size, box.magic, box.version (a reply file reports them as one rule)."""
    require(1194 <= len(box) <= 66730, size, "size")
    require(box[:9] == b"DESKREPLY", magic, "magic")
    require(box[9] == 1, version, "version")


def open_box(seed: bytes, box: bytes) -> str:
    """Every box rule; the reply's text."""
    box_layout(box)
    steps = open_steps(seed, box)
    try:
        plaintext = ChaCha20Poly1305(steps["key"]).decrypt(steps["nonce"], box[58 + 1120:],
                                                           b"")
    except InvalidTag as exc:
        raise Reject("box.open", "not for this codename, or altered") from exc
    record = load(plaintext, "box.record")
    require(is_int(record.get("v")) and record["v"] == 1 and isinstance(record.get("text"), str),
            "box.record", "not a reply record of version 1")
    return str(record["text"])


# Reply copies


def check_copy(data: bytes) -> dict[str, Any]:
    """Every reply copy rule."""
    copy = load(data, "copy.json")
    require(copy.get("format") == "desk-reply-copy", "copy.format", "format")
    require(is_int(copy.get("version")) and copy["version"] == 1, "copy.version", "version")
    names = ("reply_id", "source", "source_key_id", "written_at", "author", "via", "text")
    require(all(isinstance(copy.get(name), str) for name in names) and
            copy["via"] in ("console", "web") and full(HEX32, copy["reply_id"]) and
            full(HEX64, copy["source_key_id"]) and len(copy["text"].encode()) <= 65536,
            "copy.field", "members")
    require(is_instant(copy["written_at"]), "copy.instant", "written_at")
    return copy


# Reply files


def check_reply_file(vector: dict[str, Any]) -> None:
    """Reply file rules 1 to 9, for the desk whose journalists' keys the vector gives."""
    data = base64.b64decode(vector["file_b64"])
    source_key = base64.b64decode(vector["source_reply_public_key_b64"])
    require(len(data) <= 524288, "replyfile.size", "too large")
    reply = load(data, "replyfile.json")
    require(reply.get("format") == "desk-reply-file", "replyfile.format", "format")
    require(is_int(reply.get("version")) and reply["version"] == 1, "replyfile.version",
            "version")
    box, copy, signature = (b64(reply.get(name), "replyfile.base64")
                            for name in ("box", "copy", "signature"))
    signed = (f"desk-reply-file 1\nbox {sha256(box)}\ncopy {sha256(copy)}\n").encode("ascii")
    with gpg_home() as gpg:
        for armored in vector["journalist_public_keys"]:
            gpg.import_keys(armored.encode("ascii"))
        journalists = gpg.keys()
        require(gpg.signer(signature, signed) in journalists, "replyfile.signature",
                "not signed by a journalist key")
        box_layout(box, "replyfile.box", "replyfile.box", "replyfile.box")
        require(box[26:58] == hashlib.sha256(source_key).digest(), "replyfile.recipient",
                "sealed to another key")
        recipients = gpg.recipients(copy)
        allowed = set().union(*journalists.values())
        require(all(ids & recipients for ids in journalists.values()) and
                recipients <= allowed, "replyfile.copy", "not exactly the journalists' keys")


# Bundles

ROOT = "desk-bundle/"
DOCUMENTS = ("VERSION", "signing-key.pub", "manifest.gpg", "manifest.sig", "custody.gpg")
OBJECT_FILE = re.compile(r"objects/([0-9a-f]{32})/(meta\.gpg|part-[0-9]{6}\.gpg)")
REPLY_FILE = re.compile(r"replies/([0-9a-f]{32})/copy\.gpg")
MAX_DOCUMENT = 256 * 1024 * 1024


def read_members(data: bytes) -> dict[str, bytes]:
    """Rules bundle.tar, bundle.member, bundle.duplicate, bundle.size."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                name = info.name[len(ROOT):] if info.name.startswith(ROOT) else None
                require(info.isreg() and name is not None and
                        (name in DOCUMENTS or full(OBJECT_FILE, name) or
                         full(REPLY_FILE, name)), "bundle.member", info.name)
                require(name not in members, "bundle.duplicate", info.name)
                require(name not in ("manifest.gpg", "custody.gpg") or
                        info.size <= MAX_DOCUMENT, "bundle.size", info.name)
                handle = tar.extractfile(info)
                members[str(name)] = handle.read() if handle else b""
    except tarfile.TarError as exc:
        raise Reject("bundle.tar", str(exc)) from exc
    return members


def check_manifest(data: bytes) -> dict[str, Any]:
    """Rules manifest.json to manifest.field."""
    manifest = load(data, "manifest.json")
    require(manifest.get("format") == "desk-bundle-manifest", "manifest.format", "format")
    require(is_int(manifest.get("version")) and manifest["version"] == 2, "manifest.version",
            "version")

    def items(name: str) -> list[dict[str, Any]]:
        value = manifest.get(name)
        require(isinstance(value, list) and all(isinstance(v, dict) for v in value),
                "manifest.field", name)
        assert isinstance(value, list)
        return value

    objects, replies, sources, recipients = (items(name) for name in
                                             ("objects", "replies", "sources", "recipients"))
    require(is_date(manifest.get("exported_on")) and
            isinstance(manifest.get("exported_by"), str) and
            isinstance(manifest.get("instance"), str), "manifest.field", "header")
    for obj in objects:
        require(full(HEX32, obj.get("id")) and isinstance(obj.get("source"), str) and
                obj.get("kind") in ("message", "file") and is_date(obj.get("received_on")) and
                full(HEX64, obj.get("ciphertext_sha256")) and
                ("custody_key" not in obj or full(HEX64, obj["custody_key"])),
                "manifest.field", "objects")
    for reply in replies:
        require(full(HEX32, reply.get("id")) and isinstance(reply.get("source"), str) and
                is_int(reply.get("number")) and reply["number"] >= 1 and
                is_date(reply.get("sent_on")) and
                "author" in reply and (reply["author"] is None or
                                       isinstance(reply["author"], str)) and
                reply.get("via") in ("console", "web") and
                full(HEX64, reply.get("ciphertext_sha256")) and
                ("custody_key" not in reply or full(HEX64, reply["custody_key"])),
                "manifest.field", "replies")
    for source in sources:
        require(isinstance(source.get("designation"), str), "manifest.field", "sources")
        require(len(b64(source.get("reply_public_key"), "manifest.field")) == 1216,
                "manifest.field", "reply key length")
    for recipient in recipients:
        require(isinstance(recipient.get("username"), str) and
                full(FINGERPRINT, recipient.get("fingerprint")) and
                isinstance(recipient.get("public_key"), str), "manifest.field", "recipients")
    for listed in ([o["id"] for o in objects], [r["id"] for r in replies],
                   [s["designation"] for s in sources]):
        require(len(set(listed)) == len(listed), "manifest.field", "listed twice")
    return manifest


def check_bundle(vector: dict[str, Any], vectors: Path) -> None:
    """Bundle rules 1 to 19, importing into an empty workspace."""
    members = read_members(gzip.decompress(base64.b64decode(vector["bundle_gzip_b64"])))
    require(members.get("VERSION") == b"desk-bundle 2\n", "bundle.version", "VERSION")
    key = members.get("signing-key.pub", b"")
    require(re.fullmatch(rb"[0-9a-f]{64}\n", key), "bundle.signing-key", "signing key")
    signature = members.get("manifest.sig", b"")
    require("manifest.gpg" in members and "custody.gpg" in members and
            re.fullmatch(rb"[0-9a-f]{128}\n", signature), "bundle.missing", "documents")
    public_hex = key[:-1].decode()
    with gpg_home() as gpg:
        gpg.import_keys((vectors / vector["openpgp_secret_key_file"]).read_bytes())
        manifest_plain = gpg.decrypt(members["manifest.gpg"])
        custody_plain = gpg.decrypt(members["custody.gpg"])
        if manifest_plain is None or custody_plain is None:
            raise Reject("bundle.decrypt", "a document does not decrypt")
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
                bytes.fromhex(signature[:-1].decode()),
                b"desk-bundle-manifest 2\n" + manifest_plain)
        except InvalidSignature as exc:
            raise Reject("bundle.signature", "manifest.sig") from exc
        chain = verify_log(custody_plain, public_hex)
        manifest = check_manifest(manifest_plain)
        objects: dict[str, dict[str, bytes]] = {}
        replies: dict[str, bytes] = {}
        for name, data in members.items():
            if match := OBJECT_FILE.fullmatch(name):
                objects.setdefault(match.group(1), {})[match.group(2)] = data
            elif match := REPLY_FILE.fullmatch(name):
                replies[match.group(1)] = data
        require({o["id"] for o in manifest["objects"]} == set(objects) and
                {r["id"] for r in manifest["replies"]} == set(replies), "bundle.listing",
                "the manifest and the bundle list different objects or replies")
        first = {subject(e): e for e in chain if e["event"] in ("ingest", "reply")}
        deleted = {subject(e) for e in chain if e["event"] == "delete"}
        for obj in manifest["objects"]:
            name, as_recorded = names_of(obj)
            entry = first.get(name, {})
            require(entry.get("event") == "ingest", "bundle.ingest", obj["id"])
            require(name not in deleted, "bundle.deleted", obj["id"])
            digest = ciphertext_digest(objects[obj["id"]])
            require(as_recorded(digest) == recorded(entry) and
                    digest == obj["ciphertext_sha256"], "bundle.digest", obj["id"])
        for reply in manifest["replies"]:
            name, as_recorded = names_of(reply)
            entry = first.get(name, {})
            require(entry.get("event") == "reply", "bundle.reply", reply["id"])
            require(name not in deleted, "bundle.deleted", reply["id"])
            digest = ciphertext_digest({"copy.gpg": replies[reply["id"]]})
            require(as_recorded(digest) == recorded(entry) and
                    digest == reply["ciphertext_sha256"], "bundle.reply-digest", reply["id"])
        for object_id, files in objects.items():
            meta = files.get("meta.gpg")
            plain = None if meta is None else gpg.decrypt(meta)
            if plain is None:
                raise Reject("bundle.object", f"{object_id}: no readable meta.gpg")
            try:
                record = check_record(plain)
            except Reject as exc:
                raise Reject("bundle.object", f"{object_id}: {exc}") from exc
            require(record["id"] == object_id, "bundle.object", "record.folder")
            require(sorted(set(files) - {"meta.gpg"}) == [p["name"] for p in record["parts"]],
                    "bundle.object", "record.files")
        for reply in manifest["replies"]:
            plain = gpg.decrypt(replies[reply["id"]])
            if plain is None:
                raise Reject("bundle.copy", f"{reply['id']}: does not decrypt")
            try:
                copy = check_copy(plain)
            except Reject as exc:
                raise Reject("bundle.copy", f"{reply['id']}: {exc}") from exc
            require(copy["reply_id"] == reply["id"] and copy["source"] == reply["source"],
                    "bundle.copy", "another reply's copy")


# Vector files


def check_known_answer(name: str, vector: dict[str, Any], path: Path) -> None:
    """The four known-answer files, which predate `kind` and `expect`."""
    if name.startswith("object-v1"):
        check_record(path.read_bytes())
    elif name == "custody-v1.json":
        entries = vector["entries"]
        log = "".join(canonical_line(e) + "\n" for e in entries).encode("ascii")
        verify_log(log, vector["public_key"])
        require(body(entries[0]).decode() == vector["first_body"], "custody.hash",
                "first_body")
    elif name == "reply-v1.json":
        kdf = vector["kdf"]
        seed = reply_seed(vector["codename"], bytes.fromhex(vector["reply_salt_hex"]),
                          kdf["memory_cost_kib"], kdf["iterations"], kdf["lanes"])
        public = reply_public_key(seed)
        require(base64.b64encode(public).decode() == vector["public_key_b64"] and
                sha256(public) == vector["public_key_sha256"], "box.open", "public key")
        box = base64.b64decode(vector["box_b64"])
        require(box[26:58] == hashlib.sha256(public).digest(), "box.open", "key id")
        require(open_box(seed, box) == vector["text"], "box.open", "text")


def check_steps(vector: dict[str, Any]) -> None:
    """Every intermediate value of reply-v1-steps.json, recomputed."""
    seed = bytes.fromhex(vector["reply_seed_hex"])
    box = base64.b64decode(vector["box_b64"])
    steps = open_steps(seed, box)
    public = reply_public_key(seed)
    expected = {
        "x25519_public_hex": public[1184:].hex(), "public_key_sha256": sha256(public),
        "info_hex": box[:58].hex(), "x25519_ephemeral_public_hex": box[58 + 1088:58 + 1120].hex(),
        "mlkem768_ciphertext_sha256": sha256(box[58:58 + 1088]),
        "mlkem768_shared_secret_hex": steps["ss_m"].hex(),
        "x25519_shared_secret_hex": steps["ss_x"].hex(),
        "xwing_shared_secret_hex": steps["shared"].hex(), "hpke_suite_id_hex": SUITE_ID.hex(),
        "hpke_key_schedule_context_hex": steps["context"].hex(),
        "hpke_secret_hex": steps["secret"].hex(), "hpke_key_hex": steps["key"].hex(),
        "hpke_base_nonce_hex": steps["nonce"].hex(),
    }
    for name, value in expected.items():
        require(vector[name] == value, "box.open", f"{name} differs")
    plaintext = ChaCha20Poly1305(steps["key"]).decrypt(
        steps["nonce"], base64.b64decode(vector["aead_ciphertext_b64"]), b"")
    require(plaintext.decode() == vector["plaintext"], "box.open", "plaintext")
    open_box(seed, box)


def check_commitments(vector: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    """custody-v2.json's commitments and second body, recomputed from the key."""
    name, as_recorded = names_of({"id": vector["object_id"],
                                  "custody_key": vector["custody_key_hex"]})
    digest = as_recorded(vector["ciphertext_sha256"])
    require((name, digest) == (vector["subject"], vector["digest"]), "custody.object",
            "the commitments")
    require(all((subject(e), recorded(e)) == (name, digest) for e in entries[1:]),
            "custody.object", "entries about another item")
    require(body(entries[1]).decode() == vector["second_body"], "custody.hash", "second_body")


def check_file(path: Path) -> dict[str, str | None]:
    """The verdict on one vector file."""
    vector = json.loads(path.read_text("utf-8"))
    vectors = path.parent.parent if path.parent.name == "reject" else path.parent
    kind = vector.get("kind")
    try:
        if "expect" not in vector:
            check_known_answer(path.name, vector, path)
        elif kind == "object-record":
            check_record(base64.b64decode(vector["record_b64"]))
        elif kind == "custody-log":
            entries = verify_log(vector["log"].encode("utf-8"), vector["public_key"])
            if "custody_key_hex" in vector:
                check_commitments(vector, entries)
        elif kind == "reply-box" and "xwing_shared_secret_hex" in vector:
            check_steps(vector)
        elif kind == "reply-box":
            open_box(bytes.fromhex(vector["reply_seed_hex"]), base64.b64decode(vector["box_b64"]))
        elif kind == "reply-copy":
            check_copy(base64.b64decode(vector["copy_b64"]))
        elif kind == "reply-file":
            check_reply_file(vector)
        elif kind == "bundle":
            check_bundle(vector, vectors)
        else:
            raise ValueError(f"unknown kind {kind!r}")
    except Reject as exc:
        return {"file": str(path), "verdict": "reject", "rule": exc.rule, "reason": exc.reason}
    return {"file": str(path), "verdict": "accept", "rule": None, "reason": None}


def main(paths: list[str]) -> int:
    """Print a verdict per file."""
    for name in paths:
        print(json.dumps(check_file(Path(name))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
