"""An fsync audit: run a command, or a whole server, under strace and name every change to the
files it was told to watch that a power cut could still undo when the command exits, or when
the server answers the request that made it.

How a run is traced. The command is started by a small launcher that waits until strace
(`strace -f -qq -y -p PID`) has attached to it, then execs the command; everything it and its
children do from then on is in the trace. The test waits for the command itself (so a gpg-agent
it left running does not keep the run open), then strace is interrupted, which detaches it
from whatever still runs. `-y` makes strace print each file descriptor's path, read from /proc
at the call, so the audit keeps no fd table of its own: dup, fork, threads and descriptors
passed around are all resolved by the kernel. Only calls that succeeded count.

What it models. A tree of the names under the watched paths, read from the disk before the run
(outside the watched paths the tree holds only what the trace names, as existing), replayed
call by call: open with O_CREAT of a name that does not exist, creat, mkdir, mknod, symlink,
link, rename (RENAME_EXCHANGE too), unlink and rmdir change a directory's entries; write,
pwrite, writev, pwritev, truncate, ftruncate, fallocate, copy_file_range, sendfile and splice
into a file, and open with O_TRUNC for writing of a file that existed, change a file's data. A
file just created is empty: it owes its directory an fsync (for the entry, and the inode it
names), and nothing of its own until something is written to it, so an empty lock or marker
file needs no fsync of its own. Files and directories are nodes, not paths, so a file written
under a temporary name and renamed counts under its final name, and a directory renamed into
place keeps what was owed on it.

What makes a change durable. fsync or fdatasync of a descriptor of that very file or directory
after the change, syncfs of a descriptor on the same file system after it, or sync(). O_SYNC
and O_DSYNC writes, sync_file_range and msync are not credited (the desk uses none of them; a
change they made would be reported, never passed over). Writes through mmap are not seen.

The rule. The trace is cut into windows: a window ends where the server starts writing a
response ("HTTP/1.x", not an interim 1xx) on a socket, and the last one where the audited
process exits (its exit_group) or the trace ends. At the end of each window:

- a file whose data changed in the window must have been fsynced after its last change in the
  window, unless it has no name left when the window ends (a temporary file deleted in time);
- a directory entry that changed in the window (a name created, removed, replaced or renamed
  to or from) must have been followed by an fsync of that directory, unless the name holds at
  the end of the window the very file it held at the start (none at both ends: a temporary
  name), or the directory itself is gone by then (its removal is then the parent's entry
  change). A rename changes two entries, so both directories are owed an fsync, as POSIX
  requires, however a journaling file system happens to order them.

So a temporary file written, fsynced and renamed over its final name, followed by an fsync of
the directory, is clean, and a lock or scratch file created and removed within the window owes
nothing; a new directory owes an fsync of its parent, and, if files are created in it, one of
itself. Only changes whose path (at the end of the window) is one of the watched paths or below
one are reported.

Not reported: SQLite's files (`*.db` and its `-wal`, `-shm` and `-journal`), since SQLite
fsyncs them, and the directory when it creates them, itself (the desk and the console set
synchronous=FULL) (its fsyncs of a directory still count for the other entries in it); gpg's sockets
(S.gpg-agent and the like) and gpg-agent's own private-keys-v1.d folder (the desk's homes hold
public keys only; the agent remakes it). What a path outside the watched ones does (/proc,
/dev, caches, the test's own files) is modelled only as far as it moves into a watched path.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.harness.desks import desk_env
from tests.harness.paths import DESK_COMMAND
from tests.harness.servers import Server, StartFailed, free_port, listening, wait_for

STRACE = shutil.which("strace") or "strace"

# Everything the model needs, and nothing else (each traced call slows the command down).
SYSCALLS = (
    "open", "openat", "openat2", "creat", "mknod", "mknodat", "mkdir", "mkdirat", "symlink",
    "symlinkat", "link", "linkat", "rename", "renameat", "renameat2", "unlink", "unlinkat",
    "rmdir", "write", "pwrite64", "writev", "pwritev", "pwritev2", "truncate", "ftruncate",
    "fallocate", "copy_file_range", "sendfile", "splice", "recvfrom", "sendto", "sendmsg", "fsync",
    "fdatasync", "syncfs", "sync", "chdir", "fchdir", "clone", "clone3", "fork", "vfork",
    "exit_group",
)


def strace_command(trace: Path, pid: int) -> list[str]:
    """strace attaching to `pid` and its future children, writing the trace to `trace`: fd
    paths (-y), 128 bytes of each buffer (enough for a request line or a status line), no
    signals."""
    return [STRACE, "-f", "-qq", "-y", "-s", "128", "-e", "signal=none",
            "-e", "trace=" + ",".join(SYSCALLS), "-o", str(trace), "-p", str(pid)]


# --- Reading a trace -------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One system call, its unfinished and resumed halves put back together."""

    entry: int  # line of the trace where it started
    exit: int  # line where it returned
    pid: int
    name: str
    args: tuple[str, ...]
    ret: str  # "0", "3</path>", "-1 ENOENT (No such file or directory)", "?"

    @property
    def ok(self) -> bool:
        """It returned without an error."""
        return RET_RE.match(self.ret) is not None and not self.ret.startswith("-")

    @property
    def value(self) -> int:
        """Its return value (-1 when it failed or returned nothing)."""
        match = RET_RE.match(self.ret)
        return int(match[1]) if match else -1


LINE_RE = re.compile(r"(\d+) +(.*)", re.S)
RESUMED_RE = re.compile(r"<\.\.\. (\w+) resumed>(.*)", re.S)
UNFINISHED = "<unfinished ...>"
CALL_RE = re.compile(r"(\w+)\((.*)\)\s+=\s+(.*)", re.S)
RET_RE = re.compile(r"(-?\d+)(?:<(.*)>(\(deleted\))?)?(?=\s|$)", re.S)
FD_RE = re.compile(r"(AT_FDCWD|-?\d+)<(.*)>(\(deleted\))?", re.S)
ESCAPES = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "\\": 92, '"': 34,
           "'": 39}


def parse_trace(text: str) -> list[Call]:
    """The calls of a trace written by strace -f, in the order they returned."""
    calls: list[Call] = []
    pending: dict[int, tuple[int, str]] = {}
    for number, line in enumerate(text.splitlines()):
        match = LINE_RE.fullmatch(line)
        if match is None:
            continue
        pid, body = int(match[1]), match[2]
        entry = number
        if body.startswith("<... "):
            resumed = RESUMED_RE.fullmatch(body)
            if resumed is None or pid not in pending:
                continue
            entry, head = pending.pop(pid)
            body = head + resumed[2]
        elif body.endswith(UNFINISHED):
            pending[pid] = (number, body[:-len(UNFINISHED)].rstrip())
            continue
        call = CALL_RE.fullmatch(body)
        if call is not None:
            calls.append(Call(entry, number, pid, call[1], tuple(split_args(call[2])),
                              call[3].strip()))
    return calls


def split_args(text: str) -> list[str]:
    """A call's arguments, split at the commas outside strings, brackets and -y paths."""
    args: list[str] = []
    current: list[str] = []
    depth = i = 0
    while i < len(text):
        char = text[i]
        if char == '"':
            end = i + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            current.append(text[i:end + 1])
            i = end + 1
            continue
        if char == "<" and (close := text.find(">", i)) != -1:  # strace escapes '>' in paths
            current.append(text[i:close + 1])
            i = close + 1
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(char)
        i += 1
    if current or args:
        args.append("".join(current).strip())
    return args


def unescape(text: str) -> str:
    """A string as strace escapes it (C escapes, octal for other bytes), decoded as a path."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out += char.encode()
            i += 1
            continue
        following = text[i + 1]
        if following in ESCAPES:
            out.append(ESCAPES[following])
            i += 2
        elif following == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        elif following in "01234567":
            end = i + 1
            while end < len(text) and end < i + 4 and text[end] in "01234567":
                end += 1
            out.append(int(text[i + 1:end], 8))
            i = end
        else:
            out += following.encode()
            i += 2
    return os.fsdecode(bytes(out))


def string_arg(token: str) -> str | None:
    """The text of a quoted argument ("..." possibly followed by ...), or None."""
    if not token.startswith('"'):
        return None
    end = 1
    while end < len(token) and token[end] != '"':
        end += 2 if token[end] == "\\" else 1
    return unescape(token[1:end])


def first_string(tokens: Sequence[str]) -> str | None:
    """The first quoted string anywhere in `tokens` (a buffer, or the first of an iovec)."""
    for token in tokens:
        start = token.find('"')
        if start != -1:
            return string_arg(token[start:])
    return None


@dataclass(frozen=True)
class Fd:
    """A descriptor argument as -y prints it."""

    shown: str  # what -y printed: a path, "socket:[inode]", "pipe:[inode]", ...
    path: str | None  # absolute path of a file or directory; None for sockets, pipes, ...
    deleted: bool
    socket: bool


def fd_arg(token: str) -> Fd | None:
    """A descriptor argument (`3</path>`, `AT_FDCWD</cwd>`, `5<socket:[123]>`), or None."""
    match = FD_RE.fullmatch(token)
    if match is None:
        return None
    shown = unescape(match[2])
    if shown.startswith("/"):
        return Fd(shown, shown, match[3] is not None, False)
    return Fd(shown, None, False, shown.startswith(("socket:", "TCP", "UDP", "UNIX")))


def flag_set(token: str) -> set[str]:
    """The names in a flags argument (`O_WRONLY|O_CREAT`), or in a struct's `flags=` field."""
    match = re.search(r"flags=([A-Z0-9_|]+)", token)
    return set((match[1] if match else token).split("|"))


REQUEST_RE = re.compile(r"(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) /\S*")
ANSWER_RE = re.compile(r"HTTP/1\.[01] [2-5]\d\d")


@dataclass(frozen=True)
class Window:
    """What one stretch of the trace left undone: up to a response (the request it answers,
    and its status line), or up to the exit (both None)."""

    request: str | None
    answer: str | None
    findings: list[str]
    changed: list[str]  # every watched path changed in it, owed or not (so none is vacuous)


# --- The model -------------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    """A file or directory (an inode): its names, and what it still owes the disk."""

    names: set[tuple[Node, str]] = field(default_factory=set)
    children: dict[str, Node] = field(default_factory=dict)
    dirty: str | None = None  # the last data change not yet fsynced: written or truncated
    pending: dict[str, str] = field(default_factory=dict)  # entries changed since its fsync
    synced: bool = False  # fsynced at least once in the trace


def is_sqlite(name: str) -> bool:
    """SQLite's own files: a database and its rollback journal, WAL and shared memory."""
    return re.search(r"\.db(-wal|-shm|-journal)?\Z", name) is not None


GPG_OWN = re.compile(r"S\.(gpg-agent(\.\w+)?|dirmngr|keyboxd|scdaemon|uiserver)\Z"
                     r"|private-keys-v1\.d\Z")


def ignored_by_default(path: str) -> bool:
    """SQLite's files, gpg's sockets and the agent's private-keys-v1.d (see the module's
    docstring)."""
    parts = path.split("/")
    return is_sqlite(parts[-1]) or any(GPG_OWN.match(part) for part in parts)


class Audit:
    """The watched paths' tree as it was before the run, replayed against a trace."""

    def __init__(self, watch: Sequence[Path], *, base: Path | None = None,
                 ignore: Callable[[str], bool] = ignored_by_default) -> None:
        """Read the tree under `watch` now. Findings name paths relative to `base` if given."""
        self.roots = [os.path.realpath(path) for path in watch]
        self.base = os.path.realpath(base) if base is not None else None
        self.ignore = ignore
        self.root = Node()
        self.windows: list[Window] = []
        self.problems: list[str] = []  # what the audit itself could not follow
        self.requests: dict[str, str] = {}  # socket -> the request line last read from it
        self.window_start: dict[tuple[Node, str], Node | None] = {}
        self.owing: set[Node] = set()
        self.touched: set[tuple[Node, str | None]] = set()  # (file, None) or (folder, entry)
        self.unlinked: dict[str, Node] = {}
        self.cwd: dict[int, str] = {}
        for root in self.roots:
            self._read_disk(root)

    def _read_disk(self, root: str) -> None:
        """Every name at and under `root` as it is now (and that `root` is absent, if so)."""
        if not os.path.lexists(root):
            self.node(os.path.dirname(root))
            return
        self.node(root)
        for folder, dirs, files in os.walk(root):
            parent = self.node(folder)
            for name in [*dirs, *files]:
                self._attach(parent, name, Node())

    # Names and nodes

    def _attach(self, parent: Node, name: str, node: Node) -> Node:
        parent.children[name] = node
        node.names.add((parent, name))
        return node

    def node(self, path: str) -> Node:
        """The node at `path`, made up (as existing) where the tree does not know it."""
        node = self.root
        for part in path.strip("/").split("/"):
            if part:
                child = node.children.get(part)
                node = child if child is not None else self._attach(node, part, Node())
        return node

    def paths(self, node: Node) -> list[str]:
        """Every path of `node` now, sorted (none once it is deleted)."""
        if node is self.root:
            return ["/"]
        found = [os.path.join(base, name) for parent, name in node.names
                 for base in self.paths(parent)]
        return sorted(found)

    def watched(self, path: str) -> bool:
        """At or under a watched path, and not ignored."""
        return any(path == root or path.startswith(root.rstrip("/") + "/")
                   for root in self.roots) and not self.ignore(path)

    def show(self, path: str) -> str:
        """A path as findings name it."""
        return os.path.relpath(path, self.base) if self.base else path

    # Changes

    def set_entry(self, parent: Node, name: str, new: Node | None, what: str) -> None:
        """Point `name` in `parent` at `new` (None: remove it)."""
        old = parent.children.get(name)
        self.window_start.setdefault((parent, name), old)
        if old is not None:
            old.names.discard((parent, name))
            for path in self.paths(parent):
                self.unlinked[os.path.join(path, name)] = old
            del parent.children[name]
        if new is not None:
            self._attach(parent, name, new)
        parent.pending[name] = what
        self.owing.add(parent)
        self.touched.add((parent, name))

    def change_data(self, node: Node, what: str) -> None:
        """`node`'s data changed."""
        node.dirty = what
        self.owing.add(node)
        self.touched.add((node, None))

    def sync(self, node: Node) -> None:
        """fsync or fdatasync of `node`."""
        node.dirty = None
        node.pending.clear()
        node.synced = True

    def syncfs(self, device: int | None) -> None:
        """syncfs of a file system (None: sync(), every one)."""
        for node in list(self.owing):
            paths = self.paths(node)
            if paths and (device is None or device_of(paths[0]) == device):
                self.sync(node)

    # The end of a window

    @property
    def findings(self) -> list[str]:
        """Everything every window left undone, and anything the audit could not follow."""
        return self.problems + [line for window in self.windows for line in window.findings]

    def close_window(self, request: str | None, answer: str | None) -> None:
        """Note what the window left undone; `answer` is the status line of the response
        that ends it and `request` the request line it answers (None: the process exited)."""
        after = f" before the answer to {request or 'a request'} ({answer})" if answer else ""
        found = []
        for node in self.owing:
            paths = [p for p in self.paths(node) if self.watched(p)]
            if node.dirty and paths:
                state = "but never fsynced" if not node.synced else "after its last fsync"
                found.append(f"{self.show(paths[0])}: {node.dirty} {state}{after}")
            folders = self.paths(node)
            for name, what in sorted(node.pending.items()):
                if not folders or self.window_start.get((node, name)) is node.children.get(name):
                    continue
                entry = os.path.join(folders[0], name)
                if not self.watched(entry):
                    continue
                state = ("but the directory was never fsynced" if not node.synced
                         else "after the directory's last fsync")
                found.append(f"{self.show(folders[0])}: entry {name} {what} {state}{after}")
        changed = {os.path.join(path, name) if name is not None else path
                   for node, name in self.touched for path in self.paths(node)[:1]}
        self.windows.append(Window(request, answer, sorted(found),
                                   sorted(self.show(p) for p in changed if self.watched(p))))
        for node in self.owing:
            node.dirty = None
            node.pending.clear()
        self.owing.clear()
        self.touched.clear()
        self.window_start.clear()

    # Replaying a trace

    def replay(self, calls: Sequence[Call], top_pid: int, cwd: Path) -> list[str]:
        """Replay `calls` (the process `top_pid`, started in `cwd`, and its children) and
        return the findings."""
        self.cwd[top_pid] = os.path.realpath(cwd)
        # A response counts from the moment it starts; every other call once it returned.
        ordered = sorted(calls, key=lambda c: c.entry if self._answer(c) else c.exit)
        for call in ordered:
            if call.name == "exit_group" and call.pid == top_pid:
                break
            answer = self._answer(call)
            if answer is not None:
                self.close_window(self.requests.get(answer[0]), answer[1])
            elif call.ok:
                try:
                    self._apply(call)
                except (IndexError, ValueError) as exc:
                    self.problems.append(f"audit: cannot read {call.name}{call.args} = "
                                         f"{call.ret} of process {call.pid}: {exc!r}")
        self.close_window(None, None)
        return self.findings

    def _answer(self, call: Call) -> tuple[str, str] | None:
        """(socket, status line) if `call` starts writing an HTTP response (not a 1xx) to a
        socket."""
        if call.name not in ("write", "writev", "sendto", "sendmsg") or not call.args:
            return None
        fd = fd_arg(call.args[0])
        data = first_string(call.args[1:2]) if fd is not None and fd.socket else None
        if fd is None or data is None or ANSWER_RE.match(data) is None:
            return None
        return fd.shown, data.split("\r\n", 1)[0]

    def _path(self, call: Call, dirfd: str | None, token: str) -> str | None:
        """An absolute path from a path argument, relative to `dirfd` or the working
        directory."""
        name = string_arg(token)
        if name is None:
            return None
        if name.startswith("/"):
            return os.path.normpath(name)
        if dirfd is not None:
            fd = fd_arg(dirfd)
            base = fd.path if fd is not None else None
        else:
            base = self.cwd.get(call.pid)
        if base is None:
            self.problems.append(f"audit: cannot resolve {name!r} in {call.name} of process "
                                 f"{call.pid}: its working directory is unknown")
            return None
        return os.path.normpath(os.path.join(base, name))

    def _fd_node(self, token: str) -> Node | None:
        """The node behind a descriptor argument (None for sockets, pipes and the like)."""
        fd = fd_arg(token)
        if fd is None or fd.path is None:
            return None
        if fd.deleted:
            return self.unlinked.get(fd.path)
        return self.node(fd.path)

    def _split(self, path: str) -> tuple[Node, str]:
        return self.node(os.path.dirname(path)), os.path.basename(path)

    def _create(self, path: str) -> Node | None:
        """A new node at `path` (None if the name exists)."""
        parent, name = self._split(path)
        if name in parent.children:
            return None
        node = Node()
        self.set_entry(parent, name, node, "created")
        return node

    def _apply(self, call: Call) -> None:
        name, args = call.name, call.args
        for token in args:  # every AT_FDCWD</path> says where the process is
            fd = fd_arg(token)
            if token.startswith("AT_FDCWD") and fd is not None and fd.path is not None:
                self.cwd[call.pid] = fd.path
        if name in ("clone", "clone3", "fork", "vfork") and call.pid in self.cwd:
            self.cwd[call.value] = self.cwd[call.pid]
        elif name == "chdir":
            path = self._path(call, None, args[0])
            if path is not None:
                self.cwd[call.pid] = path
        elif name == "fchdir":
            fd = fd_arg(args[0])
            if fd is not None and fd.path is not None:
                self.cwd[call.pid] = fd.path
        elif name in ("open", "openat", "openat2", "creat"):
            self._open(call)
        elif name in ("mkdir", "mkdirat"):
            path = self._path(call, args[0] if name == "mkdirat" else None,
                              args[1] if name == "mkdirat" else args[0])
            if path is not None:
                self._create(path)
        elif name in ("mknod", "symlink"):
            path = self._path(call, None, args[0 if name == "mknod" else 1])
            if path is not None:
                self._create(path)
        elif name in ("mknodat", "symlinkat"):
            at = 0 if name == "mknodat" else 1  # symlinkat(target, dirfd, path)
            path = self._path(call, args[at], args[at + 1])
            if path is not None:
                self._create(path)
        elif name in ("unlink", "unlinkat", "rmdir"):
            path = self._path(call, args[0] if name == "unlinkat" else None,
                              args[1] if name == "unlinkat" else args[0])
            if path is not None:
                parent, entry = self._split(path)
                self.node(path)
                self.set_entry(parent, entry, None, "removed")
        elif name in ("rename", "renameat", "renameat2"):
            self._rename(call)
        elif name in ("link", "linkat"):
            self._link(call)
        elif name in ("write", "pwrite64", "writev", "pwritev", "pwritev2", "ftruncate",
                      "fallocate", "sendfile"):
            node = self._fd_node(args[0])
            if node is not None and (call.value > 0 or name in ("ftruncate", "fallocate")):
                self.change_data(node, "written" if name != "ftruncate" else "truncated")
        elif name in ("copy_file_range", "splice"):
            node = self._fd_node(args[2])
            if node is not None and call.value > 0:
                self.change_data(node, "written")
        elif name == "truncate":
            path = self._path(call, None, args[0])
            if path is not None:
                self.change_data(self.node(path), "truncated")
        elif name in ("fsync", "fdatasync"):
            node = self._fd_node(args[0])
            if node is not None:
                self.sync(node)
        elif name == "syncfs":
            fd = fd_arg(args[0])
            if fd is not None and fd.path is not None:
                self.syncfs(device_of(fd.path))
        elif name == "sync":
            self.syncfs(None)
        elif name == "recvfrom":
            fd = fd_arg(args[0])
            data = first_string(args[1:2])
            request = REQUEST_RE.match(data) if data is not None else None
            if fd is not None and request is not None:
                self.requests[fd.shown] = request[0]

    def _open(self, call: Call) -> None:
        result = RET_RE.match(call.ret)
        if result is None or result[2] is None:
            return
        path = unescape(result[2])
        if not path.startswith("/"):
            return
        if call.name == "creat":
            flags = {"O_CREAT", "O_WRONLY", "O_TRUNC"}
        else:
            flags = flag_set(call.args[1 if call.name == "open" else 2])
        if "O_TMPFILE" in flags:
            if self.watched(path):
                self.problems.append(f"audit: {self.show(path)}: O_TMPFILE is not modelled")
            return
        # A file just made is empty: it owes its directory an fsync, and nothing of its own
        # until something is written to it.
        created = "O_CREAT" in flags and self._create(path) is not None
        if not created and "O_TRUNC" in flags and flags & {"O_WRONLY", "O_RDWR"}:
            self.change_data(self.node(path), "truncated")

    def _rename(self, call: Call) -> None:
        args = call.args
        if call.name == "rename":
            old, new = self._path(call, None, args[0]), self._path(call, None, args[1])
            flags: set[str] = set()
        else:
            old, new = self._path(call, args[0], args[1]), self._path(call, args[2], args[3])
            flags = flag_set(args[4]) if call.name == "renameat2" else set()
        if old is None or new is None:
            return
        node = self.node(old)
        old_parent, old_name = self._split(old)
        new_parent, new_name = self._split(new)
        if "RENAME_EXCHANGE" in flags:
            other = self.node(new)
            self.set_entry(old_parent, old_name, other, "exchanged")
            self.set_entry(new_parent, new_name, node, "exchanged")
            return
        if new_parent.children.get(new_name) is node:
            return  # two names of one file: rename does nothing
        replaced = new_name in new_parent.children
        self.set_entry(old_parent, old_name, None, "renamed away")
        self.set_entry(new_parent, new_name, node, "replaced" if replaced else "renamed in")

    def _link(self, call: Call) -> None:
        args = call.args
        if call.name == "link":
            old, new = self._path(call, None, args[0]), self._path(call, None, args[1])
            node = self.node(old) if old is not None else None
        else:
            new = self._path(call, args[2], args[3])
            if "AT_EMPTY_PATH" in flag_set(args[4]):
                node = self._fd_node(args[0])
            else:
                old = self._path(call, args[0], args[1])
                node = self.node(old) if old is not None else None
        if node is not None and new is not None:
            parent, name = self._split(new)
            self.set_entry(parent, name, node, "created")


def device_of(path: str) -> int:
    """The file system of `path`, or of its nearest ancestor that still exists."""
    while True:
        with contextlib.suppress(OSError):
            return os.lstat(path).st_dev
        path = os.path.dirname(path)


def audit_trace(text: str, audit: Audit, top_pid: int, cwd: Path) -> list[str]:
    """Findings for a trace of `top_pid` (started in `cwd`), against `audit`'s tree."""
    return audit.replay(parse_trace(text), top_pid, cwd)


# --- Running under strace --------------------------------------------------------------------

# Run as `python -c LAUNCHER COMMAND...`: wait until a tracer is attached, then exec COMMAND,
# so that strace sees everything COMMAND does while the test keeps COMMAND as its own child.
# strace is not its parent, so it first lets any process trace it (PR_SET_PTRACER_ANY), which
# Yama's ptrace_scope 1 requires (the call fails harmlessly where Yama is absent).
LAUNCHER = """\
import ctypes, os, sys, time
ctypes.CDLL(None).prctl(0x59616D61, ctypes.c_ulong(-1), 0, 0, 0)
deadline = time.monotonic() + 60
while True:
    with open("/proc/self/status") as status:
        if any(line.split() != ["TracerPid:", "0"] for line in status
               if line.startswith("TracerPid:")):
            break
    if time.monotonic() > deadline:
        sys.exit("fsync audit: strace never attached")
    time.sleep(0.005)
time.sleep(0.05)
os.execvp(sys.argv[1], sys.argv[1:])
"""


@dataclass
class Traced:
    """A process started under strace."""

    process: subprocess.Popen[bytes]
    strace: subprocess.Popen[bytes]
    trace: Path
    cwd: Path

    def finish(self, audit: Audit) -> list[str]:
        """Once the process has exited: stop strace (detaching from anything the process left
        running) and audit the trace."""
        assert self.process.poll() is not None, "the traced process is still running"
        if self.strace.poll() is None:
            self.strace.send_signal(signal.SIGINT)
        try:
            self.strace.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.strace.kill()
            self.strace.wait(timeout=30)
        return audit_trace(self.trace.read_text(errors="replace"), audit, self.process.pid,
                           self.cwd)


def start_traced(argv: Sequence[str], *, trace: Path, cwd: Path, env: dict[str, str] | None,
                 stdout: int | IO[bytes], stderr: int | IO[bytes]) -> Traced:
    """Start `argv` under strace, everything it does traced from its exec on."""
    process = subprocess.Popen([sys.executable, "-c", LAUNCHER, *argv], cwd=cwd, env=env,
                               stdout=stdout, stderr=stderr)
    strace = subprocess.Popen(strace_command(trace, process.pid), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def attached() -> bool:
        status = Path(f"/proc/{process.pid}/status").read_text()
        return re.search(r"^TracerPid:\s*[1-9]", status, re.M) is not None

    try:
        if not wait_for(lambda: strace.poll() is not None or process.poll() is not None
                        or attached(), 30):
            raise RuntimeError("strace did not attach within 30 seconds")
        if process.poll() is not None:
            raise RuntimeError(f"the command exited before strace attached "
                               f"({process.returncode})")
        if strace.poll() is not None:
            assert strace.stderr is not None
            raise RuntimeError(f"strace could not attach (ptrace refused?): "
                               f"{strace.stderr.read().decode(errors='replace')}")
    except BaseException:
        process.kill()
        process.wait(timeout=30)
        if strace.poll() is None:
            strace.kill()
            strace.wait(timeout=30)
        raise
    return Traced(process, strace, trace, cwd)


@dataclass(frozen=True)
class Audited:
    """A command run under the audit: its result and what it left undone."""

    result: subprocess.CompletedProcess[str]
    findings: list[str]
    changed: list[str]  # every watched path it changed, owed or not


def audit_command(argv: Sequence[str], *, watch: Sequence[Path], trace: Path, cwd: Path,
                  env: dict[str, str] | None = None, base: Path | None = None,
                  timeout: float = 300,
                  ignore: Callable[[str], bool] = ignored_by_default) -> Audited:
    """Run `argv` under strace and audit every change under `watch` against its exit."""
    audit = Audit(watch, base=base, ignore=ignore)
    traced = start_traced(argv, trace=trace, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    try:
        out, err = traced.process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        traced.process.kill()
        traced.process.wait(timeout=30)
        traced.strace.kill()
        traced.strace.wait(timeout=30)
        raise
    findings = traced.finish(audit)
    result = subprocess.CompletedProcess(list(argv), traced.process.returncode,
                                         out.decode(errors="replace"),
                                         err.decode(errors="replace"))
    return Audited(result, findings, [p for w in audit.windows for p in w.changed])


@dataclass
class ServerAudit:
    """A `desk serve` under strace; its audit is complete once the block that started it has
    ended."""

    server: Server
    audit: Audit

    @property
    def windows(self) -> list[Window]:
        """What each request (and the shutdown) left undone, in order."""
        return self.audit.windows

    @property
    def findings(self) -> list[str]:
        """Everything left undone."""
        return self.audit.findings


@contextlib.contextmanager
def audited_server(data_dir: Path, interface: str = "source", *, watch: Sequence[Path],
                   root: Path, env: dict[str, str] | None = None, base: Path | None = None,
                   timeout: float = 120,
                   ignore: Callable[[str], bool] = ignored_by_default) -> Iterator[ServerAudit]:
    """`desk serve <interface>` under strace, its log, trace and TMPDIR in `root`; on leaving
    the block it is stopped (SIGTERM) and every change under `watch` is audited against the
    response that followed it. Send one request at a time, so that each change is owed to the
    answer of the request that made it."""
    port = free_port()
    tmpdir = root / "server-tmp"
    tmpdir.mkdir(exist_ok=True)
    log = root / "server.log"
    audit = Audit(watch, base=base, ignore=ignore)
    with log.open("ab") as log_file:
        traced = start_traced(
            [DESK_COMMAND, "serve", interface, "--port", str(port)], trace=root / "server.trace",
            cwd=root, env=desk_env(data_dir, TMPDIR=str(tmpdir), **(env or {})),
            stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(interface, port, traced.process, log, tmpdir)
    audited = ServerAudit(server, audit)
    try:
        deadline = time.monotonic() + timeout
        while not listening(port):
            if traced.process.poll() is not None:
                raise StartFailed(f"desk serve did not start:\n{server.log_tail()}",
                                  traced.process.returncode)
            if time.monotonic() > deadline:
                raise StartFailed(f"desk serve did not start in time:\n{server.log_tail()}",
                                  None)
            time.sleep(0.1)
        yield audited
    finally:
        server.stop(timeout=60)
        traced.finish(audit)
