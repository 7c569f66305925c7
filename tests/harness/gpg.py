"""Stock gpg, driven from the command line, standing in for a journalist's offline machine.

Nothing here uses the desk's own crypto code: tests prove the desk's output with the real tool.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def gpg(home: Path, *args: str, stdin: bytes | None = None, check: bool = True,
        faked_time: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run stock gpg in `home` in batch mode."""
    command = ["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback",
               "--passphrase", ""]
    if faked_time:
        command += ["--faked-system-time", faked_time]
    return subprocess.run([*command, *args], input=stdin, capture_output=True, check=check,
                          timeout=120)


@dataclass(frozen=True)
class Keypair:
    """A journalist keypair in its own GnuPG home (the offline machine)."""

    home: Path
    fingerprint: str
    public_key: Path

    def decrypt(self, path: Path) -> bytes:
        """Decrypt one stored file with stock gpg and this secret key only."""
        return gpg(self.home, "--decrypt", str(path)).stdout


def make_keypair(home: Path, name: str, algorithm: str = "ed25519", usage: str = "sign",
                 subkey: str | None = "cv25519", expire: str = "never",
                 faked_time: str | None = None) -> Keypair:
    """Generate a keypair with stock gpg and export its public key next to the home."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg(home, "--quick-gen-key", f"{name} <{name.lower()}@desk.invalid>", algorithm, usage,
        expire, faked_time=faked_time)
    fingerprint = fingerprint_of(home)
    if subkey:
        gpg(home, "--quick-add-key", fingerprint, subkey, "encr", expire, faked_time=faked_time)
    public_key = home.parent / f"{home.name}.asc"
    public_key.write_bytes(gpg(home, "--armor", "--export", fingerprint).stdout)
    return Keypair(home, fingerprint, public_key)


def fingerprint_of(home: Path) -> str:
    """The first primary key fingerprint in `home`."""
    listing = gpg(home, "--with-colons", "--list-keys").stdout.decode()
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def revoke(keypair: Keypair) -> bytes:
    """Revoke the key in its own home and return the revocation certificate."""
    cert_file = keypair.home / "openpgp-revocs.d" / f"{keypair.fingerprint}.rev"
    # gpg stores the certificate with a ':' in front of the armor line to stop accidents.
    cert = cert_file.read_bytes().replace(b":-----BEGIN", b"-----BEGIN")
    gpg(keypair.home, "--import", stdin=cert)
    keypair.public_key.write_bytes(
        gpg(keypair.home, "--armor", "--export", keypair.fingerprint).stdout)
    return cert
