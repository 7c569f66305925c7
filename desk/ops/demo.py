"""`desk demo`: a desk on this machine with a demo journalist whose secret key sits beside it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from crypto.codename import generate_passphrase
from crypto.gpg import GnuPG
from crypto.names import DATABASE_NAME, METADATA_NAME, OBJECTS_DIR, PART_GLOB
from desk.config import Config, load_config
from desk.records.accounts import add_journalist
from desk.records.credentials import totp_secret_text, totp_uri
from desk.records.instance import init_desk
from desk.records.models import Journalist
from desk.services import open_services

DEMO_USER = "demo"


@dataclass(frozen=True)
class Demo:
    """Where the demo desk and its stand-in offline keyring live, and the demo login."""

    directory: Path
    config: Config
    journalist_home: Path
    fingerprint: str
    password: str
    totp_secret: bytes

    def instructions(self, source_port: int, journalist_port: int) -> str:
        """What to open, how to log in, and how to read what arrives."""
        objects = self.config.store_dir / OBJECTS_DIR
        return "\n".join([
            f"Demo desk in {self.directory}",
            f"  source interface:      http://127.0.0.1:{source_port}/",
            f"  journalist interface:  http://127.0.0.1:{journalist_port}/",
            f"  journalist login:      username {DEMO_USER}, password {self.password}",
            f"  TOTP secret:           {totp_secret_text(self.totp_secret)}",
            f"  authenticator URI:     {totp_uri(self.totp_secret, DEMO_USER)}",
            f"  current code, without an authenticator app: {Path(sys.argv[0]).absolute()} demo "
            f"--dir {self.directory} --code",
            f"  demo journalist key {self.fingerprint}",
            f"  its secret key (standing in for the offline machine): {self.journalist_home}",
            "Read an item with stock gpg:",
            f"  gpg --homedir {self.journalist_home} --decrypt {objects}/<id>/{METADATA_NAME}",
            f"  for p in {objects}/<id>/{PART_GLOB}; do "
            f'gpg --homedir {self.journalist_home} --decrypt "$p"; done > padded',
            '  head -c SIZE padded > original    # SIZE is "size" in the record: the rest is '
            "zero padding",
            "The demo key has no passphrase and the demo login is printed here: "
            "never use them for a real desk.",
        ])


def setup_demo(directory: Path, env: Mapping[str, str]) -> Demo:
    """Create (or reuse) the demo directory, its journalist keypair, account and desk."""
    config = dataclasses.replace(load_config(env), data_dir=directory / "data",
                                 database_url=f"sqlite:///{directory / 'data' / DATABASE_NAME}")
    home = directory / "journalist-gnupg"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    journalist_gpg = GnuPG(home)
    keys = journalist_gpg.list_keys()
    fingerprint = keys[0].fingerprint if keys \
        else journalist_gpg.generate_key("Demo Journalist", "demo@desk.invalid")
    public_key = journalist_gpg.export_public_key(fingerprint)
    (directory / "demo-journalist.asc").write_bytes(public_key)
    password_file = directory / "demo-password.txt"
    if not password_file.exists():
        password_file.write_text(generate_passphrase() + "\n")
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    init_desk(config)
    services = open_services(config)
    with services.sessions() as db:
        journalist = db.scalar(select(Journalist).where(Journalist.username == DEMO_USER))
        if journalist is None:
            journalist = add_journalist(db, services.gpg, DEMO_USER, public_key,
                                        is_admin=True, password=password)
            db.commit()
        secret = journalist.totp_secret or b""
    services.engine.dispose()
    return Demo(directory, config, home, fingerprint, password, secret)


def run_demo(demo: Demo, source_port: int, journalist_port: int) -> None:
    """Serve the journalist interface in a child process and the source one in this one."""
    from desk.app import create_app
    from desk.ops.serve import serve

    env = {**os.environ, "DESK_DATA": str(demo.config.data_dir),
           "DESK_DATABASE_URL": demo.config.database_url}
    journalist = subprocess.Popen(  # noqa: S603 - our own console script, fixed arguments
        [sys.executable, "-m", "desk", "serve", "journalist", "--port", str(journalist_port)],
        env=env)
    try:
        serve(lambda: create_app(demo.config, "source"), "127.0.0.1", source_port)
    finally:
        journalist.terminate()
        journalist.wait(timeout=30)
