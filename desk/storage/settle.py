"""Settling: making the data directory's file times say no more than the day.

The kernel stamps every file and folder with the instants it was born, changed and written,
and a seized disk shows them. A settle (deploy/STORAGE.md, "Settling") runs every
DESK_SETTLE_INTERVAL in a running desk, and by hand as `desk settle`:

1. Every file and folder born since the previous settle is **re-born**: copied to a new inode
   that takes its place in one atomic exchange of names, so that its birth time becomes this
   settle's. The database's own files (which SQLite holds open) and the fixed folders made by
   `desk init` are not re-born; files being written (staging, `.tmp-` names) wait for the next
   settle.
2. The **pool** is filled: empty files and folders the store takes for its next writes, so
   that gpg's output lands in an inode born at a settle and needs no copy.
3. The **cover write**: the `.settled` mark (the instant step 1 ended) is written anew, so the
   newest times move at every settle whether or not anything arrived.
4. gpg's `random_seed` is removed, then every file and folder's atime and mtime are set to the
   start of the current UTC day, deepest first (which also sets each ctime to now), and the
   file system is synced.

In a desk, a settle first settles the database (desk/ops/settling.py, passed in as `first`:
this layer cannot reach the records), so that its writes are restamped too.

Two settles never run at once: each holds an exclusive flock on the data directory. A crash
at any point loses nothing: a copy becomes the file only by the exchange, and what a crash
leaves is a `.tmp-` file or folder beside an intact original, which `desk doctor --repair`
removes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from crypto.durable import sync_path, write_durably
from crypto.names import (
    DATABASE_NAME,
    GNUPG_DIR,
    GPG_DOTLOCK_PREFIX,
    GPG_LOCK_SUFFIX,
    LOCK_NAME,
    OBJECT_ID_RE,
    OBJECTS_DIR,
    POOL_DIR,
    POOL_FILE_PREFIX,
    POOL_FOLDER_PREFIX,
    REPLIES_DIR,
    SETTLED_NAME,
    STORE_DIR,
    TEMP_PREFIX,
    UPLOADS_DIR,
)
from desk.storage import fstime

DAY_NS = 86_400 * 1_000_000_000
# What each settle leaves in the pool: a form post takes one folder and two files, a PATCH
# one file, a reply one folder and two files. More than that between settles falls back to
# new inodes, which the next settle re-births by copying.
POOL_FILES = 32
POOL_FOLDERS = 8
# The file gpg rewrites after every run unless told not to (crypto/gpg.py no longer lets it).
RANDOM_SEED_NAME = "random_seed"

# The descriptor of the lock a settle holds, closed in any child forked meanwhile (a gunicorn
# worker) so that only this process keeps the lock.
_held: list[int] = []


def _close_in_child() -> None:
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


@dataclass
class SettleReport:
    """What one settle did."""

    started_ns: int
    finished_ns: int
    reborn: int
    restamped: int
    pooled: int
    skipped: list[str]


class SettleBusy(Exception):
    """Another settle holds the lock."""


@contextlib.contextmanager
def settle_lock(data_dir: Path, wait: bool = True) -> Iterator[None]:
    """Hold the data directory's settle lock; SettleBusy if `wait` is false and it is taken."""
    fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as exc:
            raise SettleBusy() from exc
        _held.append(fd)
        try:
            yield
        finally:
            _held.remove(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def day_start(ns: int) -> int:
    """The start of the UTC day holding the instant `ns` (nanoseconds since the epoch)."""
    return ns - ns % DAY_NS


def settle(data_dir: Path, wait: bool = True,
           first: Callable[[], None] | None = None) -> SettleReport:
    """Run one settle of the desk in `data_dir` (module docstring); SettleBusy if `wait` is
    false and another settle is running.

    `first`, if given, runs under the settle lock before anything else: the desk's database
    step (desk/ops/settling.py), which this layer cannot reach. It runs first so that the
    times its writes leave on the database's files are restamped like every other.
    """
    if not (data_dir / STORE_DIR).is_dir():
        raise FileNotFoundError(errno.ENOENT, "no desk here (run `desk init`)", str(data_dir))
    with settle_lock(data_dir, wait):
        if first is not None:
            first()
        return _settle(data_dir)


def read_mark(data_dir: Path) -> int | None:
    """The instant the last settle finished re-birthing, or None before the first."""
    try:
        return int((data_dir / SETTLED_NAME).read_text("ascii").strip())
    except (FileNotFoundError, ValueError):
        return None


def _settle(data_dir: Path) -> SettleReport:
    started = time.time_ns()
    mark = read_mark(data_dir)
    rebirth = _Rebirth(data_dir, mark)
    if fstime.times(data_dir).birth is not None:  # no birth times kept: nothing to hide
        rebirth.run()
    pooled = _fill_pool(data_dir / STORE_DIR / POOL_DIR)
    write_durably(data_dir / SETTLED_NAME, [str(time.time_ns()).encode("ascii")])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(data_dir / GNUPG_DIR / RANDOM_SEED_NAME)
    restamped = _restamp(data_dir, day_start(time.time_ns()))
    fstime.sync_filesystem(data_dir)
    return SettleReport(started, time.time_ns(), rebirth.count, restamped, pooled,
                        rebirth.skipped)


class _Rebirth:
    """Step 1: give everything born since `mark` (None: ever) a new inode."""

    def __init__(self, data_dir: Path, mark: int | None) -> None:
        self.data_dir = data_dir
        self.mark = mark
        self.count = 0
        self.skipped: list[str] = []

    def run(self) -> None:
        for path in _entries(self.data_dir):
            name = path.name
            if name.startswith(DATABASE_NAME) or name == SETTLED_NAME:
                continue  # SQLite holds its files open; the mark is rewritten anyway
            if _is_file(path):
                self.file(path)
        self.gnupg(self.data_dir / GNUPG_DIR)
        store = self.data_dir / STORE_DIR
        for path in _entries(store):
            if _is_file(path):
                self.file(path)
        for folder in (OBJECTS_DIR, REPLIES_DIR):
            for path in _entries(store / folder):
                if OBJECT_ID_RE.match(path.name) and path.is_dir():
                    self.item(path)
        for path in _entries(store / UPLOADS_DIR):
            if OBJECT_ID_RE.match(path.name) and path.is_dir():
                self.upload(path)
        # staging/ holds writes under way, pool/ only inodes born at a settle.

    def new(self, path: Path) -> bool:
        """Born since the mark (and the file system says when)."""
        try:
            birth = fstime.times(path).birth
        except FileNotFoundError:
            return False
        return birth is not None and (self.mark is None or birth > self.mark)

    def file(self, path: Path) -> None:
        if path.name.startswith(TEMP_PREFIX) or not self.new(path):
            return
        if _rebirth_file(path):
            self.count += 1
        else:
            self.skipped.append(str(path))

    def gnupg(self, home: Path) -> None:
        for directory, _, files in os.walk(home):
            for name in files:
                # gpg's own locks stay: replacing one would break the lock gpg holds.
                if name == RANDOM_SEED_NAME or name.endswith(GPG_LOCK_SUFFIX) \
                        or name.startswith(GPG_DOTLOCK_PREFIX):
                    continue
                path = Path(directory) / name
                if _is_file(path):
                    self.file(path)

    def item(self, folder: Path) -> None:
        for path in _entries(folder):
            if _is_file(path):
                self.file(path)
        if self.new(folder):
            self.folder(folder, fresh=())

    def upload(self, folder: Path) -> None:
        """An upload's folder, holding its lock so that no PATCH writes meanwhile."""
        lock = folder / LOCK_NAME
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            return  # removed meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.skipped.append(str(folder))  # a PATCH is writing; the next settle
                return
            if os.fstat(fd).st_ino != _inode(lock):
                return  # replaced or removed meanwhile; the next settle
            for path in _entries(folder):
                if path.name != LOCK_NAME and _is_file(path):
                    self.file(path)
            if self.new(folder):
                # A new, empty lock file in the new folder: requests re-check which file the
                # name holds after locking (desk/intake/tus.py), so they wait for this one.
                self.folder(folder, fresh=(LOCK_NAME,))
            elif self.new(lock) and _replace_with_empty(lock):
                self.count += 1
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def folder(self, folder: Path, fresh: tuple[str, ...]) -> None:
        if _rebirth_folder(folder, fresh):
            self.count += 1
        else:
            self.skipped.append(str(folder))


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _inode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_ino
    except FileNotFoundError:
        return None


def _temp(path: Path) -> Path:
    """The `.tmp-` name beside `path`, cleared of what an earlier crash left there."""
    temp = path.with_name(TEMP_PREFIX + path.name)
    if temp.is_dir() and not temp.is_symlink():
        shutil.rmtree(temp)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return temp


def _swap_in(temp: Path, path: Path) -> bool:
    """Make `temp` take `path`'s name atomically, leaving the old one at `temp`; False if
    `path` is gone."""
    try:
        fstime.exchange(temp, path)
    except FileNotFoundError:
        return False
    return True


def _rebirth_file(path: Path) -> bool:
    """Copy `path` to a new inode and swap it in, unless it changed or went meanwhile."""
    if not fstime.can_exchange():
        return False
    try:
        source = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    temp = _temp(path)
    try:
        before = os.fstat(source)
        target = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         stat.S_IMODE(before.st_mode))
        try:
            _copy(source, target, before.st_size)
            os.fsync(target)  # the copy's data is on disk before its name can be the file's
        finally:
            os.close(target)
        # Directory entries are not fsynced one by one: the exchange is journaled after the
        # entry it swaps, and the settle ends with a syncfs.
        if not _swap_in(temp, path):
            os.unlink(temp)
            return False
        old = os.lstat(temp)
        if (old.st_ino, old.st_size, old.st_mtime_ns) != \
                (before.st_ino, before.st_size, before.st_mtime_ns):
            # Changed while it was copied (gpg rewrote its keyring): put it back.
            fstime.exchange(temp, path)
            os.unlink(temp)
            return False
        os.unlink(temp)
        return True
    finally:
        os.close(source)


def _copy(source: int, target: int, size: int) -> None:
    offset = 0
    while offset < size:
        copied = os.copy_file_range(source, target, size - offset, offset, offset)
        if copied == 0:
            break
        offset += copied


def _replace_with_empty(path: Path) -> bool:
    """Swap a new empty file in for the empty file `path` (an upload's lock)."""
    if not fstime.can_exchange():
        return False
    temp = _temp(path)
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    swapped = _swap_in(temp, path)
    os.unlink(temp)
    return swapped


def _rebirth_folder(folder: Path, fresh: tuple[str, ...]) -> bool:
    """A new folder holding hard links to all of `folder`'s files (new empty files for the
    names in `fresh`), swapped in for it; the old one is then removed.

    Only for folders of files (an item, a reply, an upload). A file removed from the old
    folder between the links and the swap is removed from the new one too, and one added
    meanwhile is moved over, so a deletion under way is never undone.
    """
    if not fstime.can_exchange():
        return False
    temp = _temp(folder)
    try:
        mode = stat.S_IMODE(os.lstat(folder).st_mode)
    except FileNotFoundError:
        return False
    os.mkdir(temp, mode)
    linked = []
    for path in _entries(folder):
        if path.name in fresh:
            os.close(os.open(temp / path.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        elif _is_file(path):
            try:
                os.link(path, temp / path.name, follow_symlinks=False)
            except FileNotFoundError:
                continue
            linked.append(path.name)
        else:
            shutil.rmtree(temp)  # not a folder of files: leave it as it is
            return False
    sync_path(temp)  # every link is in place before the folder can take the name
    if not _swap_in(temp, folder):
        shutil.rmtree(temp)
        return False
    # `temp` is now the old folder.
    kept = {path.name for path in _entries(temp)}
    for name in linked:
        if name not in kept:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / name)
    for name in kept - set(linked) - set(fresh):
        with contextlib.suppress(FileNotFoundError, FileExistsError):
            os.rename(temp / name, folder / name)
    shutil.rmtree(temp, ignore_errors=True)
    return True


def _fill_pool(pool: Path) -> int:
    """Step 2: make the pool hold POOL_FILES empty files and POOL_FOLDERS empty folders."""
    pool.mkdir(mode=0o700, exist_ok=True)
    names = os.listdir(pool)
    files = sum(name.startswith(POOL_FILE_PREFIX) for name in names)
    folders = sum(name.startswith(POOL_FOLDER_PREFIX) for name in names)
    made = 0
    for _ in range(POOL_FILES - files):
        fd = os.open(pool / f"{POOL_FILE_PREFIX}{secrets.token_hex(16)}",
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        made += 1
    for _ in range(POOL_FOLDERS - folders):
        os.mkdir(pool / f"{POOL_FOLDER_PREFIX}{secrets.token_hex(16)}", 0o700)
        made += 1
    return made


def _restamp(data_dir: Path, day: int) -> int:
    """Step 4: atime and mtime of everything to `day`, deepest first, the data directory
    last."""
    count = 0
    for directory, _, files in os.walk(data_dir, topdown=False):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.utime(os.path.join(directory, name), ns=(day, day), follow_symlinks=False)
                count += 1
        with contextlib.suppress(FileNotFoundError):
            os.utime(directory, ns=(day, day), follow_symlinks=False)
            count += 1
    return count
