"""Export bundles: one tar carrying objects across the air gap (crypto/FORMAT.md, "Bundles").

Everything readable about the objects (sources' designations, dates, who exported) sits in
`manifest.gpg` and `custody.gpg`; a seized transfer stick shows object ids and sizes only.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from crypto.custody import (
    CustodyEntry,
    ciphertext_digest,
    entries_from_lines,
    verify_chain,
)
from crypto.errors import CustodyBroken, FormatError
from crypto.objects import METADATA_NAME, OBJECT_ID_RE, PART_NAME_RE

BUNDLE_VERSION = 1
ROOT = "desk-bundle"
VERSION_NAME = "VERSION"
SIGNING_KEY_NAME = "signing-key.pub"
MANIFEST_NAME = "manifest.gpg"
CUSTODY_NAME = "custody.gpg"
MANIFEST_FORMAT = "desk-bundle-manifest"
BLOCK = 512
CHUNK = 1 << 20
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Member:
    """One file to put in a bundle: its path inside the bundle and where its bytes come from."""

    name: str
    size: int
    data: bytes | None = None
    path: Path | None = None


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
    info = tarfile.TarInfo(f"{ROOT}/{member.name}")
    info.size, info.mtime, info.mode = member.size, 0, 0o600
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _member_chunks(member: Member) -> Iterator[bytes]:
    if member.data is not None:
        yield member.data
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
    custody: bytes
    objects: dict[str, BundleObject]


def read_bundle(source: IO[bytes],
                take_file: Callable[[str, str, IO[bytes]], tuple[int, str]]) -> Bundle:
    """Read a bundle's layout, handing each ciphertext file to `take_file(object_id, name,
    fileobj)`, which returns its (size, hex sha256) and may copy it while hashing. Raise
    FormatError on anything FORMAT.md rejects. Nothing is trusted until verify_bundle."""
    version: bytes | None = None
    signing_key = manifest = custody = None
    objects: dict[str, BundleObject] = {}
    with tarfile.open(fileobj=source, mode="r|") as tar:
        for info in tar:
            path = PurePosixPath(info.name)
            if not info.isfile() or path.parts[0] != ROOT or ".." in path.parts:
                raise FormatError(f"unexpected member {info.name!r}")
            handle = tar.extractfile(info)
            if handle is None:  # pragma: no cover - isfile() was checked
                raise FormatError(f"unreadable member {info.name!r}")
            relative = path.parts[1:]
            if relative == (VERSION_NAME,):
                version = handle.read(64)
            elif relative == (SIGNING_KEY_NAME,):
                signing_key = handle.read(128).decode("ascii", "replace").strip()
            elif relative == (MANIFEST_NAME,):
                manifest = handle.read()
            elif relative == (CUSTODY_NAME,):
                custody = handle.read()
            elif len(relative) == 3 and relative[0] == "objects" and \
                    OBJECT_ID_RE.match(relative[1]) and \
                    (relative[2] == METADATA_NAME or PART_NAME_RE.match(relative[2])):
                obj = objects.setdefault(relative[1], BundleObject(relative[1]))
                if relative[2] in obj.files:
                    raise FormatError(f"duplicate member {info.name!r}")
                obj.files[relative[2]] = take_file(relative[1], relative[2], handle)
            else:
                raise FormatError(f"unexpected member {info.name!r}")
    if version != version_line():
        raise FormatError(f"not a desk bundle of version {BUNDLE_VERSION}")
    if signing_key is None or not HEX64_RE.match(signing_key):
        raise FormatError("the bundle has no valid desk signing key")
    if manifest is None or custody is None:
        raise FormatError("the bundle lacks its manifest or custody log")
    return Bundle(signing_key, manifest, custody, objects)


@dataclass(frozen=True)
class ManifestObject:
    """What the encrypted manifest says about one object."""

    object_id: str
    source: str
    kind: str
    received_on: str
    ciphertext_sha256: str


def parse_manifest(data: bytes) -> tuple[dict[str, Any], list[ManifestObject]]:
    """Parse a decrypted manifest into its header fields and objects."""
    try:
        raw = json.loads(data.decode("utf-8"))
        if raw.get("format") != MANIFEST_FORMAT or raw.get("version") != BUNDLE_VERSION:
            raise FormatError("not a desk bundle manifest of this version")
        objects = [ManifestObject(o["id"], o["source"], o["kind"], o["received_on"],
                                  o["ciphertext_sha256"]) for o in raw["objects"]]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise FormatError(f"bad bundle manifest: {exc}") from exc
    header = {k: v for k, v in raw.items() if k != "objects"}
    return header, objects


def verify_bundle(bundle: Bundle, manifest_plain: bytes, custody_plain: bytes,
                  ) -> tuple[list[ManifestObject], list[CustodyEntry]]:
    """Check a bundle whose manifest and custody log have been decrypted: every custody
    signature and link, every object listed and present, and every object's ciphertext
    against the digest recorded when it was received. Raise CustodyBroken or FormatError."""
    chain = verify_chain(entries_from_lines(custody_plain.decode("utf-8").splitlines()),
                         bundle.signing_key)
    _, listed = parse_manifest(manifest_plain)
    received = {e.object_id: e.ciphertext_sha256 for e in chain if e.event == "ingest"}
    if {o.object_id for o in listed} != set(bundle.objects):
        raise FormatError("the manifest and the bundle's objects differ")
    for obj in listed:
        digest = ciphertext_digest(bundle.objects[obj.object_id].files)
        if received.get(obj.object_id) is None:
            raise CustodyBroken("has no ingest entry in the custody log",
                                object_id=obj.object_id)
        if digest != received[obj.object_id] or digest != obj.ciphertext_sha256:
            raise CustodyBroken("ciphertext differs from what the desk received",
                                object_id=obj.object_id)
    return listed, chain


def manifest_json(header: dict[str, Any], objects: Iterable[ManifestObject]) -> bytes:
    """The manifest document, before encryption."""
    return json.dumps({
        "format": MANIFEST_FORMAT, "version": BUNDLE_VERSION, **header,
        "objects": [{"id": o.object_id, "source": o.source, "kind": o.kind,
                     "received_on": o.received_on, "ciphertext_sha256": o.ciphertext_sha256}
                    for o in objects],
    }, ensure_ascii=False, indent=1).encode("utf-8")
