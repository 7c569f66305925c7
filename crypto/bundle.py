"""Export bundles: one tar carrying objects across the air gap (crypto/FORMAT.md, "Bundles").

Everything readable about the objects (sources' designations, dates, who exported) sits in
`manifest.gpg` and `custody.gpg`; a seized transfer stick shows object and reply ids and sizes
only. The manifest also carries what the offline machine needs to reply: each source's reply
public key and the journalists' OpenPGP public keys.
"""

from __future__ import annotations

import base64
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import IO, Any

from crypto.custody import (
    CustodyEntry,
    SigningKey,
    Subject,
    ciphertext_digest,
    log_entries,
    signature_valid,
    verify_chain,
)
from crypto.errors import CustodyBroken, FormatError, b64decode_canonical, is_version, load_json
from crypto.items import KINDS
from crypto.names import (
    BUNDLE_ROOT,
    CUSTODY_NAME,
    MANIFEST_NAME,
    MANIFEST_SIGNATURE_NAME,
    METADATA_NAME,
    OBJECT_ID_RE,
    OBJECTS_DIR,
    PART_NAME_RE,
    REPLIES_DIR,
    REPLY_COPY_NAME,
    SIGNING_KEY_NAME,
    VERSION_NAME,
)
from crypto.reply import PUBLIC_KEY_BYTES

BUNDLE_VERSION = 2
# What the desk's Ed25519 key signs: this line, then the manifest's plaintext.
MANIFEST_SIGNATURE_CONTEXT = b"desk-bundle-manifest 2\n"
# The manifest and custody log are read whole: a bundle whose are larger is refused.
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
MANIFEST_FORMAT = "desk-bundle-manifest"
BLOCK = 512
CHUNK = 1 << 20
HEX64_RE = re.compile(r"^[0-9a-f]{64}\Z")
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
FINGERPRINT_RE = re.compile(r"^[0-9A-F]{40}\Z")
VIAS = ("console", "web")


@dataclass(frozen=True)
class Member:
    """One file to put in a bundle: its path inside the bundle and where its bytes come from."""

    name: str
    size: int
    data: bytes | None = None
    path: Path | None = None
    # An open file read from its start (an encrypted document whose name is already gone).
    handle: IO[bytes] | None = None


def version_line() -> bytes:
    """The contents of VERSION."""
    return f"desk-bundle {BUNDLE_VERSION}\n".encode("ascii")


def stream_tar(members: Iterable[Member]) -> Iterator[bytes]:
    """A ustar/pax archive of `members`, produced a chunk at a time with no temp copy.

    Headers carry no owner, and a modification time of 0: the bundle says nothing about when
    or by whom it was made outside its encrypted parts.
    """
    for member in members:
        yield _header(member)
        sent = 0
        for chunk in _member_chunks(member):
            sent += len(chunk)
            if sent > member.size:
                raise FormatError(f"{member.name} grew while it was being exported")
            yield chunk
        if sent != member.size:
            raise FormatError(f"{member.name} shrank while it was being exported")
        if member.size % BLOCK:
            yield b"\0" * (BLOCK - member.size % BLOCK)
    yield b"\0" * (2 * BLOCK)


def tar_size(members: Iterable[Member]) -> int:
    """The exact number of bytes stream_tar produces, for Content-Length and progress bars."""
    return 2 * BLOCK + sum(len(_header(m)) + -(-m.size // BLOCK) * BLOCK for m in members)


def _header(member: Member) -> bytes:
    info = tarfile.TarInfo(f"{BUNDLE_ROOT}/{member.name}")
    info.size, info.mtime, info.mode = member.size, 0, 0o600
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _member_chunks(member: Member) -> Iterator[bytes]:
    if member.data is not None:
        yield member.data
        return
    if member.handle is not None:
        member.handle.seek(0)
        while chunk := member.handle.read(CHUNK):
            yield chunk
        return
    if member.path is None:
        raise ValueError(f"member {member.name} has no data")
    with member.path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


@dataclass
class BundleObject:
    """An object found in a bundle: its ciphertext files by name."""

    object_id: str
    files: dict[str, tuple[int, str]] = field(default_factory=dict)


@dataclass
class Bundle:
    """What a bundle holds, checked for layout; encrypted parts still encrypted."""

    signing_key: str
    manifest: bytes
    manifest_signature: str
    custody: bytes
    objects: dict[str, BundleObject]
    # Journalists' copies of replies: reply id -> (size, sha256) of its copy.gpg.
    replies: dict[str, tuple[int, str]] = field(default_factory=dict)


TakeFile = Callable[[str, str, str, IO[bytes]], tuple[int, str]]


def read_bundle(source: IO[bytes], take_file: TakeFile) -> Bundle:
    """Read a bundle's layout, handing each ciphertext file to `take_file(folder, id, name,
    fileobj)` (folder is OBJECTS_DIR or REPLIES_DIR), which returns its (size, hex sha256) and may
    copy it while hashing. Raise FormatError on anything FORMAT.md rejects. Nothing is trusted
    until verify_bundle."""
    version: bytes | None = None
    signing_key = signature = None
    manifest = custody = None
    objects: dict[str, BundleObject] = {}
    replies: dict[str, tuple[int, str]] = {}
    documents: set[str] = set()
    with tarfile.open(fileobj=source, mode="r|") as tar:
        for info in tar:
            path = PurePosixPath(info.name)
            # Only the exact names of the layout: no "./", "//" or trailing "/" variants.
            if not info.isfile() or str(path) != info.name or path.parts[0] != BUNDLE_ROOT or \
                    ".." in path.parts:
                raise FormatError(f"unexpected member {info.name!r}")
            if len(path.parts) == 2:
                if info.name in documents:
                    raise FormatError(f"duplicate member {info.name!r}")
                documents.add(info.name)
            handle = tar.extractfile(info)
            if handle is None:  # pragma: no cover - isfile() was checked
                raise FormatError(f"unreadable member {info.name!r}")
            relative = path.parts[1:]
            if relative == (VERSION_NAME,):
                version = handle.read(64)
            elif relative == (SIGNING_KEY_NAME,):
                signing_key = _hex_line(handle, 64)
            elif relative == (MANIFEST_NAME,):
                manifest = _read_document(handle, info)
            elif relative == (MANIFEST_SIGNATURE_NAME,):
                signature = _hex_line(handle, 128)
                if signature is None:
                    raise FormatError("the manifest's signature is malformed")
            elif relative == (CUSTODY_NAME,):
                custody = _read_document(handle, info)
            elif len(relative) == 3 and relative[0] == OBJECTS_DIR and \
                    OBJECT_ID_RE.match(relative[1]) and \
                    (relative[2] == METADATA_NAME or PART_NAME_RE.match(relative[2])):
                obj = objects.setdefault(relative[1], BundleObject(relative[1]))
                if relative[2] in obj.files:
                    raise FormatError(f"duplicate member {info.name!r}")
                obj.files[relative[2]] = take_file(OBJECTS_DIR, relative[1], relative[2], handle)
            elif len(relative) == 3 and relative[0] == REPLIES_DIR and \
                    OBJECT_ID_RE.match(relative[1]) and relative[2] == REPLY_COPY_NAME:
                if relative[1] in replies:
                    raise FormatError(f"duplicate member {info.name!r}")
                replies[relative[1]] = take_file(REPLIES_DIR, relative[1], relative[2], handle)
            else:
                raise FormatError(f"unexpected member {info.name!r}")
    if version != version_line():
        raise FormatError(f"not a desk bundle of version {BUNDLE_VERSION}")
    if signing_key is None or not HEX64_RE.match(signing_key):
        raise FormatError("the bundle has no valid desk signing key")
    if manifest is None or custody is None or signature is None:
        raise FormatError("the bundle lacks its manifest, the manifest's signature or its "
                          "custody log")
    return Bundle(signing_key, manifest, signature, custody, objects, replies)


def _hex_line(handle: IO[bytes], digits: int) -> str | None:
    """A member holding exactly `digits` lower-case hex digits and a newline, or None."""
    data = handle.read(digits + 2)
    if re.fullmatch(rb"[0-9a-f]{%d}\n" % digits, data) is None:
        return None
    return data[:-1].decode("ascii")


def _read_document(handle: IO[bytes], info: tarfile.TarInfo) -> bytes:
    if info.size > MAX_DOCUMENT_BYTES:
        raise FormatError(f"member {info.name!r} is too large")
    return handle.read()


def sign_manifest(key: SigningKey, manifest_plain: bytes) -> str:
    """The manifest's signature, as bundles carry it (hex)."""
    return key.sign(MANIFEST_SIGNATURE_CONTEXT + manifest_plain)


@dataclass(frozen=True)
class ManifestObject:
    """What the encrypted manifest says about one object."""

    object_id: str
    source: str
    kind: str
    received_on: str
    ciphertext_sha256: str
    # Its custody key: its entries are version 2. None: version 1, named in clear.
    custody_key: bytes | None = None

    @property
    def custody(self) -> Subject:
        """What its custody entries carry."""
        return Subject(self.object_id, self.ciphertext_sha256, self.custody_key)


@dataclass(frozen=True)
class ManifestReply:
    """What the encrypted manifest says about one reply (its journalists' copy is in the
    bundle)."""

    reply_id: str
    source: str
    number: int
    sent_on: str
    author: str | None
    via: str
    ciphertext_sha256: str
    custody_key: bytes | None = None

    @property
    def custody(self) -> Subject:
        """What its custody entries carry."""
        return Subject(self.reply_id, self.ciphertext_sha256, self.custody_key)


@dataclass(frozen=True)
class ManifestRecipient:
    """A journalist key the desk encrypts to, so the console can encrypt reply copies to it."""

    username: str
    fingerprint: str
    public_key: str


@dataclass(frozen=True)
class Manifest:
    """A decrypted manifest."""

    header: dict[str, Any]
    objects: list[ManifestObject]
    replies: list[ManifestReply] = field(default_factory=list)
    # Designation -> the source's reply public key (FORMAT.md, "Reply boxes").
    reply_keys: dict[str, bytes] = field(default_factory=dict)
    recipients: list[ManifestRecipient] = field(default_factory=list)


LIST_FIELDS = ("objects", "replies", "sources", "recipients")


def parse_manifest(data: bytes) -> Manifest:
    """Parse a decrypted manifest; FormatError on anything FORMAT.md's manifest rules
    reject."""
    raw = load_json(data, "bundle manifest")
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT or \
            not is_version(raw.get("version"), BUNDLE_VERSION):
        raise FormatError("not a desk bundle manifest of this version")
    try:
        _check_header(raw)
        objects = [ManifestObject(_hex_id(o["id"]), _text(o["source"]), _one_of(o["kind"], KINDS),
                                  _date(o["received_on"]), _digest(o["ciphertext_sha256"]),
                                  _custody_key(o))
                   for o in _items(raw, "objects")]
        replies = [ManifestReply(_hex_id(r["id"]), _text(r["source"]), _number(r["number"]),
                                 _date(r["sent_on"]),
                                 None if r["author"] is None else _text(r["author"]),
                                 _one_of(r["via"], VIAS), _digest(r["ciphertext_sha256"]),
                                 _custody_key(r))
                   for r in _items(raw, "replies")]
        sources = [(_text(s["designation"]), _reply_key(s["reply_public_key"]))
                   for s in _items(raw, "sources")]
        recipients = [ManifestRecipient(_text(r["username"]), _fingerprint(r["fingerprint"]),
                                        _text(r["public_key"]))
                      for r in _items(raw, "recipients")]
    except (KeyError, TypeError) as exc:
        raise FormatError(f"bad bundle manifest: missing or mistyped {exc}") from exc
    for kind, ids in (("object", [o.object_id for o in objects]),
                      ("reply", [r.reply_id for r in replies]),
                      ("source", [name for name, _ in sources])):
        if len(set(ids)) != len(ids):
            raise FormatError(f"bad bundle manifest: it lists a {kind} twice")
    header = {k: v for k, v in raw.items() if k not in LIST_FIELDS}
    return Manifest(header, objects, replies, dict(sources), recipients)


def _check_header(raw: dict[str, Any]) -> None:
    _date(raw["exported_on"])
    _text(raw["exported_by"])
    _text(raw["instance"])


def _items(raw: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items = raw[name]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise FormatError(f"bad bundle manifest: {name} must be a list of objects")
    return items


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise FormatError(f"bad bundle manifest: {value!r} is not a string")
    return value


def _matching(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise FormatError(f"bad bundle manifest: {value!r} is not {what}")
    return value


def _hex_id(value: object) -> str:
    return _matching(OBJECT_ID_RE, value, "an id of 32 lower-case hex digits")


def _digest(value: object) -> str:
    return _matching(HEX64_RE, value, "a digest of 64 lower-case hex digits")


def _custody_key(listed: dict[str, Any]) -> bytes | None:
    """An object's or reply's `custody_key` member: absent (version 1 custody) or 64 hex."""
    if "custody_key" not in listed:
        return None
    return bytes.fromhex(_digest(listed["custody_key"]))


def _fingerprint(value: object) -> str:
    return _matching(FINGERPRINT_RE, value, "a fingerprint of 40 upper-case hex digits")


def _date(value: object) -> str:
    text = _matching(DATE_RE, value, "a YYYY-MM-DD date")
    try:
        date.fromisoformat(text)
    except ValueError as exc:
        raise FormatError(f"bad bundle manifest: no such day {text!r}") from exc
    return text


def _one_of(value: object, allowed: tuple[str, ...]) -> Any:
    if value not in allowed:
        raise FormatError(f"bad bundle manifest: {value!r} is not one of {', '.join(allowed)}")
    return value


def _number(value: object) -> int:
    if type(value) is not int or value < 1:
        raise FormatError(f"bad bundle manifest: reply number {value!r}")
    return value


def _reply_key(value: object) -> bytes:
    try:
        key = b64decode_canonical(value)
    except ValueError as exc:
        raise FormatError(f"bad bundle manifest: reply_public_key: {exc}") from exc
    if len(key) != PUBLIC_KEY_BYTES:
        raise FormatError(f"bad bundle manifest: a reply public key has "
                          f"{PUBLIC_KEY_BYTES} bytes, not {len(key)}")
    return key


def verify_bundle(bundle: Bundle, manifest_plain: bytes, custody_plain: bytes,
                  ) -> tuple[Manifest, list[CustodyEntry]]:
    """Check a bundle whose manifest and custody log have been decrypted: every custody
    signature and link, every object and reply listed and present, every object's ciphertext
    against the digest recorded when it was received and every reply copy against the digest
    recorded when it was sent. Raise CustodyBroken or FormatError."""
    if not signature_valid(bundle.signing_key, MANIFEST_SIGNATURE_CONTEXT + manifest_plain,
                           bundle.manifest_signature):
        raise FormatError("the manifest is not signed by the desk's signing key")
    chain = verify_chain(log_entries(custody_plain), bundle.signing_key)
    manifest = parse_manifest(manifest_plain)
    received = {e.subject: e for e in chain if e.event == "ingest"}
    deleted = {e.subject for e in chain if e.event == "delete"}
    _same_ids("object", {o.object_id for o in manifest.objects}, set(bundle.objects))
    for obj in manifest.objects:
        digest = ciphertext_digest(bundle.objects[obj.object_id].files)
        entry = received.get(obj.custody.subject)
        if entry is None:
            raise CustodyBroken("has no ingest entry in the custody log",
                                object_id=obj.object_id)
        if obj.custody.subject in deleted:
            raise CustodyBroken("is recorded as deleted but was exported",
                                object_id=obj.object_id)
        held = Subject(obj.object_id, digest, obj.custody_key)
        if not held.matches(entry) or digest != obj.ciphertext_sha256:
            raise CustodyBroken("ciphertext differs from what the desk received",
                                object_id=obj.object_id)
    sent = {e.subject: e for e in chain if e.event == "reply"}
    _same_ids("reply", {r.reply_id for r in manifest.replies}, set(bundle.replies))
    for reply in manifest.replies:
        digest = ciphertext_digest({REPLY_COPY_NAME: bundle.replies[reply.reply_id]})
        entry = sent.get(reply.custody.subject)
        if entry is None:
            raise CustodyBroken("has no reply entry in the custody log",
                                object_id=reply.reply_id, kind="reply")
        if reply.custody.subject in deleted:
            raise CustodyBroken("is recorded as deleted but was exported",
                                object_id=reply.reply_id, kind="reply")
        held = Subject(reply.reply_id, digest, reply.custody_key)
        if not held.matches(entry) or digest != reply.ciphertext_sha256:
            raise CustodyBroken("copy differs from what the desk sent",
                                object_id=reply.reply_id, kind="reply")
    return manifest, chain


def _same_ids(kind: str, listed: set[str], present: set[str]) -> None:
    """FormatError naming the first id the manifest lists but the bundle lacks, or the other
    way round."""
    if missing := sorted(listed - present):
        raise FormatError(f"the manifest lists {kind} {missing[0]}, which the bundle lacks")
    if extra := sorted(present - listed):
        raise FormatError(f"the bundle holds {kind} {extra[0]}, which the manifest does not list")


def manifest_json(header: dict[str, Any], objects: Iterable[ManifestObject],
                  replies: Iterable[ManifestReply] = (),
                  reply_keys: dict[str, bytes] | None = None,
                  recipients: Iterable[ManifestRecipient] = ()) -> bytes:
    """The manifest document, before encryption."""
    return b"".join(manifest_chunks(header, objects, replies, reply_keys, recipients))


def manifest_chunks(header: dict[str, Any], objects: Iterable[ManifestObject],
                    replies: Iterable[ManifestReply] = (),
                    reply_keys: dict[str, bytes] | None = None,
                    recipients: Iterable[ManifestRecipient] = ()) -> Iterator[bytes]:
    """The manifest document a list element at a time, each list read once as it goes: the
    bytes are json.dumps(..., ensure_ascii=False, indent=1) of the whole document, without
    ever holding the document's objects (an export of 20,000 items held them all)."""
    lists: dict[str, Iterable[dict[str, Any]]] = {
        "objects": ({"id": o.object_id, "source": o.source, "kind": o.kind,
                     "received_on": o.received_on, "ciphertext_sha256": o.ciphertext_sha256,
                     **_key_member(o.custody_key)} for o in objects),
        "replies": ({"id": r.reply_id, "source": r.source, "number": r.number,
                     "sent_on": r.sent_on, "author": r.author, "via": r.via,
                     "ciphertext_sha256": r.ciphertext_sha256, **_key_member(r.custody_key)}
                    for r in replies),
        "sources": ({"designation": name, "reply_public_key": base64.b64encode(key).decode()}
                    for name, key in sorted((reply_keys or {}).items())),
        "recipients": ({"username": r.username, "fingerprint": r.fingerprint,
                        "public_key": r.public_key} for r in recipients),
    }
    # The document with an empty list in each list's place, then each list spliced in.
    skeleton = json.dumps({"format": MANIFEST_FORMAT, "version": BUNDLE_VERSION, **header,
                           **{name: [] for name in lists}}, ensure_ascii=False, indent=1)
    for name, elements in lists.items():
        head, tail = skeleton.split(f'\n "{name}": []', 1)
        yield f'{head}\n "{name}": '.encode()
        yield from _list_chunks(elements)
        skeleton = tail
    yield skeleton.encode()


def _list_chunks(elements: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """A list one level inside the document, as json.dumps(indent=1) writes it."""
    opened = False
    for element in elements:
        text = json.dumps(element, ensure_ascii=False, indent=1).replace("\n", "\n  ")
        yield f'{"," if opened else "["}\n  {text}'.encode()
        opened = True
    yield b"\n ]" if opened else b"[]"


def _key_member(custody_key: bytes | None) -> dict[str, str]:
    """The `custody_key` member of a listed object or reply, if its custody is version 2."""
    return {} if custody_key is None else {"custody_key": custody_key.hex()}
