"""A filesystem whose free space a test sets: a small tmpfs of the test's own with a ballast
file on it, or, where the test may not mount (not root, or DESK_TEST_DISK=hook), the store's
test hook (`Store.simulated_free_bytes`) standing in for it. And what a desk lists and leaves
behind, to show that a refusal for want of space kept nothing.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from desk.intake.tus import LOCK_NAME
from desk.records.models import CustodyRecord, Item, Upload
from desk.services import Services
from desk.storage.store import TEMP_PREFIX, Store
from tests.harness.data import KiB, MiB
from tests.harness.desks import files_under
from tests.harness.forms import FormBody
from tests.harness.servers import Server

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer as Buffer

TIMEOUT = 30
BALLAST = "ballast"
NO_SPACE_PAGE = "The desk has no room for what you sent right now, so nothing was kept."
NO_SPACE_LOG = "the disk holding the desk's data is full"


# A filesystem whose free space the test sets


def mount_tmpfs(path: Path, size: int, inodes: int | None = None) -> bool:
    """Mount a tmpfs of `size` bytes (and at most `inodes` files and folders, if given) at
    `path` (made here); False if the test may not."""
    path.mkdir()
    if os.environ.get("DESK_TEST_DISK") == "hook" or os.geteuid() != 0:
        return False
    options = f"size={size},mode=0700" + ("" if inodes is None else f",nr_inodes={inodes}")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True, timeout=TIMEOUT, check=False)
    return mounted.returncode == 0


def unmount(path: Path) -> None:
    """Undo `mount_tmpfs`, even if something still holds a file open there."""
    # gpg may have started an agent for a GnuPG home there, whose socket keeps it busy.
    for home in {socket.parent for socket in path.rglob("S.gpg-agent*")}:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       capture_output=True, timeout=TIMEOUT, check=False)
    if subprocess.run(["umount", str(path)], capture_output=True, timeout=TIMEOUT,
                      check=False).returncode != 0:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True, timeout=TIMEOUT,
                       check=True)


@dataclass
class Disk:
    """A filesystem for a desk's data (a tmpfs, or a plain directory with the store's hook)."""

    path: Path
    mounted: bool
    store: Store | None = None  # the store the hook acts on, when not mounted

    def fill(self, leave: int = 0) -> None:
        """Leave only `leave` bytes free."""
        self.free()
        if not self.mounted:
            assert self.store is not None
            self.store.simulated_free_bytes = leave
            return
        # A writer may be taking space meanwhile. Grow the ballast a step at a time: a step
        # that fails is undone whole, and must not hand the writer back the whole disk.
        step, allocated = 8 * MiB, 0
        with (self.path / BALLAST).open("wb") as ballast:
            for _ in range(10_000):
                if (wanted := self.available() - leave) <= 0:
                    break
                size = min(step, wanted)
                try:
                    os.posix_fallocate(ballast.fileno(), allocated, size)
                    allocated += size
                except OSError:  # ENOSPC: the writer took some first
                    step = max(step // 2, 4 * KiB)
        assert self.available() <= leave

    def available(self) -> int:
        """Free bytes on the filesystem."""
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def free(self) -> None:
        """Give the space back."""
        if self.store is not None:
            self.store.simulated_free_bytes = None
        (self.path / BALLAST).unlink(missing_ok=True)


@contextlib.contextmanager
def small_disk(path: Path, size: int, inodes: int | None = None) -> Iterator[Disk]:
    """A Disk at `path` (with at most `inodes` files and folders, if given), unmounted again
    however the test ends."""
    mounted = mount_tmpfs(path, size, inodes)
    try:
        yield Disk(path, mounted)
    finally:
        if mounted:
            unmount(path)


# What the desk lists and leaves behind


@dataclass(frozen=True)
class Listed:
    """Everything that says an item arrived (rows, published objects, the custody log), and
    the uploads under way with their offsets."""

    submissions: list[str]
    objects: list[str]
    custody: list[str]
    uploads: list[tuple[str, int, int]]


def listed(desk: Services) -> Listed:
    """What `desk` lists right now."""
    with desk.sessions() as session:
        return Listed(
            submissions=sorted(session.scalars(select(Item.id))),
            objects=sorted(p.name for p in (desk.config.store_dir / "objects").iterdir()),
            custody=list(session.scalars(select(CustodyRecord.entry_hash)
                                         .order_by(CustodyRecord.seq))),
            uploads=sorted((u.id, u.offset, u.part_count)
                           for u in session.scalars(select(Upload))))


def leftovers(desk: Services) -> list[Path]:
    """Anything in staging, and any temporary file anywhere in the store."""
    staging = desk.config.store_dir / "staging"
    return sorted([*staging.iterdir(), *(p for p in files_under(desk.config.store_dir)
                                         if p.name.startswith(TEMP_PREFIX))])


def upload_files(desk: Services, location: str) -> list[str]:
    """The files in an upload's folder, but its lock."""
    folder = desk.store.uploads / location.rsplit("/", 1)[-1]
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)


def assert_no_space_page(page: TestResponse | requests.Response) -> None:
    """The desk's error page, 507, with the calm message and nothing else said."""
    assert page.status_code == 507
    assert NO_SPACE_PAGE in page.text
    for detail in ("Traceback", "ENOSPC", "No space left", "Errno", "gpg", "sqlite", "full"):
        assert detail not in page.text



def assert_logged_once(caplog: pytest.LogCaptureFixture, refusals: int = 1) -> None:
    """The desk's log holds one line per refusal, saying the disk is full, and nothing else
    worth a warning: no traceback, no request data. (python-gnupg's own logger, which the
    desk leaves without a handler, reports the failed gpg run too.)"""
    logged = [r for r in caplog.records
              if r.name.split(".")[0] == "desk" and r.levelno >= logging.WARNING]
    assert [NO_SPACE_LOG in r.getMessage() for r in logged] == [True] * refusals
    assert [r.exc_info for r in logged] == [None] * refusals




class FillingBody(io.BytesIO):
    """A request body that fills the disk (up to `leave` bytes) once `at` bytes of it have
    been read, as another upload arriving at the same time would."""

    def __init__(self, data: bytes, at: int, disk: Disk, leave: int = 0) -> None:
        super().__init__(data)
        self._at, self._disk, self._leave = at, disk, leave
        self.filled = False

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to `size` bytes, stopping once at `at` so that the disk fills exactly there."""
        position = self.tell()
        if position >= self._at and not self.filled:
            self._disk.fill(self._leave)
            self.filled = True
        if not self.filled:
            wanted = self._at - position
            size = wanted if size is None or size < 0 else min(size, wanted)
        return super().read(size)

    def readinto(self, buffer: Buffer, /) -> int:
        """As `read`, into `buffer` (what Werkzeug's request stream calls)."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)


def post_form(client: FlaskClient, body: FormBody, stream: FillingBody) -> TestResponse:
    """Post a hand-built form whose bytes come from `stream`."""
    return client.post("/submit", input_stream=stream, content_type=body.content_type)


@dataclass
class DatabaseDisk:
    """A desk whose database lives alone on a small filesystem (its store does not), so that
    the database, not the store, is what runs out of room."""

    disk: Disk
    desk: Services
    watcher: sqlite3.Connection

    def fill(self) -> None:
        """Leave the database no room to write a single page."""
        # An emptied write-ahead log must grow for the next write; a reused one would not.
        busy, _, _ = self.watcher.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        self.disk.fill(0)

    def integrity(self) -> str:
        """SQLite's own verdict on the database file."""
        return ", ".join(row[0] for row in self.watcher.execute("PRAGMA integrity_check"))


def filling_chunks(data: bytes, at: int, disk: Disk) -> Iterator[bytes]:
    """`data` in pieces; the disk fills once `at` bytes have gone, as if another upload took
    the room meanwhile."""
    for start in range(0, len(data), 256 * KiB):
        if start == at:
            disk.fill(0)
        yield data[start:start + 256 * KiB]


def log_lines(server: Server, text: str) -> list[str]:
    """The server log's lines that contain `text`."""
    return [line for line in server.log.read_text().splitlines() if text in line]
