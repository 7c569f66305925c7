"""Writes that survive a power cut: the one path both the desk and the console take.

A file the desk relies on later is written under a temporary name in its own folder, flushed
with fsync, renamed into place, and the folder is fsynced, so that after a power cut the name
holds either the old content or the whole new content, never an empty or partial file. A
folder whose entries an acknowledged operation changes is fsynced before the acknowledgement.
gpg never fsyncs its keyring, so after a keyring change `sync_tree` flushes the home.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from crypto.names import TEMP_PREFIX


def sync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to stable storage."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(root: Path) -> None:
    """fsync every regular file and folder under `root`, `root` and its parent included (what
    a program that never fsyncs, such as gpg, left in the page cache). Sockets, symbolic links
    and files that vanish meanwhile are skipped."""
    for directory, _folders, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    sync_path(path)
        sync_path(Path(directory))
    sync_path(root.parent)


@contextlib.contextmanager
def durable_output(path: Path, mode: int = 0o600, replace: bool = True) -> Iterator[IO[bytes]]:
    """Yield a binary handle to write `path` through; when the block ends without an error,
    the data is fsynced and takes the name durably. With `replace` False, an existing `path`
    is left alone and FileExistsError raised. On an error nothing is left behind."""
    temp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{path.name}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # whatever the umask
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.rename(temp, path)
        else:
            os.link(temp, path)  # FileExistsError if something took the name meanwhile
        sync_path(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def write_durably(path: Path, data: bytes | Iterable[bytes], mode: int = 0o600,
                  replace: bool = True) -> None:
    """Write `data` to `path` whole or not at all, durably (see `durable_output`)."""
    chunks = [data] if isinstance(data, bytes) else data
    with durable_output(path, mode, replace) as handle:
        for chunk in chunks:
            handle.write(chunk)


def write_durably_in(folder_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Replace the file `name` in the folder open as `folder_fd` with `data`, whole or not at
    all and durably, never through a symbolic link: for a folder another user can change
    while this runs (the temporary file is created there exclusively and renamed over `name`,
    which replaces a link planted there rather than writing where it points)."""
    temp = f"{TEMP_PREFIX}{secrets.token_hex(4)}-{name}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, mode, dir_fd=folder_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        os.fsync(folder_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=folder_fd)


def make_dir_durably(path: Path, mode: int = 0o700) -> None:
    """mkdir `path` and fsync its parent, so the new folder survives a power cut."""
    path.mkdir(mode=mode)
    sync_path(path.parent)


def remove_durably(path: Path) -> None:
    """Unlink a file (if present) and fsync its folder."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sync_path(path.parent)
