"""The GnuPG boundary: the only module that imports ``gnupg``.

python-gnupg result objects never leave this module; callers get KeyInfo values or errors.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import gnupg  # type: ignore[import-untyped]

from crypto.durable import sync_tree
from crypto.errors import (
    CompressedMessage,
    DecryptionFailed,
    EncryptionFailed,
    GpgUnavailable,
    KeyRefused,
    PlaintextTooLarge,
    SigningFailed,
)
from crypto.keys import KeyInfo, KeyPart, parse_fingerprint

# Big reads keep the copy thread cheap; the upload path streams gigabytes through it.
BUFFER_SIZE = 1 << 20

# Options on every gpg call: never reach the network, never guess a key from a user id.
# Trust is not gpg's web of trust but the desk's pinning, so encryption alone passes
# --trust-model always; listing keys keeps gpg's default model, whose trustdb gpg needs to
# report expired and revoked keys instead of failing.
BASE_OPTIONS = ["--auto-key-locate", "local", "--no-auto-key-retrieve"]

# Video does not compress, and zlib costs gpg six times its uncompressed speed; prefer AES-256
# without overriding what a recipient's key says it supports.
ENCRYPT_OPTIONS = ["--compress-algo", "none", "--personal-cipher-preferences", "AES256 AES192 AES"]


class Readable(Protocol):
    """Anything gpg can be fed from: a file, a request body, a part of a form."""

    def read(self, n: int = -1, /) -> bytes:
        """Up to `n` bytes; b'' at the end."""
        ...


# Decryption lists the message's packets on stderr as gpg parses them (-vv): a compressed packet
# is named there before gpg expands a byte of it, and the console stops gpg at that line.
DECRYPT_OPTIONS = ["--verbose", "--verbose"]
COMPRESSED_PACKET = b":compressed packet:"
# Status keywords after which a decryption does not count, whatever gpg's exit status.
FAILED_STATUSES = frozenset({"DECRYPTION_FAILED", "BADMDC"})
# How much of gpg's stderr one decryption keeps: enough for every line a message the desk
# writes makes gpg print, and never more, whatever a hostile message makes it print (one line
# per recipient packet, say).
LOG_BYTES = 64 * 1024
LINE_BYTES = 4096


# gpg reads its input 8 KiB at a time from a 64 KiB pipe, so the thread feeding it and gpg
# itself take turns; a 1 MiB pipe (Linux's default ceiling for unprivileged processes) lets
# them run side by side. Measured: 0.42 -> 0.69 of raw `gpg --encrypt` (bench/RESULTS.md).
PIPE_BYTES = 1 << 20


class _GPG(gnupg.GPG):  # type: ignore[misc]
    """python-gnupg, with large pipes to and from every gpg process it starts."""

    def _open_subprocess(self, *args: Any, **kwargs: Any) -> Any:
        process = super()._open_subprocess(*args, **kwargs)
        # Both ways: encryption reads stdin, the review console's decryption reads stdout.
        for pipe in (process.stdin, process.stdout):
            with contextlib.suppress(OSError, AttributeError, ValueError):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        return process


# For the online desk's own home: gpg would otherwise rewrite `random_seed` there after every
# run, stamping the time of the last encryption on the disk. It weakens nothing: without the
# file gpg (libgcrypt) seeds itself from the kernel's CSPRNG (getrandom) at every start.
NO_SEED_FILE_OPTIONS = ["--no-random-seed-file"]


def _end_of_today() -> list[str]:
    """gpg options that make it take the last second of the current UTC day as the time:
    `pubring.kbx` records when each key was imported, to the second, which would date a
    journalist's addition. The end of the day, not its start, so that a key made earlier today
    is never "created in the future"."""
    end = (int(time.time()) // 86400 + 1) * 86400 - 1
    return ["--faked-system-time", f"{end}!"]


@dataclass(frozen=True)
class Signature:
    """A good detached signature: the signer's primary fingerprint and its creation time."""

    fingerprint: str
    made_at: datetime


class GnuPG:
    """A GnuPG home directory and the operations the desk performs on it; `seed_file` False
    keeps gpg from writing its random seed file there, and `locks` False keeps it from taking
    (or clearing) any lock there, for a look that must leave the home exactly as it was."""

    def __init__(self, home: Path, seed_file: bool = True, locks: bool = True) -> None:
        self.home = home
        # A home without a seed file (the online desk's, and the console's home of public
        # keys only) also keeps import times to the day.
        self._day_only = not seed_file
        options = BASE_OPTIONS + ([] if seed_file else NO_SEED_FILE_OPTIONS)
        # gpg removes a stale lock it meets while taking one (a trustdb check takes one even
        # to list keys); `desk doctor` must report such a lock, not have it vanish under it.
        # Without locks it must not write either: no trustdb check.
        options += [] if locks else ["--lock-never", "--no-auto-check-trustdb"]
        try:
            self._gpg = _GPG(gnupghome=str(home), options=options)
        except (OSError, ValueError) as exc:
            raise GpgUnavailable(f"cannot run gpg: {exc}") from exc
        self._gpg.buffer_size = BUFFER_SIZE

    def __repr__(self) -> str:
        return f"GnuPG(home={str(self.home)!r})"

    # Keys

    def scan(self, data: bytes) -> list[KeyInfo]:
        """List the keys in an exported key file without importing them."""
        return _key_infos(self._gpg.scan_keys_mem(data))

    def import_public_key(self, data: bytes, fingerprint: str) -> KeyInfo:
        """Import the public key `fingerprint` from `data` (already scanned and checked)."""
        extra = ["--import-options", "import-minimal"]
        if self._day_only:
            extra += _end_of_today()
        result = self._gpg.import_keys(data, extra_args=extra)
        sync_tree(self.home)  # gpg never fsyncs its keyring
        imported = self.key(fingerprint) if fingerprint in result.fingerprints else None
        if imported is None:
            raise KeyRefused(["gpg could not import the key"])
        return imported

    def list_keys(self) -> list[KeyInfo]:
        """Every public key in this home."""
        return _key_infos(self._gpg.list_keys())

    def key(self, fingerprint: str) -> KeyInfo | None:
        """The public key with this fingerprint, or None."""
        found = _key_infos(self._gpg.list_keys(keys=[parse_fingerprint(fingerprint)]))
        return found[0] if found else None

    def secret_fingerprints(self) -> list[str]:
        """Primary fingerprints of the secret keys in this home."""
        return [parse_fingerprint(entry["fingerprint"])
                for entry in self._gpg.list_keys(secret=True)]

    def delete_public_key(self, fingerprint: str) -> None:
        """Remove a public key from this home (no-op if it is not there)."""
        self._gpg.delete_keys(parse_fingerprint(fingerprint))
        sync_tree(self.home)

    def export_public_key(self, fingerprint: str) -> bytes:
        """The armored public key with this fingerprint."""
        armored: str = self._gpg.export_keys(parse_fingerprint(fingerprint))
        return armored.encode("ascii")

    def generate_key(self, name: str, email: str) -> str:
        """Make an Ed25519/Curve25519 keypair without a passphrase; return its fingerprint.

        Only for the demo and tests: a real journalist key is made on the offline machine.
        """
        spec = self._gpg.gen_key_input(
            key_type="EDDSA", key_curve="ed25519", key_usage="sign",
            subkey_type="ECDH", subkey_curve="cv25519", subkey_usage="encrypt",
            name_real=name, name_email=email, expire_date=0, no_protection=True,
        )
        result = self._gpg.gen_key(spec)
        if not result.fingerprint:
            raise GpgUnavailable(f"gpg could not generate a key: {result.stderr.strip()}")
        sync_tree(self.home)
        return parse_fingerprint(result.fingerprint)

    # Encryption

    def encrypt_stream(self, source: Readable, recipients: Sequence[str], output: Path) -> None:
        """Encrypt everything `source` yields to `recipients` into the binary file `output`:
        a new one, or (truncated, keeping its inode) the empty one there.

        Reading from a stream (not a named file) keeps the original filename and time out of the
        OpenPGP literal packet. On any failure `output` is removed and EncryptionFailed raised;
        an exception from `source` itself is re-raised after the cleanup.
        """
        if not recipients:
            raise EncryptionFailed("no recipient keys")
        try:
            result = self._gpg.encrypt_file(
                source, [parse_fingerprint(r) for r in recipients], armor=False,
                always_trust=True, output=str(output), extra_args=ENCRYPT_OPTIONS,
            )
        except BaseException:
            _remove(output)
            raise
        if not result.ok or result.returncode != 0:
            _remove(output)
            raise EncryptionFailed(_failure_reason(result))


    def encrypt_bytes(self, data: bytes, recipients: Sequence[str]) -> bytes:
        """Encrypt a small document (a manifest, a custody log) in memory."""
        if not recipients:
            raise EncryptionFailed("no recipient keys")
        result = self._gpg.encrypt(
            data, [parse_fingerprint(r) for r in recipients], armor=False, always_trust=True,
            extra_args=ENCRYPT_OPTIONS)
        if not result.ok or result.returncode != 0:
            raise EncryptionFailed(_failure_reason(result))
        ciphertext: bytes = result.data
        return ciphertext

    def decrypt_bytes(self, data: bytes, limit: int | None = None) -> bytes:
        """Decrypt a small document in memory with a secret key in this home; PlaintextTooLarge
        if its plaintext would be longer than `data` itself or than `limit`.

        Only a clean exit counts: gpg hands back the plaintext of a manipulated message before
        it reports the damage, so anything but success returns nothing.
        """
        chunks: list[bytes] = []
        self._decrypt(io.BytesIO(data), len(data), chunks.append, limit)
        return b"".join(chunks)

    def decrypt_stream(self, source: Path, sink: Callable[[bytes], None],
                       limit: int | None = None) -> None:
        """Decrypt the file `source`, handing the plaintext to `sink` a chunk at a time;
        PlaintextTooLarge once it would be longer than the file itself or than `limit`.

        The plaintext is not trustworthy until this returns: gpg writes out a manipulated
        message's data before it reports the damage, so on DecryptionFailed the caller must
        discard everything `sink` received.
        """
        with source.open("rb") as handle:
            self._decrypt(handle, os.fstat(handle.fileno()).st_size, sink, limit)

    def _decrypt(self, handle: Readable, ciphertext_size: int, sink: Callable[[bytes], None],
                 limit: int | None) -> None:
        # Nothing the desk or the console writes is compressed (FORMAT.md, "OpenPGP files"),
        # and an uncompressed message is always longer than its plaintext: plaintext beyond
        # the ciphertext's own length can only come from compression, whose ratio has no
        # bound (284 bytes of bzip2 expand to 64 MiB). A manifest, log or part from a bundle
        # someone tampered with must not fill memory or the disk: gpg stops writing at
        # --max-output, whatever it sends beyond the bound is dropped here unread, and a
        # compressed packet stops gpg as soon as gpg names it, before it expands anything.
        most = ciphertext_size if limit is None else min(limit, ciphertext_size)
        run = _Decryption(self._gpg._open_subprocess(
            ["--decrypt", "--max-output", str(most), *DECRYPT_OPTIONS]), sink, most)
        run.feed_from(handle)
        run.finish()
        if run.compressed:
            raise CompressedMessage("it is compressed, which the desk never does")
        if run.received > most or "--max-output" in run.log:
            raise PlaintextTooLarge(
                f"it expands beyond its own {most} bytes, so it is compressed, which the desk "
                "never does" if most == ciphertext_size else
                f"it holds more than the {most} bytes its record gives it")
        if run.failure is not None:
            raise run.failure
        if run.returncode != 0 or "DECRYPTION_OKAY" not in run.statuses or \
                run.statuses & FAILED_STATUSES:
            raise DecryptionFailed(_decryption_problem(run.log, run.statuses))

    # Signatures and recipients

    def sign_detached(self, data: bytes, signer: str | None = None) -> bytes:
        """A binary detached signature over `data` by `signer` (a fingerprint), or by gpg's
        default secret key. The console signs reply files with the journalist's key."""
        result = self._gpg.sign(data, keyid=parse_fingerprint(signer) if signer else None,
                                detach=True, binary=True)
        signature: bytes = result.data or b""
        if result.returncode != 0 or not signature:
            raise SigningFailed(_signing_problem(result))
        return signature

    def verify_detached(self, data: bytes, signature: bytes) -> Signature | None:
        """Who made `signature` over `data`, and when (the time the signer's clock gave, inside
        what it signed), if it is a good signature by a key in this home; None if it is not
        (bad, damaged, or by an unknown key)."""
        with tempfile.TemporaryDirectory(prefix="desk-sig-") as folder:
            # gpg reads a detached signature from a file; it holds no plaintext.
            path = Path(folder) / "signature"
            path.write_bytes(signature)
            result = self._gpg.verify_data(str(path), data)
        if not result.valid or result.returncode != 0 or not result.pubkey_fingerprint:
            return None
        made_at = _timestamp(result.sig_timestamp or "")
        if made_at is None:
            return None
        return Signature(parse_fingerprint(result.pubkey_fingerprint), made_at)

    def recipient_key_ids(self, message: bytes) -> set[str]:
        """The 16-hex key ids an OpenPGP message is encrypted to, read from its packets
        without decrypting anything."""
        return {key_id.upper() for key_id in self._gpg.get_recipients(message)}


class _Decryption:
    """One running `gpg --decrypt`: its input fed from a thread of its own, its plaintext handed
    to this call's sink and to nothing else, and at most LOG_BYTES of its stderr kept.

    Everything lives on this object, made for one call: the viewer decrypts on many threads at
    once, and python-gnupg's `on_data` is one attribute of the shared GPG object, read when
    each of its reader threads starts, so one file's plaintext could reach another's sink.
    """

    def __init__(self, process: Any, sink: Callable[[bytes], None], most: int) -> None:
        self.process = process
        self.sink, self.most = sink, most
        self.received = 0
        self.failure: Exception | None = None
        self.compressed = False
        self.statuses: set[str] = set()
        self.returncode: int | None = None
        self._log: list[str] = []
        self._log_bytes = 0
        self._threads = [threading.Thread(target=self._read_stderr, daemon=True)]
        self._threads[0].start()

    @property
    def log(self) -> str:
        """What gpg said on stderr (the first LOG_BYTES of it)."""
        return "".join(self._log)

    def feed_from(self, source: Readable) -> None:
        """Copy `source` into gpg's stdin from a thread, closing it at the end."""
        writer = threading.Thread(target=self._write, args=(source,), daemon=True)
        self._threads.append(writer)
        writer.start()

    def finish(self) -> None:
        """Hand the plaintext to the sink up to the bound, then wait for gpg and the threads."""
        stdout: IO[bytes] = self.process.stdout
        try:
            while chunk := stdout.read(BUFFER_SIZE):
                self.received += len(chunk)
                if self.received > self.most:
                    self.process.kill()  # past the bound: not one byte more is read
                    break
                if self.failure is None:
                    try:
                        self.sink(chunk)
                    except Exception as exc:
                        self.failure = exc  # raised by the caller once gpg has ended
                        self.process.kill()
        finally:
            stdout.close()
            self.returncode = self.process.wait()
            for thread in self._threads:
                thread.join()
            self.process.stderr.close()

    def _write(self, source: Readable) -> None:
        stdin: IO[bytes] = self.process.stdin
        try:
            while chunk := source.read(BUFFER_SIZE):
                stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            pass  # gpg stopped reading: it failed, or was stopped at a bound
        except Exception as exc:
            if self.failure is None:
                self.failure = exc
            self.process.kill()
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _read_stderr(self) -> None:
        stderr: IO[bytes] = self.process.stderr
        while line := stderr.readline(LINE_BYTES):
            if line.startswith(COMPRESSED_PACKET):
                # The format forbids compression: stop gpg before it expands anything.
                self.compressed = True
                self.process.kill()
            if line.startswith(b"[GNUPG:] ") and (words := line[9:].split(maxsplit=1)):
                self.statuses.add(words[0].decode("ascii", "replace"))
            if self._log_bytes < LOG_BYTES:
                text = line.decode("utf-8", "replace")
                self._log.append(text)
                self._log_bytes += len(text)


def _decryption_problem(stderr: str, statuses: set[str]) -> str:
    """Why gpg could not decrypt, in words a journalist can act on."""
    lowered = stderr.lower()
    if "NO_SECKEY" in statuses and "DECRYPTION_KEY" not in statuses:
        return "no secret key for it in this GnuPG home (or the smartcard is not inserted)"
    if "BAD_PASSPHRASE" in statuses:
        return "the passphrase for the secret key was wrong"
    if any(word in lowered for word in ("read error", "premature", "invalid packet")):
        return "the ciphertext is truncated or damaged"
    if statuses & FAILED_STATUSES or "manipulated" in lowered:
        return "the ciphertext has been modified (integrity check failed)"
    last = next((line[9:].split(maxsplit=1)[0].replace("_", " ").lower()
                 for line in reversed(stderr.splitlines())
                 if line.startswith("[GNUPG:] ") and line[9:].strip()), "no status")
    return f"gpg could not decrypt it ({last})"


def _signing_problem(result: Any) -> str:
    stderr = str(getattr(result, "stderr", "") or "")
    if "NO_SECKEY" in stderr or "secret key not available" in stderr or \
            "No secret key" in stderr:
        return "no secret key to sign with in this GnuPG home"
    if "BAD_PASSPHRASE" in stderr or "PINENTRY" in stderr:
        return "the passphrase for the secret key was not given or was wrong"
    return f"gpg could not sign ({getattr(result, 'status', None) or 'no status'})"


def _failure_reason(result: Any) -> str:
    """A journalist-readable reason from a failed gpg run, without any data."""
    status = str(getattr(result, "status", "") or "")
    if "invalid recipient" in status.lower():
        return "gpg refused a recipient key (expired, revoked or missing)"
    return f"gpg failed ({status or 'exit ' + str(result.returncode)})"


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _timestamp(value: str) -> datetime | None:
    if not value:
        return None
    if "T" in value:  # ISO 8601 basic form, used by some gpg versions
        return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value), UTC)


def _key_part(entry: dict[str, Any], fingerprint: str) -> KeyPart:
    return KeyPart(
        fingerprint=fingerprint,
        algorithm=int(entry.get("algo") or 0),
        bits=int(entry.get("length") or 0),
        curve=entry.get("curve", ""),
        validity=entry.get("trust", ""),
        capabilities=entry.get("cap", ""),
        created=_timestamp(entry.get("date", "")) or datetime.fromtimestamp(0, UTC),
        expires=_timestamp(entry.get("expires", "")),
    )


def _key_infos(listing: Any) -> list[KeyInfo]:
    keys = []
    for entry in listing:
        # python-gnupg leaves the subkey fingerprint out of subkey_info when scanning a file;
        # its `subkeys` rows (keyid, caps, fingerprint, keygrip) always carry it.
        fingerprints = {row[0]: row[2] for row in entry.get("subkeys", ())}
        subkeys = tuple(_key_part(sub, sub.get("fingerprint") or fingerprints.get(keyid, ""))
                        for keyid, sub in entry.get("subkey_info", {}).items())
        keys.append(KeyInfo(
            primary=_key_part(entry, entry["fingerprint"]),
            subkeys=subkeys,
            user_ids=tuple(entry.get("uids", ())),
            secret=entry.get("type") == "sec",
        ))
    return keys
