"""The desk's two onion services: the torrc that runs them and the journalists' client key.

Everything tor keeps lives under one directory, the *tor directory*, which must belong to the
user tor runs as (mode 0700; tor refuses anything looser):

    TOR_DIR/                              tor's DataDirectory
    TOR_DIR/source/                       the source interface's onion service; tor writes its
                                          address to `hostname` here when it first starts
    TOR_DIR/journalist/                   the journalist interface's onion service
    TOR_DIR/journalist/authorized_clients/journalist.auth
                                          `descriptor:x25519:<public key>`: without the matching
                                          private key nobody can even fetch this service's
                                          descriptor, so its login page is out of reach
    TOR_DIR/journalist.client_key         `descriptor:x25519:<private key>`: only the run that
                                          makes the key prints it, and this file keeps it until
                                          every journalist has it; then delete it

`deploy/README.md` describes how the desk's install script uses this.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from crypto.durable import write_durably, write_durably_in
from desk.errors import DeskError

ONION_PORT = 80
AUTH_TYPE = "descriptor:x25519:"
# Used with fullmatch ("$" would admit a final newline).
# Base32 of a 32-byte key without its "====" padding, as tor writes and reads it.
_KEY_RE = re.compile(r"[A-Z2-7]{52}")
_ONION_RE = re.compile(r"([a-z2-7]{56})\.onion")
# Written as they are; anything else in a path is quoted (tor reads C-style quoted values).
_PLAIN_VALUE_RE = re.compile(r"[A-Za-z0-9_./+,:=@~-]+")
# Key and hostname files are one short line; more is not read.
_MAX_FILE_BYTES = 4096


class TorSetupError(DeskError):
    """The tor configuration could not be written; the message says what to fix."""


@dataclass(frozen=True)
class OnionLayout:
    """Where tor keeps the desk's onion services, and the local ports they lead to: the
    source service to the front (desk/ops/front.py), the journalist one to its interface."""

    tor_dir: Path
    front_port: int
    journalist_port: int
    # The journalist interface's Unix socket, if it listens on one (deploy: only tor's group
    # may open it); None for 127.0.0.1:journalist_port.
    journalist_socket: Path | None = None

    @property
    def source_dir(self) -> Path:
        """The source interface's HiddenServiceDir."""
        return self.tor_dir / "source"

    @property
    def journalist_dir(self) -> Path:
        """The journalist interface's HiddenServiceDir."""
        return self.tor_dir / "journalist"

    @property
    def authorized_client_file(self) -> Path:
        """The journalists' public client-authorization key, read by tor."""
        return self.journalist_dir / "authorized_clients" / "journalist.auth"

    @property
    def client_key_file(self) -> Path:
        """The journalists' private client-authorization key, kept until they all have it."""
        return self.tor_dir / "journalist.client_key"


class ClientKey:
    """The journalists' x25519 client-authorization key. Its repr shows the public half only."""

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> ClientKey:
        """A new random key."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_base32(cls, text: str) -> ClientKey:
        """The key whose private half is `text` (base32, no padding)."""
        return cls(X25519PrivateKey.from_private_bytes(_decode_key(text)))

    @property
    def public_base32(self) -> str:
        """The public half in base32, no padding."""
        raw = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return _encode_key(raw)

    @property
    def private_base32(self) -> str:
        """The private half in base32, no padding: what Tor Browser's prompt asks for."""
        raw = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return _encode_key(raw)

    def client_line(self, onion_address: str) -> str:
        """The line a Tor client's ClientOnionAuthDir (or Tor Browser) takes for the service."""
        match = _ONION_RE.fullmatch(onion_address)
        if match is None:
            raise TorSetupError(f"{onion_address!r} is not a v3 onion address")
        return f"{match.group(1)}:{AUTH_TYPE}{self.private_base32}"

    def __repr__(self) -> str:
        return f"ClientKey(public={self.public_base32})"


@dataclass(frozen=True)
class TorSetup:
    """What `write_tor_config` did and what is known so far."""

    layout: OnionLayout
    data_dir: Path
    torrc: Path
    source_address: str | None
    journalist_address: str | None
    # None when the key exists but its private half was deleted from this server.
    client_key: ClientKey | None
    # Whether this run made the key: only then is its private half printed.
    client_key_created: bool

    @property
    def client_line(self) -> str | None:
        """The journalists' Tor Browser key line, once both the key and address are known."""
        if self.client_key is None or self.journalist_address is None:
            return None
        return self.client_key.client_line(self.journalist_address)

    def rerun_command(self) -> str:
        """The command that writes the same configuration again."""
        socket = self.layout.journalist_socket
        journalist = ["--journalist-port", str(self.layout.journalist_port)] if socket is None \
            else ["--journalist-socket", str(socket)]
        return f"DESK_DATA={shlex.quote(str(self.data_dir))} " + shlex.join([
            "desk", "tor-config", "--out", str(self.torrc), "--tor-dir", str(self.layout.tor_dir),
            "--front-port", str(self.layout.front_port), *journalist])


def render_torrc(layout: OnionLayout, data_dir: Path) -> str:
    """The complete torrc for the desk whose data directory is `data_dir`."""
    tor_dir = _torrc_value(layout.tor_dir)
    source_dir = _torrc_value(layout.source_dir)
    journalist_dir = _torrc_value(layout.journalist_dir)
    if layout.journalist_socket is None:
        journalist_target = f"127.0.0.1:{layout.journalist_port}"
        journalist_note = ""
    else:
        journalist_target = f"unix:{_torrc_value(layout.journalist_socket)}"
        journalist_note = """
# It listens on a Unix socket only tor's group may open, not on a TCP port every local user
# could reach: client authorization would mean nothing on the host itself."""
    return f"""\
# tor for the desk in {_comment(data_dir)}, written by `desk tor-config`.
# Run that command again rather than editing this file: it keeps every key.

DataDirectory {tor_dir}
# This tor runs the two onion services and nothing else. With no SOCKS port and no control
# port or socket, no local process can use it to reach the network or reconfigure it.
SocksPort 0
ControlPort 0
ControlSocket 0
# Notices only, with addresses scrubbed.
SafeLogging 1
Log notice stdout

# The source interface: open to anyone who has its address. Its streams go to the desk's front
# (HAProxy, `desk front-config`), each opened with a PROXY protocol line that names its circuit,
# so that the front can give every circuit a fair share of the desk.
HiddenServiceDir {source_dir}
HiddenServicePort {ONION_PORT} 127.0.0.1:{layout.front_port}
HiddenServiceExportCircuitID haproxy
# Under a flood of introductions, serve first the clients that solved a harder puzzle (Tor
# Browser does this by itself). Intro-point rate limiting (HiddenServiceEnableIntroDoSDefense)
# stays off: it drops sources and attackers alike, undoing what the puzzle buys.
HiddenServicePoWDefensesEnabled 1
# A Tor Browser keeps at most a handful of connections to a site; a circuit asking for more
# is an attack on the server's threads, so it is closed.
HiddenServiceMaxStreams 20
HiddenServiceMaxStreamsCloseCircuit 1

# The journalist interface: its descriptor is encrypted to the keys in authorized_clients/,
# so without the journalists' client key it cannot even be reached.{journalist_note}
HiddenServiceDir {journalist_dir}
HiddenServicePort {ONION_PORT} {journalist_target}
HiddenServicePoWDefensesEnabled 1
"""


def write_tor_config(layout: OnionLayout, data_dir: Path, out: Path,
                     new_client_key: bool = False) -> TorSetup:
    """Write the torrc to `out` and make sure the journalists' client key exists (a new one in
    place of any other if `new_client_key`).

    Safe to run again: it keeps the client key (and tor keeps the onion services' keys), and
    once tor has started it also reports the onion addresses.
    """
    # Checked before anything changes. The write itself would replace a link, not follow it;
    # but a link here is someone's mistake or someone else's doing, and should be seen.
    if out.is_symlink():
        raise TorSetupError(f"{out} is a symbolic link: tor-config writes no torrc through a "
                            "link; give --out the path of the file itself")
    key, created = ensure_client_key(layout, new=new_client_key)
    _write_file(out, render_torrc(layout, data_dir), mode=0o644)  # tor rereads it on reload
    return TorSetup(
        layout=layout, data_dir=data_dir, torrc=out,
        source_address=onion_address(layout, layout.source_dir),
        journalist_address=onion_address(layout, layout.journalist_dir),
        client_key=key, client_key_created=created)


def ensure_client_key(layout: OnionLayout, new: bool = False) -> tuple[ClientKey | None, bool]:
    """The journalists' client key and whether it is new; None if only its public half is left.

    An existing key is kept unless `new` asks for another: replacing it locks out every
    journalist who does not get the new one.
    """
    with contextlib.ExitStack() as stack:
        tor = stack.enter_context(_TorFolder.open_root(layout, create=True))
        journalist = stack.enter_context(tor.folder(layout.journalist_dir, create=True))
        clients = stack.enter_context(
            journalist.folder(layout.authorized_client_file.parent, create=True))
        # Read even when they are to be replaced: a link in their place is refused, named.
        public_text = clients.read(layout.authorized_client_file)
        private_text = tor.read(layout.client_key_file)
        if new:
            return _new_client_key(layout, tor, clients), True
        public = _key_in(public_text, layout.authorized_client_file)
        private = _key_in(private_text, layout.client_key_file)
        if private is not None:
            key = ClientKey.from_base32(private)
            if public is None:
                clients.write(layout.authorized_client_file, AUTH_TYPE + key.public_base32 + "\n")
            elif public != key.public_base32:
                raise TorSetupError(
                    f"{layout.client_key_file} does not belong to "
                    f"{layout.authorized_client_file}: remove the one that is wrong and run this "
                    "again, or make a new key with --new-client-key")
            return key, False
        if public is not None:
            return None, False
        return _new_client_key(layout, tor, clients), True


def _new_client_key(layout: OnionLayout, tor: _TorFolder, clients: _TorFolder) -> ClientKey:
    """A new client key, written over both halves of any other."""
    key = ClientKey.generate()
    # Private half first: if we stop between the two, the next run rebuilds the public half
    # of a new key, or (in place of another) says the two halves do not match.
    tor.write(layout.client_key_file, AUTH_TYPE + key.private_base32 + "\n")
    clients.write(layout.authorized_client_file, AUTH_TYPE + key.public_base32 + "\n")
    return key


def onion_address(layout: OnionLayout, service_dir: Path) -> str | None:
    """The onion address tor wrote for one of the layout's services, or None before tor has
    first started."""
    with contextlib.ExitStack() as stack:
        tor = stack.enter_context(_TorFolder.open_root(layout, create=False))
        service = stack.enter_context(tor.folder(service_dir, create=False))
        text = service.read(service_dir / "hostname")
    if text is None:
        return None
    text = text.strip()
    return text if _ONION_RE.fullmatch(text) else None


class _TorFolder:
    """A folder in the tor directory, opened without following a symbolic link; what is in it
    is reached only through its descriptor.

    Everything in the tor directory belongs to the user tor runs as, and `deploy/install.sh`
    runs `desk tor-config` as root: a tor user that was broken into could replace any name in
    there with a symbolic link, so that root would chmod, create or write wherever it points
    (`chmod 0700 /`, a key file in /etc). So no name below the tor directory's parent is ever
    followed: each folder is opened with O_NOFOLLOW and the next name looked up relative to
    it, files are read with O_NOFOLLOW and replaced by a rename inside their folder, and a
    link anywhere is refused, named, with nothing changed through it.
    """

    def __init__(self, fd: int | None, path: Path) -> None:
        self.fd, self.path = fd, path

    @classmethod
    def open_root(cls, layout: OnionLayout, create: bool) -> _TorFolder:
        """The tor directory itself (made if `create`; an empty stand-in if it does not exist
        and not `create`). Its parent is the administrator's, reached by its path."""
        parent = layout.tor_dir.parent
        try:
            parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise TorSetupError(f"{parent} does not exist: create it first (for the default "
                                "tor directory, run `desk init`)") from exc
        except OSError as exc:
            raise TorSetupError(f"cannot open {parent}: {exc.strerror}") from exc
        with cls(parent_fd, parent) as outside:
            return outside.folder(layout.tor_dir, create)

    def folder(self, path: Path, create: bool) -> _TorFolder:
        """The folder `path` in this one, owner-only (made if `create`; an empty stand-in if
        it does not exist and not `create`)."""
        name = path.name
        if self.fd is None:
            return _TorFolder(None, path)
        try:
            if create:
                with contextlib.suppress(FileExistsError):  # mkdir never follows a link
                    os.mkdir(name, 0o700, dir_fd=self.fd)
                    os.fsync(self.fd)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=self.fd)
        except FileNotFoundError:
            return _TorFolder(None, path)
        except OSError as exc:
            raise self._refusal(path, exc) from exc
        folder = _TorFolder(fd, path)
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            if mode & 0o077:  # tor refuses an onion service directory others can read
                os.fchmod(fd, mode & ~0o077)
        except OSError as exc:
            folder.close()
            raise TorSetupError(f"cannot make {path} private: {exc.strerror}") from exc
        return folder

    def read(self, path: Path) -> str | None:
        """The text of the small file `path` in this folder, or None if there is none."""
        if self.fd is None:
            return None
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path.name, flags, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._refusal(path, exc) from exc
        with os.fdopen(fd, "rb") as handle:
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO would block, a device worse
                    raise TorSetupError(f"{path} is not a regular file: remove it and run this "
                                        "again")
                data = handle.read(_MAX_FILE_BYTES + 1)
            except OSError as exc:
                raise TorSetupError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            return ""  # not a key or an address: the callers say so

    def write(self, path: Path, text: str) -> None:
        """Replace the file `path` in this folder with `text` whole and durably (mode 0600)."""
        if self.fd is None:
            raise TorSetupError(f"cannot write {path}: its folder does not exist")
        try:
            write_durably_in(self.fd, path.name, text.encode("utf-8"))
        except OSError as exc:
            raise TorSetupError(f"cannot write {path}: {exc.strerror}") from exc

    def _refusal(self, path: Path, exc: OSError) -> TorSetupError:
        """Why `path` could not be opened, naming a symbolic link as one."""
        with contextlib.suppress(OSError):
            if self.fd is not None and stat.S_ISLNK(
                    os.stat(path.name, dir_fd=self.fd, follow_symlinks=False).st_mode):
                return TorSetupError(
                    f"{path} is a symbolic link: tor-config follows no link in tor's "
                    "directory; remove it (if you did not make it, something else wrote "
                    "there) and run this again")
        if exc.errno == errno.ENOTDIR:
            return TorSetupError(f"{path} is not a directory: remove it and run this again")
        return TorSetupError(f"cannot open {path}: {exc.strerror}")

    def close(self) -> None:
        """Close the folder's descriptor."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> _TorFolder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _key_in(text: str | None, path: Path) -> str | None:
    """The base32 key in a one-line `descriptor:x25519:KEY` file's text, None if no file."""
    if text is None:
        return None
    text = text.strip()
    key = text.removeprefix(AUTH_TYPE)
    if not text.startswith(AUTH_TYPE) or not _KEY_RE.fullmatch(key):
        raise TorSetupError(f"{path} is not a `{AUTH_TYPE}KEY` line: remove it and run this "
                            "again to make a new client key")
    return key


def _encode_key(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _decode_key(text: str) -> bytes:
    if not _KEY_RE.fullmatch(text):
        raise TorSetupError("a client key must be 52 base32 characters")
    try:
        return base64.b32decode(text + "====")
    except binascii.Error as exc:
        raise TorSetupError("a client key must be 52 base32 characters") from exc


def _torrc_value(path: Path) -> str:
    """`path` as a torrc value: as it is if plain, else as a quoted string."""
    text = str(path)
    if not path.is_absolute():
        raise TorSetupError(f"{text} is not an absolute path")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise TorSetupError(f"{text!r} has a control character: choose another directory")
    if _PLAIN_VALUE_RE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(path: Path) -> str:
    return "".join(char if char.isprintable() else "?" for char in str(path))


def _write_file(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace `path` with `text` whole and durably, with `mode` (crypto/durable.py)."""
    try:
        write_durably(path, text.encode("utf-8"), mode)
    except OSError as exc:
        raise TorSetupError(f"cannot write {path}: {exc.strerror}") from exc
