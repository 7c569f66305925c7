"""`desk-review open` and `wipe`: streaming decryption that keeps nothing unless it all checks.

Each part is decrypted by the local GnuPG straight into one temporary file, hashed on the way
and checked against the SHA-256 in the encrypted metadata record. gpg hands over a manipulated
message's plaintext before it reports the damage, so only a clean exit and matching hashes let
the file take its real name; any failure deletes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from crypto.custody import ciphertext_digest, file_sha256, object_files
from crypto.durable import remove_durably, sync_path
from crypto.errors import DecryptionFailed
from crypto.gpg import GnuPG
from crypto.items import MAX_MESSAGE_BYTES
from crypto.names import CONSOLE_SCRATCH_PREFIXES, PARTIAL_MARK
from desk.review.errors import ReviewError
from desk.review.index import Action, Item
from desk.review.inert import FORMAT_RE
from desk.review.workspace import Workspace, log_action

MAX_NAME_BYTES = 200
UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\:]")


@dataclass(frozen=True)
class Wiped:
    """What `wipe` removed, and the recorded copies it left, each with the reason."""

    removed: list[Path]
    kept: list[tuple[Path, str]]


@dataclass(frozen=True)
class Opened:
    """A decrypted item: where it is (None for a message shown only) and its SHA-256."""

    path: Path | None
    sha256: str
    size: int
    text: str | None = None


def safe_filename(name: str | None, item_id: str) -> str:
    """A file name that cannot leave its folder or hide: the last path element, no control
    characters, no leading dot, at most 200 bytes; 'item-<id>' when nothing is left.

    A Unicode format character (a bidi override, a zero-width space) becomes its code point
    in brackets, "[U+202E]": "photo_\u202egpj.html" would show as "photo_lmth.jpg" in a file
    manager and open as HTML, and is written as "photo_[U+202E]gpj.html", which shows both
    the trick and the real extension.
    """
    if name:
        name = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
        name = FORMAT_RE.sub(lambda m: f"[U+{ord(m.group()):04X}]", name)
        name = UNSAFE_NAME.sub("_", name).lstrip(". ").strip()
        while len(name.encode("utf-8")) > MAX_NAME_BYTES:
            stem, dot, ext = name.rpartition(".")
            name = f"{stem[:-1]}{dot}{ext}" if dot and len(ext) < 16 and stem else name[:-1]
    return name or f"item-{item_id}"


def _check_ciphertext(workspace: Workspace, item: Item) -> None:
    """The item's files must still be the ciphertext import verified against custody. Checked
    after the parts decrypted (each against its own hash, which names a damaged part): what is
    left to catch is a damaged metadata record, which open does not read."""
    folder = workspace.objects(item.id)
    try:
        digest = ciphertext_digest(object_files(folder))
    except FileNotFoundError:
        digest = None
    if digest != item.ciphertext_sha256:
        raise ReviewError(f"item {item.id}: its ciphertext in this workspace differs from what "
                          "was imported and verified; nothing was kept",
                          "import the bundle again to restore it")


def open_item(workspace: Workspace, gpg: GnuPG, item_id: str, out_dir: Path | None = None,
              progress: Callable[[int], None] = lambda _n: None) -> Opened:
    """Decrypt an item into `out_dir` (default: the workspace's decrypted/<id>/), or, for a
    message with no `out_dir`, into memory to be shown."""
    with workspace.session() as session:
        item = workspace.item(session, item_id)
        parts = [(p.name, p.size, p.sha256) for p in item.parts]
        if item.kind == "message" and out_dir is None:
            if item.size > MAX_MESSAGE_BYTES:
                # Held whole in memory, it is bounded as the desk bounds what it accepts.
                raise ReviewError(
                    f"item {item.id}: its record says the message is {item.size} bytes, more "
                    f"than the {MAX_MESSAGE_BYTES} a source can send; nothing was decrypted",
                    "open it with --out to decrypt it to a file")
            data, digest = _decrypt_to_memory(workspace, gpg, item, parts)
            _check_ciphertext(workspace, item)
            log_action(session, item.id, "read-message", sha256=digest)
            return Opened(None, digest, len(data), data.decode("utf-8", "replace"))
        folder = out_dir or workspace.decrypted(item.id)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Recorded as an absolute path: `wipe`, run from another folder, must find this file
        # and no other.
        folder = folder.resolve()
        final = folder / safe_filename(item.filename, item.id)
        if final.exists() and item.decrypted_path != str(final):
            # Another item (or another file) already has this name here: never overwrite it.
            final = final.with_name(f"{final.stem}-{item.id[:12]}{final.suffix}")
        temp = folder / f"{PARTIAL_MARK}{os.urandom(6).hex()}"
        try:
            digest, size = _decrypt_parts(workspace, gpg, item, parts, temp, progress)
            _check_ciphertext(workspace, item)
            os.replace(temp, final)
            sync_path(folder)
        finally:
            temp.unlink(missing_ok=True)
        item.decrypted_path, item.decrypted_sha256 = str(final), digest
        log_action(session, item.id, "decrypt", sha256=digest, size=size, path=str(final))
        return Opened(final, digest, size)


def _decrypt_parts(workspace: Workspace, gpg: GnuPG, item: Item,
                   parts: list[tuple[str, int, str]], temp: Path,
                   progress: Callable[[int], None]) -> tuple[str, int]:
    """Decrypt the parts into `temp`, checking each part's hash, and keep exactly the item's
    first `size` bytes: what follows (version 2 records) is padding, which must be zeros."""
    whole, total = hashlib.sha256(), 0
    left = item.size  # content bytes still to write; the rest is padding
    # One unpadded part is the whole file: hash it once (hashing is a third of the work).
    single = len(parts) == 1 and parts[0][1] == item.size
    # Owner-only from the start, wherever --out puts it.
    with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        for name, size, sha256 in parts:
            digest, count = (whole if single else hashlib.sha256()), 0
            padding_ok = True

            def sink(chunk: bytes, digest: hashlib._Hash = digest) -> None:
                nonlocal count, left, padding_ok
                digest.update(chunk)
                content, padding = chunk[:max(left, 0)], chunk[max(left, 0):]
                out.write(content)
                if not single:
                    whole.update(content)
                if padding.count(0) != len(padding):
                    padding_ok = False
                left -= len(chunk)
                count += len(chunk)
                progress(len(chunk))

            _decrypt_part(gpg, workspace.objects(item.id) / name, sink, item.id, name, size)
            if count != size or digest.hexdigest() != sha256 or not padding_ok:
                raise ReviewError(
                    f"item {item.id}: {name} decrypted to data that does not match its "
                    "recorded SHA-256; nothing was kept", "the ciphertext was altered after it "
                    "was encrypted; keep the bundle as evidence")
            total += count
        out.flush()
        os.fsync(out.fileno())
    if total < item.size or (item.sha256 is not None and whole.hexdigest() != item.sha256):
        raise ReviewError(f"item {item.id}: the reassembled file does not match its recorded "
                          "SHA-256; nothing was kept")
    return whole.hexdigest(), item.size


def _decrypt_to_memory(workspace: Workspace, gpg: GnuPG, item: Item,
                       parts: list[tuple[str, int, str]]) -> tuple[bytes, str]:
    chunks: list[bytes] = []
    for name, size, sha256 in parts:
        start = len(chunks)
        _decrypt_part(gpg, workspace.objects(item.id) / name, chunks.append, item.id, name,
                      size)
        part = b"".join(chunks[start:])
        if len(part) != size or hashlib.sha256(part).hexdigest() != sha256:
            raise ReviewError(f"item {item.id}: {name} does not match its recorded SHA-256")
    padded = b"".join(chunks)
    data, padding = padded[:item.size], padded[item.size:]
    if len(data) != item.size or padding.count(0) != len(padding):
        raise ReviewError(f"item {item.id}: its padding is not zeros; nothing was kept")
    digest = hashlib.sha256(data).hexdigest()
    if item.sha256 is not None and digest != item.sha256:
        raise ReviewError(f"item {item.id}: the message does not match its recorded SHA-256")
    return data, digest


def _decrypt_part(gpg: GnuPG, path: Path, sink: Callable[[bytes], None], item_id: str,
                  name: str, size: int) -> None:
    """Decrypt one part into `sink`, stopping as soon as it grows past the `size` its record
    gives it (or past its own size, as only a compressed part can): the disk and memory it
    takes are bounded by what the record and the workspace hold, never by a compression
    ratio."""
    if not path.is_file():
        raise ReviewError(f"item {item_id}: {name} is missing from the workspace",
                          "import the bundle again")
    try:
        gpg.decrypt_stream(path, sink, limit=size)
    except DecryptionFailed as exc:
        raise ReviewError(f"cannot decrypt item {item_id} ({name}): {exc}; nothing was kept",
                          "use --gnupghome (or GNUPGHOME) for the GnuPG home that holds your "
                          "journalist secret key" if "secret key" in str(exc) else None
                          ) from exc


def wipe_item(workspace: Workspace, item_id: str) -> Wiped:
    """Delete every decrypted copy `open` made of an item since the item was last wiped (each
    one is in the action log with its size and SHA-256). A file at a recorded path is deleted
    only if it is still exactly what `open` wrote there; any other is kept and named. The
    console's scratch left in the staging folder by a killed command goes too."""
    removed: list[Path] = []
    kept: list[tuple[Path, str]] = []
    with workspace.session() as session:
        item = workspace.item(session, item_id)
        actions = list(session.scalars(
            select(Action).where(Action.item_id == item.id,
                                 Action.action.in_(("decrypt", "wipe"))).order_by(Action.seq)))
        last_wipe = max((a.seq for a in actions if a.action == "wipe"), default=0)
        made: dict[str, set[tuple[int, str]]] = {}
        for action in actions:
            detail = json.loads(action.detail)
            if action.action == "decrypt" and action.seq > last_wipe and detail.get("path"):
                made.setdefault(detail["path"], set()).add((detail.get("size"),
                                                            detail.get("sha256")))
        if item.decrypted_path and item.decrypted_sha256:
            made.setdefault(item.decrypted_path, set()).add((item.size, item.decrypted_sha256))
        folder = workspace.decrypted(item.id)
        for name, expected in sorted(made.items()):
            path = Path(name)
            if path.is_absolute() and path.is_relative_to(folder):
                continue  # the workspace's own folder for this item goes whole, below
            if not path.is_absolute():
                # Recorded by an older console relative to a folder it did not record.
                kept.append((path, "recorded as a relative path, so where it is is unknown"))
            elif path.is_symlink() or (path.exists() and not path.is_file()):
                kept.append((path, "no longer a regular file"))
            elif path.is_file():
                if file_sha256(path) in expected:
                    remove_durably(path)
                    removed.append(path)
                else:
                    kept.append((path, "changed or replaced since it was decrypted"))
        if folder.exists():
            removed += [p for p in folder.rglob("*") if p.is_file()]
            shutil.rmtree(folder)
            sync_path(folder.parent)
        # What a killed inspect, sheet, report or viewer left in the scratch folder (of any
        # item: scratch folders are not named by item).
        for entry in sorted(workspace.staging.iterdir()):
            if entry.name.startswith(CONSOLE_SCRATCH_PREFIXES):
                if entry.is_dir() and not entry.is_symlink():
                    removed += [p for p in entry.rglob("*") if p.is_file()]
                    shutil.rmtree(entry)
                else:
                    removed.append(entry)
                    entry.unlink()
                sync_path(workspace.staging)
        item.decrypted_path = item.decrypted_sha256 = None
        log_action(session, item.id, "wipe", removed=[str(p) for p in removed],
                   kept=[str(p) for p, _ in kept])
    return Wiped(removed, kept)


@dataclass(frozen=True)
class Dropped:
    """What `drop` removed: the item's ciphertext and index rows, and its decrypted copies."""

    item_id: str
    ciphertext_sha256: str
    decrypted: list[Path]


def drop_item(workspace: Workspace, item_id: str) -> Dropped:
    """Remove an item from this workspace: its decrypted copies (as `wipe` does), then its
    ciphertext and its rows in the index, in one transaction with the log entry that records
    it. The desk's custody entries and the console's action log keep their record of it."""
    with workspace.session() as session:
        item_id = workspace.item(session, item_id).id
    wiped = wipe_item(workspace, item_id)
    if wiped.kept:
        raise ReviewError(
            f"not dropped: {len(wiped.kept)} decrypted copy(ies) changed or moved since `open` "
            "could not be checked and were left", "remove them yourself, then drop again")
    decrypted = wiped.removed
    with workspace.session() as session:
        item = workspace.item(session, item_id)
        digest = item.ciphertext_sha256
        log_action(session, item.id, "drop", ciphertext_sha256=digest,
                   decrypted_removed=len(decrypted))
        session.delete(item)
        session.flush()
        # Removed inside the transaction: if this fails the rows stay, and `open` says the
        # ciphertext is missing rather than an orphan folder lingering unlisted.
        folder = workspace.objects(item_id)
        if folder.exists():
            shutil.rmtree(folder)
            sync_path(folder.parent)
    return Dropped(item_id, digest, decrypted)


def decrypted_copy(item: Item, check_digest: bool = True) -> Path | None:
    """The file `open` wrote for `item`, if it is still exactly that: recorded as an absolute
    path (an older console recorded relative ones, whose folder it did not keep), a regular
    file and no link, of the item's size, and with `check_digest` of the SHA-256 recorded
    when it was written. None otherwise."""
    if not item.decrypted_path or not item.decrypted_sha256:
        return None
    path = Path(item.decrypted_path)
    if not path.is_absolute() or path.is_symlink() or not path.is_file() or \
            path.stat().st_size != item.size:
        return None
    if check_digest and file_sha256(path)[1] != item.decrypted_sha256:
        return None
    return path
