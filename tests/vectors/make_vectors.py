"""Make the test vectors that crypto/FORMAT.md lists ("Test vectors").

Run from the repository root with the project importable:

    PYTHONPATH=. python tests/vectors/make_vectors.py [--out DIR]

It writes the accept vectors custody-v2.json, bundle-v2.json, bundle-v2-custody-v1.json,
replyfile-v1.json and reply-v1-steps.json into DIR (default: this folder) and one reject
vector per broken rule into DIR/reject/. The known-answer files custody-v1.json,
object-v1*.json and reply-v1.json are read, never written.

Custody logs are signed with the RFC 8032 test keys, so every record, copy, custody and box
vector is reproduced byte for byte. What gpg or HPKE encrypts is randomised: bundles, reply
files and the box.record vector come out different on each run, and the committed files are
the reference; FORMAT.md's ciphertext digest example is taken from bundle-v2.json, so a new
bundle-v2.json needs a new example (a test compares them). The OpenPGP key is
test-journalist.sec.asc beside this file: its secret half is public, so nothing it protects is
secret.
"""

from __future__ import annotations

import argparse
import base64
import copy
import gzip
import hashlib
import hmac
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import (  # noqa: E402
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

from crypto.bundle import (  # noqa: E402
    MANIFEST_SIGNATURE_CONTEXT,
    ManifestObject,
    ManifestRecipient,
    ManifestReply,
    Member,
    manifest_json,
    stream_tar,
    version_line,
)
from crypto.custody import (  # noqa: E402
    CustodyEntry,
    SigningKey,
    Subject,
    ciphertext_digest,
    entry_body,
    make_entry,
    subject_entry,
)
from crypto.gpg import GnuPG  # noqa: E402
from crypto.items import ItemRecord, PartRecord  # noqa: E402
from crypto.reply import SUITE, key_from_seed, load_public_key, seal_reply  # noqa: E402
from crypto.replyfile import ReplyCopy, ReplyFile, signed_payload  # noqa: E402

# RFC 8032 section 7.1, TEST 1 (the desk's key in every vector) and TEST 2 (another desk).
DESK_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
OTHER_SECRET = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
KEY_FILE = "test-journalist.sec.asc"
OBJECT_ID = "5c1e7a3b9d2f4e6a8b0c1d2e3f4a5b6c"
OTHER_OBJECT_ID = "6d2f8b4cae304f7b9c1d2e3f4a5b6c7d"
DESIGNATION = "amber heron"
MESSAGE = b"The train left platform 4 at 06:40. Seven buses were waiting.\n"
REPLY_TEXT_DAY = datetime(2026, 11, 28, 9, 15, 0, 123456, tzinfo=UTC)
DAYS = [date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 29)]
# Custody keys (FORMAT.md, "Version 2: keyed commitments") of the bundle's item and reply.
OBJECT_CUSTODY_KEY = bytes(range(32))
REPLY_CUSTODY_KEY = bytes(range(32, 64))


def b64(data: bytes) -> str:
    """Standard base64 with padding: the only base64 FORMAT.md uses."""
    return base64.b64encode(data).decode("ascii")


def desk_key(secret_hex: str = DESK_SECRET) -> SigningKey:
    """A custody signing key from a fixed RFC 8032 secret."""
    return SigningKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret_hex)))


def signed_entry(key: SigningKey, previous: CustodyEntry | None, on: date, event: str,
                 object_id: str | None, digest: str | None, actor: str | None,
                 seq: int | None = None, prev_hash: str | None = None,
                 version: int = 1) -> CustodyEntry:
    """A properly hashed and signed entry, without make_entry's refusals: the only way to
    write an entry that breaks a rule other than its hash or signature."""
    seq = seq if seq is not None else (1 if previous is None else previous.seq + 1)
    if prev_hash is None:
        prev_hash = "0" * 64 if previous is None else previous.entry_hash
    body = entry_body(seq, on, event, object_id, digest, actor, prev_hash, version)
    entry_hash = hashlib.sha256(body).hexdigest()
    return CustodyEntry(seq, on, event, object_id, digest, actor, prev_hash, entry_hash,
                        key.sign(bytes.fromhex(entry_hash)), version)


def log_text(entries: list[CustodyEntry]) -> str:
    """A custody log as bundles carry it: one canonical line per entry."""
    return "".join(entry.to_json() + "\n" for entry in entries)


class Vectors:
    """Collects vector files and writes them once they are all made."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files: dict[Path, bytes] = {}

    def add(self, name: str, body: dict[str, Any], reject: bool = True) -> None:
        """One vector; a reject vector's name is its rule, and a suffix when several
        vectors break the same rule."""
        path = self.out / "reject" / name if reject else self.out / name
        if path in self.files:
            raise ValueError(f"two vectors named {name}")
        self.files[path] = (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode()

    def reject(self, kind: str, rule: str, comment: str, suffix: str = "",
               **inputs: Any) -> None:
        """A vector that every reader must reject under `rule`."""
        self.add(f"{rule}{'-' + suffix if suffix else ''}.json",
                 {"comment": comment, "kind": kind, "expect": "reject", "rule": rule,
                  **inputs})

    def write(self) -> None:
        """Write every vector (replacing the old reject vectors)."""
        (self.out / "reject").mkdir(parents=True, exist_ok=True)
        for old in (self.out / "reject").glob("*.json"):
            old.unlink()
        for path, data in sorted(self.files.items()):
            path.write_bytes(data)


# Records


def records(vectors: Vectors) -> None:
    """Reject vectors for the object record (FORMAT.md, "Metadata record")."""
    good: dict[str, Any] = json.loads((HERE / "object-v1.json").read_text("utf-8"))
    nonutf8: dict[str, Any] = json.loads(
        (HERE / "object-v1-nonutf8-multipart.json").read_text("utf-8"))

    def record(comment: str, rule: str, data: dict[str, Any] | bytes, suffix: str = "") -> None:
        raw = data if isinstance(data, bytes) else \
            json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8")
        vectors.reject("object-record", rule, comment, suffix, record_b64=b64(raw))

    text = json.dumps(good, indent=1)
    record("Not UTF-8: a Latin-1 byte in the file name.", "record.json",
           text.replace("station.mp4", "estaci\u00f3n.mp4").encode("latin-1"), "latin1")
    record("The member size appears twice (parsers disagree on which one counts).",
           "record.json", text.replace('"size": 5242880,', '"size": 1,\n "size": 5242880,', 1)
           .encode(), "duplicate")
    record("A size written as a fraction: JSON numbers in this format are integers.",
           "record.json", text.replace('"size": 5242880,', '"size": 5242880.0,', 1).encode(),
           "fraction")
    record("format is not desk-object.", "record.format", {**good, "format": "desk-objects"})
    record("received_at is missing.", "record.field",
           {k: v for k, v in good.items() if k != "received_at"})
    record("version is true, which some languages read as 1.", "record.version",
           {**good, "version": True})
    record("id in upper case.", "record.id", {**good, "id": good["id"].upper()})
    record("kind is not message or file.", "record.kind", {**good, "kind": "video"})
    record("received_at has no time zone.", "record.instant",
           {**good, "received_at": "2026-11-27T06:40:12.123456"})
    record("size differs from the sum of the part sizes.", "record.size",
           {**good, "size": 5242881})
    record("a part hash in upper case.", "record.hash",
           {**good, "parts": [{**good["parts"][0], "sha256": good["sha256"].upper()}]})
    record("Part names skip part-000000.gpg.", "record.parts",
           {**nonutf8, "parts": [{**nonutf8["parts"][0], "name": "part-000001.gpg"},
                                 {**nonutf8["parts"][1], "name": "part-000002.gpg"}]}, "gap")
    record("An object with no parts.", "record.parts", {**good, "size": 0, "parts": []},
           "empty")
    padded: dict[str, Any] = json.loads((HERE / "object-v2.json").read_text("utf-8"))
    record("version 2: the parts add up to 5,111,808 bytes, not Padmé(size) for size "
           "5,111,809 (that is 5,242,880).", "record.size", {**padded, "size": 5_111_809},
           "v2-not-padme")
    record("version 2: size 5,000,000 and one part of 5,000,000 bytes, unpadded (Padmé(size) "
           "is 5,111,808).", "record.size", {**padded, "parts": [
               {**padded["parts"][0], "size": 5_000_000, "sha256": padded["sha256"]}]},
           "v2-unpadded")
    record("filename_bytes with non-zero padding bits (not canonical base64).",
           "record.filename", {**nonutf8, "filename_bytes": "//4tY2xpcC5tb3Z="})


# Custody


def custody(vectors: Vectors) -> None:
    """Reject vectors for custody logs (FORMAT.md, "Chain of custody")."""
    key, public = desk_key(), desk_key().public_hex
    digest, obj = "c" * 64, "9b1f0e6c2d4a48f1a3c5e7d9b0a2c4e6"
    first = make_entry(key, None, DAYS[0], "ingest", obj, digest)
    second = make_entry(key, first, DAYS[1], "export", obj, digest, "alice")

    def log(comment: str, rule: str, text: str, suffix: str = "") -> None:
        vectors.reject("custody-log", rule, comment, suffix, public_key=public, log=text)

    line = json.loads(second.to_json())
    log("The second line has a member the entry does not define.", "custody.line",
        log_text([first]) + json.dumps({**line, "note": "x"}, sort_keys=True,
                                       separators=(",", ":")) + "\n", "extra-member")
    log("The log is not ASCII: after the entries, a line holding a no-break space (U+00A0).",
        "custody.line", log_text([first, second]) + "\u00a0\n", "not-ascii")
    log("Two entries on one line, separated by a form feed (0x0C) instead of LF.",
        "custody.line", first.to_json() + "\f" + second.to_json() + "\n", "form-feed")
    log("on is written in ISO 8601 basic form; the entry hash would still match.",
        "custody.line", log_text([first]) + second.to_json().replace(
            '"2026-11-28"', '"20261128"') + "\n", "basic-date")
    log("A line carrying v 3 belongs to a later custody version.", "custody.version",
        log_text([first]) + json.dumps({**line, "v": 3}, sort_keys=True,
                                       separators=(",", ":")) + "\n")
    log("A line carrying v 2 with version 1's member names.", "custody.line",
        log_text([first]) + json.dumps({**line, "v": 2}, sort_keys=True,
                                       separators=(",", ":")) + "\n", "v2-old-names")
    log("A version 2 ingest whose subject is an id in clear, not a 64-digit commitment "
        "(properly hashed and signed).", "custody.alphabet",
        log_text([signed_entry(key, None, DAYS[0], "ingest", obj, digest, None,
                               version=2)]), "v2-subject")
    later = Subject(obj, digest, OBJECT_CUSTODY_KEY)
    ingest_v2 = subject_entry(key, None, DAYS[0], "ingest", later)
    log("A version 2 item ingested twice under the same subject (properly hashed and "
        "signed).", "custody.object",
        log_text([ingest_v2, subject_entry(key, ingest_v2, DAYS[1], "ingest", later)]),
        "v2-ingested-twice")
    log("The second entry says seq 3 (properly hashed and signed).", "custody.seq",
        log_text([first, signed_entry(key, first, DAYS[1], "export", obj, digest, "alice",
                                      seq=3)]))
    log("An actor in upper case (properly hashed and signed).", "custody.alphabet",
        log_text([first, signed_entry(key, first, DAYS[1], "export", obj, digest, "Alice")]),
        "actor")
    log("An actor with < and > (properly hashed and signed): escaping would differ between "
        "JSON encoders.", "custody.alphabet",
        log_text([first, signed_entry(key, first, DAYS[1], "export", obj, digest,
                                      "<alice>")]), "escaped-actor")
    log("An event this version does not define (properly hashed and signed).",
        "custody.alphabet", log_text([first, signed_entry(key, first, DAYS[1], "view", obj,
                                                          digest, "alice")]), "event")
    log("An object id in upper case (properly hashed and signed).", "custody.alphabet",
        log_text([signed_entry(key, None, DAYS[0], "ingest", obj.upper(), digest, None)]),
        "object-id")
    log("An ingest entry with an actor (properly hashed and signed).", "custody.shape",
        log_text([signed_entry(key, None, DAYS[0], "ingest", obj, digest, "alice")]),
        "ingest-actor")
    log("An ingest entry with no digest (properly hashed and signed).", "custody.shape",
        log_text([signed_entry(key, None, DAYS[0], "ingest", obj, None, None)]),
        "null-digest")
    log("The second entry's prev_hash is not the first entry's hash (properly hashed and "
        "signed).", "custody.link",
        log_text([first, signed_entry(key, first, DAYS[1], "export", obj, digest, "alice",
                                      prev_hash="1" * 64)]))
    log("The second entry's actor was changed after it was signed.", "custody.hash",
        log_text([first, replace(second, actor="mallory")]))
    log("The second entry is signed by another desk's key.", "custody.signature",
        log_text([first, signed_entry(desk_key(OTHER_SECRET), first, DAYS[1], "export", obj,
                                      digest, "alice")]))
    log("An export of an object no ingest entry brought in (properly hashed and signed).",
        "custody.object",
        log_text([first, signed_entry(key, first, DAYS[1], "export", "0" * 32, digest,
                                      "alice")]), "never-ingested")
    log("An export whose digest is not the one the object was ingested with.",
        "custody.object",
        log_text([first, signed_entry(key, first, DAYS[1], "export", obj, "d" * 64,
                                      "alice")]), "digest-changed")
    log("The same object ingested twice.", "custody.object",
        log_text([first, signed_entry(key, first, DAYS[1], "ingest", obj, digest, None)]),
        "ingested-twice")


def custody_v2(vectors: Vectors) -> None:
    """The accept vector of a log that moves from version 1 to version 2."""
    key = desk_key()
    old = make_entry(key, None, DAYS[0], "ingest", "9b1f0e6c2d4a48f1a3c5e7d9b0a2c4e6", "c" * 64)
    about = Subject(OBJECT_ID, "e" * 64, OBJECT_CUSTODY_KEY)
    entries = [old]
    for event, actor, on in (("ingest", None, DAYS[0]), ("export", "alice", DAYS[1]),
                             ("delete", "alice", DAYS[2])):
        entries.append(subject_entry(key, entries[-1], on, event, about, actor))
    second = entries[1]
    vectors.add("custody-v2.json", {
        "comment": "Entry 1 is version 1; entries 2 to 4 are version 2, about one item whose "
                   "custody key, id and ciphertext digest are given. Signed with the RFC 8032 "
                   "section 7.1 TEST 1 key.",
        "kind": "custody-log", "expect": "accept",
        "public_key": key.public_hex, "log": log_text(entries),
        "custody_key_hex": OBJECT_CUSTODY_KEY.hex(), "object_id": about.object_id,
        "ciphertext_sha256": about.ciphertext_sha256, "subject": about.subject,
        "digest": about.digest,
        "second_body": entry_body(second.seq, second.on, second.event, second.subject,
                                  second.digest, second.actor, second.prev_hash,
                                  second.version).decode("ascii"),
    }, reject=False)


# Reply boxes


def xwing_steps(seed: bytes, box: bytes) -> dict[str, str]:
    """Every intermediate value of opening `box` with the key made from `seed`, computed
    from the definitions (X-Wing, RFC 9180) rather than through an HPKE library."""
    mlkem = MLKEM768PrivateKey.from_seed_bytes(seed[:64])
    x25519 = X25519PrivateKey.from_private_bytes(seed[64:])
    pk_x = x25519.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    public = mlkem.public_key().public_bytes_raw() + pk_x
    info, enc, ciphertext = box[:58], box[58:58 + 1120], box[58 + 1120:]
    ss_m = mlkem.decapsulate(enc[:1088])
    ss_x = x25519.exchange(X25519PublicKey.from_public_bytes(enc[1088:]))
    shared = hashlib.sha3_256(ss_m + ss_x + enc[1088:] + pk_x + b"\\./" + b"/^\\").digest()
    suite = b"HPKE" + struct.pack(">HHH", 0x647A, 0x0001, 0x0003)

    def extract(salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return hmac.new(salt or bytes(32), b"HPKE-v1" + suite + label + ikm,
                        hashlib.sha256).digest()

    def expand(prk: bytes, label: bytes, context: bytes, length: int) -> bytes:
        labeled = struct.pack(">H", length) + b"HPKE-v1" + suite + label + context
        out, block, counter = b"", b"", 1
        while len(out) < length:
            block = hmac.new(prk, block + labeled + bytes([counter]), hashlib.sha256).digest()
            out, counter = out + block, counter + 1
        return out[:length]

    context = b"\x00" + extract(b"", b"psk_id_hash", b"") + extract(b"", b"info_hash", info)
    secret = extract(shared, b"secret", b"")
    return {
        "reply_seed_hex": seed.hex(),
        "mlkem768_seed_d_hex": seed[:32].hex(),
        "mlkem768_seed_z_hex": seed[32:64].hex(),
        "x25519_private_hex": seed[64:].hex(),
        "x25519_public_hex": pk_x.hex(),
        "public_key_sha256": hashlib.sha256(public).hexdigest(),
        "info_hex": info.hex(),
        "mlkem768_ciphertext_sha256": hashlib.sha256(enc[:1088]).hexdigest(),
        "x25519_ephemeral_public_hex": enc[1088:].hex(),
        "mlkem768_shared_secret_hex": ss_m.hex(),
        "x25519_shared_secret_hex": ss_x.hex(),
        "xwing_shared_secret_hex": shared.hex(),
        "hpke_suite_id_hex": suite.hex(),
        "hpke_key_schedule_context_hex": context.hex(),
        "hpke_secret_hex": secret.hex(),
        "hpke_key_hex": expand(secret, b"key", context, 32).hex(),
        "hpke_base_nonce_hex": expand(secret, b"base_nonce", context, 12).hex(),
        "aead_ciphertext_b64": b64(ciphertext),
    }


@dataclass(frozen=True)
class ReplyMaterial:
    """The reply of the known-answer vector reply-v1.json, reused everywhere."""

    seed: bytes
    public: bytes
    box: bytes
    text: str


def reply_material() -> ReplyMaterial:
    """Derive the reply-v1 key once (Argon2id at full cost) and read its box."""
    from crypto.codename import Codename
    from crypto.kdf import KdfParams
    from crypto.reply import reply_seed

    known = json.loads((HERE / "reply-v1.json").read_text("utf-8"))
    kdf = known["kdf"]
    seed = reply_seed(Codename(known["codename"]), bytes.fromhex(known["reply_salt_hex"]),
                      KdfParams(kdf["memory_cost_kib"], kdf["iterations"], kdf["lanes"]))
    _, public = key_from_seed(seed)
    if b64(public) != known["public_key_b64"]:
        raise RuntimeError("reply-v1.json's public key does not follow from its codename")
    return ReplyMaterial(seed, public, base64.b64decode(known["box_b64"]), known["text"])


def boxes(vectors: Vectors, reply: ReplyMaterial) -> None:
    """The intermediate values of reply-v1's box, and reject vectors for boxes."""
    steps = xwing_steps(reply.seed, reply.box)
    vectors.add("reply-v1-steps.json", {
        "comment": "Opening the box of reply-v1.json step by step: X-Wing (KEM 0x647A) "
                   "decapsulation, then the RFC 9180 base-mode key schedule with HKDF-SHA256 "
                   "(0x0001) and ChaCha20-Poly1305 (0x0003). aead_ciphertext_b64 decrypts "
                   "under hpke_key and hpke_base_nonce with empty associated data to "
                   "plaintext.",
        "kind": "reply-box", "expect": "accept", "box_b64": b64(reply.box), **steps,
        "plaintext": json.dumps({"v": 1, "text": reply.text}, ensure_ascii=False),
    }, reject=False)

    def box(comment: str, rule: str, data: bytes, suffix: str = "") -> None:
        vectors.reject("reply-box", rule, comment, suffix, reply_seed_hex=reply.seed.hex(),
                       box_b64=b64(data))

    box("Cut short: shorter than header, encapsulated key and tag together.", "box.size",
        reply.box[:1193])
    box("Magic DESKREPLX.", "box.magic", b"DESKREPLX" + reply.box[9:])
    box("Version byte 2.", "box.version", reply.box[:9] + b"\x02" + reply.box[10:])
    box("One bit of the AEAD ciphertext flipped.", "box.open",
        reply.box[:-1] + bytes([reply.box[-1] ^ 1]), "ciphertext")
    box("The reply id in the header changed (it is HPKE info).", "box.open",
        reply.box[:10] + b"\x01" + reply.box[11:], "reply-id")
    record = b'{"v": 2, "text": "Where was this filmed?"}'
    sealed = reply.box[:58] + SUITE.encrypt(record, load_public_key(reply.public),
                                            reply.box[:58])
    box("The box opens, but its plaintext is a reply record of version 2.", "box.record",
        sealed)


# Reply copies


def copies(vectors: Vectors) -> None:
    """Reject vectors for the plaintext of journalists' copies."""
    good: dict[str, Any] = json.loads(ReplyCopy(
        "00" * 16, DESIGNATION, "96eaaed166e3a746fe6c64ec04ce468055c97463081c785b953d7b964e20a3a0",
        REPLY_TEXT_DAY, "alice", "console", "Where was this filmed?").to_json())

    def copy(comment: str, rule: str, data: dict[str, Any]) -> None:
        vectors.reject("reply-copy", rule, comment, copy_b64=b64(
            json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8")))

    vectors.reject("reply-copy", "copy.json", "Not JSON: a line of text.",
                   copy_b64=b64(b"Where was this filmed?\n"))
    copy("format is desk-reply-file, not desk-reply-copy.", "copy.format",
         {**good, "format": "desk-reply-file"})
    copy("version 2.", "copy.version", {**good, "version": 2})
    copy("via is neither console nor web.", "copy.field", {**good, "via": "email"})
    copy("written_at has no time zone.", "copy.instant",
         {**good, "written_at": "2026-11-28T09:15:00.123456"})


# OpenPGP, bundles and reply files


class Keyring:
    """A throwaway GnuPG home holding the test journalist's secret key, and an outsider's."""

    def __init__(self, home: Path) -> None:
        home.mkdir(mode=0o700)
        self.home = home
        self._gpg("--import", str(HERE / KEY_FILE))
        self.gpg = GnuPG(home)
        self.journalist = self.gpg.secret_fingerprints()[0]
        self._gpg("--quick-gen-key", "Outsider <outsider@desk.invalid>", "ed25519", "sign",
                  "never")
        self.outsider = next(f for f in self.gpg.secret_fingerprints() if f != self.journalist)
        self._gpg("--quick-add-key", self.outsider, "cv25519", "encr", "never")

    def _gpg(self, *args: str) -> None:
        subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--pinentry-mode",
                        "loopback", "--passphrase", "", *args], check=True,
                       capture_output=True, timeout=120)

    def public_key(self, fingerprint: str) -> str:
        """An armored public key."""
        return self.gpg.export_public_key(fingerprint).decode("ascii")

    def close(self) -> None:
        """Stop the gpg-agent this home started."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
                       check=False, capture_output=True, timeout=30)


@dataclass
class BundleParts:
    """What a bundle is made of, before it is packed; tests change one thing at a time."""

    version: bytes
    signing_key: bytes
    manifest: bytes
    signature: bytes
    custody: bytes
    objects: dict[str, dict[str, bytes]]
    replies: dict[str, bytes]

    def members(self) -> list[tuple[str, bytes]]:
        """The members in the order the desk writes them."""
        members = [("VERSION", self.version), ("signing-key.pub", self.signing_key),
                   ("manifest.gpg", self.manifest), ("manifest.sig", self.signature),
                   ("custody.gpg", self.custody)]
        for object_id, files in self.objects.items():
            members += [(f"objects/{object_id}/{name}", data) for name, data in files.items()]
        members += [(f"replies/{reply_id}/copy.gpg", data)
                    for reply_id, data in self.replies.items()]
        return members

    def tar(self) -> bytes:
        """The bundle as the desk streams it."""
        return b"".join(stream_tar(Member(name, len(data), data)
                                   for name, data in self.members()))


def raw_tar(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    """A tar with members the desk never writes (links, folders, odd names)."""
    out = io.BytesIO()
    for member in members:
        if isinstance(member, tarfile.TarInfo):
            out.write(member.tobuf(format=tarfile.PAX_FORMAT))
            continue
        name, data = member
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o600
        out.write(info.tobuf(format=tarfile.PAX_FORMAT) + data)
        out.write(b"\0" * (-len(data) % 512))
    return out.getvalue() + b"\0" * 1024


class BundleMaker:
    """The one consistent export of the vectors, and changes to it that break one rule."""

    def __init__(self, keyring: Keyring, reply: ReplyMaterial, custody_version: int = 2
                 ) -> None:
        self.keyring, self.reply = keyring, reply
        # Version 2 custody, as desks write it now; version 1 as older desks wrote it.
        self.object_key = OBJECT_CUSTODY_KEY if custody_version == 2 else None
        self.reply_key = REPLY_CUSTODY_KEY if custody_version == 2 else None
        self.key = desk_key()
        self.reply_id = reply.box[10:26].hex()
        record = ItemRecord(OBJECT_ID, "message", datetime(2026, 11, 27, 6, 40, 12, 123456,
                                                             tzinfo=UTC),
                              (PartRecord("part-000000.gpg", len(MESSAGE),
                                          hashlib.sha256(MESSAGE).hexdigest()),),
                              None, "text/plain; charset=utf-8",
                              hashlib.sha256(MESSAGE).hexdigest(), version=1)
        self.files = {"meta.gpg": self.encrypt(record.to_json()),
                      "part-000000.gpg": self.encrypt(MESSAGE)}
        self.digest = ciphertext_digest(self.hashes(self.files))
        copy = ReplyCopy(self.reply_id, DESIGNATION, hashlib.sha256(reply.public).hexdigest(),
                         REPLY_TEXT_DAY, "alice", "console", reply.text)
        self.copy = self.encrypt(copy.to_json())
        self.copy_digest = ciphertext_digest(self.hashes({"copy.gpg": self.copy}))
        self.signature = keyring.gpg.sign_detached(signed_payload(reply.box, self.copy),
                                                   keyring.journalist)

    def encrypt(self, data: bytes, *recipients: str) -> bytes:
        """OpenPGP as the desk writes it, to the test journalist (or to `recipients`)."""
        return self.keyring.gpg.encrypt_bytes(data, list(recipients) or
                                              [self.keyring.journalist])

    @staticmethod
    def hashes(files: dict[str, bytes]) -> dict[str, tuple[int, str]]:
        """Size and SHA-256 of each file, as the ciphertext digest takes them."""
        return {name: (len(data), hashlib.sha256(data).hexdigest())
                for name, data in files.items()}

    def chain(self, steps: str = "ingest reply export-object export-reply"
              ) -> list[CustodyEntry]:
        """A custody log of the object and the reply: the desk receives the object, sends
        the reply, then alice exports both."""
        item = Subject(OBJECT_ID, self.digest, self.object_key)
        reply = Subject(self.reply_id, self.copy_digest, self.reply_key)
        plan = {"ingest": ("ingest", item, None, DAYS[0]),
                "reply": ("reply", reply, "alice", DAYS[1]),
                "export-object": ("export", item, "alice", DAYS[2]),
                "export-reply": ("export", reply, "alice", DAYS[2]),
                "delete-object": ("delete", item, "alice", DAYS[1])}
        entries: list[CustodyEntry] = []
        for step in steps.split():
            event, about, actor, on = plan[step]
            entries.append(subject_entry(self.key, entries[-1] if entries else None, on, event,
                                         about, actor))
        return entries

    def manifest(self, kind: str = "message", extra_object: bool = False,
                 object_key: bytes | None = None) -> bytes:
        """The manifest's plaintext."""
        objects = [ManifestObject(OBJECT_ID, DESIGNATION, kind, DAYS[0].isoformat(),
                                  self.digest, object_key or self.object_key)]
        if extra_object:
            objects.append(ManifestObject(OTHER_OBJECT_ID, DESIGNATION, "file",
                                          DAYS[0].isoformat(), self.digest, self.object_key))
        return manifest_json(
            {"exported_on": DAYS[2].isoformat(), "exported_by": "alice",
             "instance": "desk test vectors"},
            objects,
            [ManifestReply(self.reply_id, DESIGNATION, 1, DAYS[1].isoformat(), "alice",
                           "console", self.copy_digest, self.reply_key)],
            {DESIGNATION: self.reply.public},
            [ManifestRecipient("alice", self.keyring.journalist,
                               self.keyring.public_key(self.keyring.journalist))])

    def parts(self, manifest: bytes | None = None, chain: list[CustodyEntry] | None = None,
              signer: SigningKey | None = None) -> BundleParts:
        """A bundle's members; the manifest signed by `signer` (the desk's key)."""
        manifest = manifest if manifest is not None else self.manifest()
        chain = chain if chain is not None else self.chain()
        signature = (signer or self.key).sign(MANIFEST_SIGNATURE_CONTEXT + manifest)
        return BundleParts(version_line(), (self.key.public_hex + "\n").encode(),
                           self.encrypt(manifest), (signature + "\n").encode(),
                           self.encrypt(log_text(chain).encode("ascii")),
                           {OBJECT_ID: dict(self.files)}, {self.reply_id: self.copy})


def gzip_b64(data: bytes) -> str:
    """A bundle as vectors carry it: gzip (mtime 0), then base64."""
    return b64(gzip.compress(data, mtime=0))


def bundles(vectors: Vectors, maker: BundleMaker) -> None:
    """The accept bundle, and reject vectors that each break one bundle rule."""
    good = maker.parts()
    vectors.add("bundle-v2.json", {
        "comment": "An export of one message and one reply to its source, to the test "
                   "journalist key; custody and manifest signed with the RFC 8032 TEST 1 key. "
                   "The bundle is gzip(bundle_gzip_b64); test-journalist.sec.asc decrypts it.",
        "kind": "bundle", "expect": "accept", "openpgp_secret_key_file": KEY_FILE,
        "object_id": OBJECT_ID, "object_plaintext_b64": b64(MESSAGE),
        "object_ciphertext_digest": maker.digest, "reply_id": maker.reply_id,
        "reply_copy_digest": maker.copy_digest, "bundle_gzip_b64": gzip_b64(good.tar()),
    }, reject=False)
    legacy = copy.copy(maker)
    legacy.object_key = legacy.reply_key = None
    vectors.add("bundle-v2-custody-v1.json", {
        "comment": "The same export as bundle-v2.json from a desk that wrote version 1 custody "
                   "entries: the manifest lists no custody keys, and the entries name the item "
                   "and the reply in clear.",
        "kind": "bundle", "expect": "accept", "openpgp_secret_key_file": KEY_FILE,
        "bundle_gzip_b64": gzip_b64(legacy.parts().tar()),
    }, reject=False)

    def bundle(comment: str, rule: str, data: bytes, suffix: str = "") -> None:
        vectors.reject("bundle", rule, comment, suffix, openpgp_secret_key_file=KEY_FILE,
                       bundle_gzip_b64=gzip_b64(data))

    def changed(**change: Any) -> bytes:
        return replace(good, **change).tar()

    members = good.members()
    prefixed = [(f"desk-bundle/{name}", data) for name, data in members]
    bundle("VERSION says desk-bundle 1.", "bundle.version", changed(version=b"desk-bundle 1\n"))
    bundle("An extra member, desk-bundle/notes.txt.", "bundle.member",
           raw_tar([*prefixed, ("desk-bundle/notes.txt", b"hello\n")]), "extra")
    link = tarfile.TarInfo("desk-bundle/objects/" + OBJECT_ID + "/part-000001.gpg")
    link.type, link.linkname, link.mode = tarfile.SYMTYPE, "/etc/passwd", 0o600
    bundle("A symbolic link among the object's files.", "bundle.member",
           raw_tar([*prefixed, link]), "symlink")
    folder = tarfile.TarInfo("desk-bundle/objects/" + OBJECT_ID)
    folder.type, folder.mode = tarfile.DIRTYPE, 0o700
    bundle("A directory member.", "bundle.member", raw_tar([folder, *prefixed]), "directory")
    bundle("VERSION spelt desk-bundle/./VERSION.", "bundle.member", raw_tar(
        [("desk-bundle/./VERSION", data) if name == "desk-bundle/VERSION" else (name, data)
         for name, data in prefixed]), "dot-segment")
    bundle("A member outside desk-bundle/ through ..", "bundle.member",
           raw_tar([*prefixed, ("desk-bundle/../VERSION", version_line())]), "dot-dot")
    bundle("VERSION twice (identical).", "bundle.duplicate",
           raw_tar([*prefixed[:1], *prefixed]))
    bundle("The signing key in upper-case hex.", "bundle.signing-key",
           changed(signing_key=good.signing_key.upper()))
    bundle("No custody.gpg.", "bundle.missing",
           raw_tar([m for m in prefixed if m[0] != "desk-bundle/custody.gpg"]))
    other = maker.parts(signer=desk_key(OTHER_SECRET))
    bundle("manifest.sig made by another desk's key.", "bundle.signature",
           changed(signature=other.signature))
    damaged = bytearray(good.manifest)
    damaged[-5] ^= 0x01
    bundle("One bit of manifest.gpg flipped: it does not decrypt.", "bundle.decrypt",
           changed(manifest=bytes(damaged)))
    bad_kind = maker.parts(manifest=maker.manifest(kind="video"))
    bundle("The manifest (properly signed) gives kind video.", "manifest.field",
           replace(good, manifest=bad_kind.manifest, signature=bad_kind.signature).tar())
    foreign = [signed_entry(desk_key(OTHER_SECRET), None, DAYS[0], "ingest", OBJECT_ID,
                            maker.digest, None)]
    for entry in maker.chain()[1:]:
        foreign.append(signed_entry(desk_key(OTHER_SECRET), foreign[-1], entry.on,
                                    entry.event, entry.subject, entry.digest,
                                    entry.actor))
    bundle("The custody log is signed by another desk's key than signing-key.pub.",
           "custody.signature", changed(custody=maker.encrypt(log_text(foreign).encode())),
           "in-bundle")
    listed = maker.parts(manifest=maker.manifest(extra_object=True))
    bundle("The manifest lists an object the bundle does not hold.", "bundle.listing",
           replace(good, manifest=listed.manifest, signature=listed.signature).tar())
    no_ingest = maker.parts(chain=maker.chain("reply export-reply"))
    bundle("The custody log has no ingest entry for the object.", "bundle.ingest",
           replace(good, custody=no_ingest.custody).tar())
    deleted = maker.parts(chain=maker.chain(
        "ingest reply delete-object export-object export-reply"))
    bundle("The custody log records the object's deletion before its export.",
           "bundle.deleted", replace(good, custody=deleted.custody).tar())
    bundle("part-000000.gpg encrypted again: it decrypts, but it is not what the desk "
           "received.", "bundle.digest", changed(objects={OBJECT_ID: {
               **good.objects[OBJECT_ID], "part-000000.gpg": maker.encrypt(MESSAGE)}}))
    other_key = maker.parts(manifest=maker.manifest(object_key=bytes(32)))
    bundle("The manifest (properly signed) gives the item another custody key, so no ingest "
           "entry commits to it.", "bundle.ingest",
           replace(good, manifest=other_key.manifest, signature=other_key.signature).tar(),
           "custody-key")
    no_reply = maker.parts(chain=maker.chain("ingest export-object"))
    bundle("The custody log has no reply entry for the reply the manifest lists.",
           "bundle.reply", replace(good, custody=no_reply.custody).tar())
    bundle("The reply's copy.gpg encrypted again: not the copy the desk sent.",
           "bundle.reply-digest",
           changed(replies={maker.reply_id: maker.encrypt(maker.keyring.gpg.decrypt_bytes(
               maker.copy))}))


def reply_files(vectors: Vectors, maker: BundleMaker) -> None:
    """The accept reply file, and reject vectors for reply files."""
    keyring, reply = maker.keyring, maker.reply
    context = {"journalist_public_keys": [keyring.public_key(keyring.journalist)],
               "source_reply_public_key_b64": b64(reply.public)}
    good = ReplyFile(reply.box, maker.copy, maker.signature)
    vectors.add("replyfile-v1.json", {
        "comment": "A reply file for the source whose reply key is reply-v1.json's, signed "
                   "by the test journalist, whose key is the desk's only journalist key.",
        "kind": "reply-file", "expect": "accept", **context, "file_b64": b64(good.to_bytes()),
    }, reject=False)

    def reply_file(comment: str, rule: str, data: bytes, suffix: str = "") -> None:
        vectors.reject("reply-file", rule, comment, suffix, **context, file_b64=b64(data))

    def signed(box: bytes, copy: bytes, signer: str | None = None) -> bytes:
        signature = keyring.gpg.sign_detached(signed_payload(box, copy),
                                              signer or keyring.journalist)
        return ReplyFile(box, copy, signature).to_bytes()

    raw = json.loads(good.to_bytes())
    reply_file("Not JSON: the file is the OpenPGP copy itself.", "replyfile.json", maker.copy)
    reply_file("format is desk-reply-copy.", "replyfile.format",
               json.dumps({**raw, "format": "desk-reply-copy"}).encode())
    reply_file("version 2.", "replyfile.version", json.dumps({**raw, "version": 2}).encode())
    reply_file("The box's base64 lacks its padding.", "replyfile.base64",
               json.dumps({**raw, "box": raw["box"].rstrip("=")}).encode())
    reply_file("Signed by a key that is not a journalist key of the desk.",
               "replyfile.signature", signed(reply.box, maker.copy, keyring.outsider))
    reply_file("The box (signed with the rest) has magic DESKREPLX.", "replyfile.box",
               signed(b"DESKREPLX" + reply.box[9:], maker.copy))
    _, other_public = key_from_seed(bytes(range(96)))
    reply_file("The box is sealed to another source's reply key.", "replyfile.recipient",
               signed(seal_reply(other_public, "Where was this filmed?", reply.box[10:26]),
                      maker.copy))
    plaintext = keyring.gpg.decrypt_bytes(maker.copy)
    reply_file("The copy is also encrypted to a key that is not a journalist key.",
               "replyfile.copy", signed(reply.box, maker.encrypt(
                   plaintext, keyring.journalist, keyring.outsider)), "extra-recipient")
    reply_file("The copy is not encrypted to the desk's journalist key.", "replyfile.copy",
               signed(reply.box, maker.encrypt(plaintext, keyring.outsider)),
               "missing-recipient")


def main(argv: list[str] | None = None) -> None:
    """Write every vector."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    out = parser.parse_args(argv).out
    vectors = Vectors(out)
    records(vectors)
    custody(vectors)
    custody_v2(vectors)
    copies(vectors)
    reply = reply_material()
    boxes(vectors, reply)
    with tempfile.TemporaryDirectory(prefix="desk-vectors-") as folder:
        keyring = Keyring(Path(folder) / "gnupg")
        try:
            maker = BundleMaker(keyring, reply)
            bundles(vectors, maker)
            reply_files(vectors, maker)
        finally:
            keyring.close()
    vectors.write()


if __name__ == "__main__":
    os.umask(0o077)
    main()
