"""What the kernel can tell of a file's times, and the two Linux calls Python 3.11 lacks.

`statx(2)` gives a file's birth time, which `os.stat` does not; `renameat2(2)` with
RENAME_EXCHANGE swaps two names atomically; `syncfs(2)` flushes one file system. All three are
called through ctypes, so the desk needs no compiled module; where libc lacks one (not Linux,
or an old libc), the caller is told and does without.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
STATX_BASIC_STATS = 0x7FF
STATX_BTIME = 0x800
RENAME_EXCHANGE = 2


class _Timestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32),
                ("reserved", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    _fields_ = [
        ("stx_mask", ctypes.c_uint32), ("stx_blksize", ctypes.c_uint32),
        ("stx_attributes", ctypes.c_uint64), ("stx_nlink", ctypes.c_uint32),
        ("stx_uid", ctypes.c_uint32), ("stx_gid", ctypes.c_uint32),
        ("stx_mode", ctypes.c_uint16), ("spare0", ctypes.c_uint16),
        ("stx_ino", ctypes.c_uint64), ("stx_size", ctypes.c_uint64),
        ("stx_blocks", ctypes.c_uint64), ("stx_attributes_mask", ctypes.c_uint64),
        ("stx_atime", _Timestamp), ("stx_btime", _Timestamp), ("stx_ctime", _Timestamp),
        ("stx_mtime", _Timestamp),
        ("stx_rdev_major", ctypes.c_uint32), ("stx_rdev_minor", ctypes.c_uint32),
        ("stx_dev_major", ctypes.c_uint32), ("stx_dev_minor", ctypes.c_uint32),
        ("spare2", ctypes.c_uint64 * 14),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _function(name: str) -> Any:
    try:
        return getattr(_libc, name)
    except AttributeError:
        return None


_statx = _function("statx")
_renameat2 = _function("renameat2")
_syncfs = _function("syncfs")


@dataclass(frozen=True)
class Times:
    """A file's four times in nanoseconds since the epoch; `birth` None where the file
    system (or the kernel) keeps none."""

    atime: int
    mtime: int
    ctime: int
    birth: int | None
    inode: int


def _ns(stamp: _Timestamp) -> int:
    return int(stamp.tv_sec) * 1_000_000_000 + int(stamp.tv_nsec)


def times(path: Path) -> Times:
    """The times of `path` (not following a symbolic link); OSError if it is gone."""
    if _statx is None:
        st = os.lstat(path)
        return Times(st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, None, st.st_ino)
    buffer = _Statx()
    if _statx(AT_FDCWD, os.fsencode(path), AT_SYMLINK_NOFOLLOW,
              STATX_BASIC_STATS | STATX_BTIME, ctypes.byref(buffer)) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), str(path))
    birth = _ns(buffer.stx_btime) if buffer.stx_mask & STATX_BTIME else None
    return Times(_ns(buffer.stx_atime), _ns(buffer.stx_mtime), _ns(buffer.stx_ctime),
                 birth or None, int(buffer.stx_ino))


def exchange(first: Path, second: Path) -> None:
    """Swap the names `first` and `second` atomically; both must exist (ENOENT otherwise)."""
    if _renameat2 is None:
        raise OSError(38, "renameat2 is not available")  # ENOSYS
    if _renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second),
                  RENAME_EXCHANGE) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), str(first), None, str(second))


def can_exchange() -> bool:
    """Whether `exchange` is available here."""
    return _renameat2 is not None


def sync_filesystem(path: Path) -> None:
    """Flush everything the file system holding `path` has not yet written (syncfs), or every
    file system where syncfs is missing."""
    if _syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if _syncfs(fd) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number), str(path))
    finally:
        os.close(fd)
