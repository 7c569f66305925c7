"""The ciphertext store: objects appear in it whole and durable, or not at all.

Layout (deploy/STORAGE.md): ``objects/<id>/`` holds a published object, ``replies/<id>/`` a
reply; ``staging/<random>/`` holds one being written. A file is written under a ``.tmp-`` name,
fsynced, renamed and its directory fsynced; an object or reply is published by renaming its
staging directory into place.

A source's write that would leave less than the reserve free (DESK_RESERVE_BYTES bytes and
DESK_RESERVE_INODES of the filesystem's inodes) is refused with NoSpace before it starts: the
database, custody, replies and journalists' work need room and inodes too, and no source may
spend them. A write that fills the disk anyway fails with ENOSPC and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from crypto.durable import sync_path
from crypto.items import Kind
from crypto.names import (
    HIDDEN_PREFIX,
    OBJECT_ID_RE,
    OBJECTS_DIR,
    POOL_DIR,
    POOL_FILE_PREFIX,
    POOL_FOLDER_PREFIX,
    REPLIES_DIR,
    STAGING_DIR,
    TEMP_PREFIX,
    UPLOADS_DIR,
)
from desk.config import DEFAULT_RESERVE_BYTES, DEFAULT_RESERVE_INODES, DiskShare
from desk.errors import NoSpace

# Room kept free beyond an upload's own size by default (its ciphertext is a little larger,
# and the database, sessions and other uploads in progress write to the same disk).
SPACE_RESERVE = DEFAULT_RESERVE_BYTES


class Staging:
    """A private directory where one object's files are written before publication; `store`
    is the store it belongs to, whose test hook counts what is written there."""

    def __init__(self, path: Path, store: Store | None = None) -> None:
        self.path = path
        self.store = store

    @contextlib.contextmanager
    def new_file(self, name: str) -> Iterator[Path]:
        """Yield a temporary path to write; on success make it durable under `name`."""
        temp = self.path / f"{TEMP_PREFIX}{name}"
        if self.store is not None:
            # gpg (--output with --yes) and `write` truncate the file and keep its inode.
            self.store.take_pooled(POOL_FILE_PREFIX, temp)
        try:
            yield temp
            if self.store is not None:
                self.store.spend(temp.stat().st_size)
            sync_path(temp)
            os.rename(temp, self.path / name)
            sync_path(self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


    def write(self, name: str, chunks: Iterable[bytes]) -> None:
        """Write `chunks` to the file `name`, durably, into a pooled inode if there is one."""
        with self.new_file(name) as temp, temp.open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class StagedItem:
    """An object fully encrypted into a staging directory, not yet published."""

    object_id: str
    kind: Kind
    staging: Staging
    size: int
    sha256: str | None
    filename: str | None
    part_count: int
    ciphertext_size: int
    ciphertext_sha256: str


class Store:
    """A directory of published ciphertext objects."""

    def __init__(self, root: Path, reserve_bytes: int = DEFAULT_RESERVE_BYTES,
                 reserve_inodes: DiskShare = DEFAULT_RESERVE_INODES) -> None:
        self.root = root
        self.reserve_bytes = reserve_bytes
        self.reserve_inodes = reserve_inodes
        self.objects = root / OBJECTS_DIR
        self.staging_root = root / STAGING_DIR
        self.uploads = root / UPLOADS_DIR
        self.replies = root / REPLIES_DIR
        self.pool = root / POOL_DIR
        # Test hook, None (off) unless a test sets it: the store then behaves as if its disk
        # had only this many bytes free, and a file written through a Staging that does not
        # fit fails with ENOSPC as on a real full disk. For tests that cannot mount a small
        # filesystem; nothing in the desk sets it, and no setting or variable reaches it.
        self.simulated_free_bytes: int | None = None

    def create(self) -> None:
        """Make the store's directories, readable by the desk's user only."""
        for path in (self.root, self.objects, self.staging_root, self.uploads,
                     self.replies):
            if not path.is_dir():
                path.mkdir(mode=0o700, parents=True)
                sync_path(path.parent)

    def free_bytes(self) -> int:
        """Bytes the desk may still write on the store's disk."""
        free = shutil.disk_usage(self.root).free
        simulated = self.simulated_free_bytes
        return free if simulated is None else min(free, simulated)

    def disk_bytes(self) -> int:
        """The size of the disk that holds the store."""
        return shutil.disk_usage(self.root).total

    def require_space(self, size: int, inodes: int = 1) -> None:
        """NoSpace unless `size` bytes and `inodes` files more would still leave the reserve
        of bytes and inodes free. For sources' writes only: the desk's own may use the
        reserve."""
        if self.free_bytes() < size + self.reserve_bytes:
            raise NoSpace()
        # Inodes run out on their own: thousands of empty uploads fill a disk that is 2% full.
        # f_favail is what an unprivileged user may still make; a filesystem that reports no
        # inode count (btrfs) has no such limit.
        stats = os.statvfs(self.root)
        if stats.f_files and stats.f_favail < inodes + self.reserve_inodes.of(stats.f_files):
            raise NoSpace()

    def spend(self, size: int) -> None:
        """Count a file just written against `simulated_free_bytes`, if a test set it."""
        simulated = self.simulated_free_bytes
        if simulated is None:
            return
        if size > simulated:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.simulated_free_bytes = simulated - size

    def stage(self) -> Staging:
        """A new, empty staging directory."""
        path = self.staging_root / secrets.token_hex(16)
        self.make_dir(path)
        return Staging(path, self)

    def make_dir(self, path: Path) -> None:
        """Make the empty directory `path` (mode 0700), a pooled one if there is one, and
        fsync its parent: the new entry survives a power cut."""
        if not self.take_pooled(POOL_FOLDER_PREFIX, path):
            path.mkdir(mode=0o700)
        sync_path(path.parent)

    def take_pooled(self, prefix: str, target: Path) -> bool:
        """Move one of the pool's empty files or folders (by `prefix`) to `target`, which
        must not exist; False when the pool has none left.

        Each settle fills the pool, so what is written into a pooled inode carries that
        settle's birth time, not the time of the write (deploy/STORAGE.md, "Settling").
        """
        try:
            names = [entry.name for entry in os.scandir(self.pool)
                     if entry.name.startswith(prefix)]
        except FileNotFoundError:
            return False
        secrets.SystemRandom().shuffle(names)  # threads taking at once rarely collide
        for name in names:
            try:
                os.rename(self.pool / name, target)
            except FileNotFoundError:
                continue  # another writer took it first
            return True
        return False

    def stage_links(self, source: Staging) -> Staging:
        """A new staging directory holding hard links to `source`'s ciphertext files.

        Publishing the links and undoing that (which deletes them) leaves `source` whole.
        """
        staging = self.stage()
        try:
            for path in sorted(source.path.iterdir()):
                if path.is_file() and not path.name.startswith(HIDDEN_PREFIX):
                    os.link(path, staging.path / path.name)
            sync_path(staging.path)
        except BaseException:
            self.discard(staging)
            raise
        return staging

    def discard(self, staging: Staging) -> None:
        """Remove a staging directory and everything in it."""
        shutil.rmtree(staging.path, ignore_errors=True)

    def publish(self, staging: Staging, object_id: str) -> Path:
        """Move a finished staging directory to ``objects/<object_id>`` durably."""
        return self._publish(staging, self.path(object_id))

    def publish_reply(self, staging: Staging, reply_id: str) -> Path:
        """Move a finished staging directory to ``replies/<reply_id>`` durably."""
        self.replies.mkdir(mode=0o700, exist_ok=True)  # a store made before replies existed
        return self._publish(staging, self.reply_path(reply_id))

    def _publish(self, staging: Staging, final: Path) -> Path:
        sync_path(staging.path)
        os.rename(staging.path, final)
        sync_path(final.parent)
        return final

    def path(self, object_id: str) -> Path:
        """The directory of a published object."""
        if not OBJECT_ID_RE.match(object_id):
            raise ValueError(f"not an object id: {object_id!r}")
        return self.objects / object_id

    def reply_path(self, reply_id: str) -> Path:
        """The directory of a stored reply."""
        if not OBJECT_ID_RE.match(reply_id):
            raise ValueError(f"not a reply id: {reply_id!r}")
        return self.replies / reply_id

    def remove_reply(self, reply_id: str) -> None:
        """Delete a reply's files."""
        _remove_tree(self.reply_path(reply_id))
        sync_path(self.replies)

    def remove(self, object_id: str) -> None:
        """Delete a published object's files."""
        _remove_tree(self.path(object_id))
        sync_path(self.objects)

    def remove_upload(self, upload_id: str) -> None:
        """Delete a resumable upload's folder: its parts, sealed tail and lock."""
        if not OBJECT_ID_RE.match(upload_id):
            raise ValueError(f"not an upload id: {upload_id!r}")
        _remove_tree(self.uploads / upload_id)
        sync_path(self.uploads)


def _remove_tree(path: Path) -> None:
    """Remove a directory and all it holds. A settle that re-creates the directory at the same
    moment swaps a new one in under the same name; that one is removed too."""
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
