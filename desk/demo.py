"""`desk demo`: a desk on this machine with a demo journalist whose secret key sits beside it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from crypto.gpg import GnuPG
from desk.config import Config, load_config
from desk.instance import init_desk
from desk.journalists import add_journalist
from desk.models import Journalist
from desk.services import open_services

DEMO_USER = "demo"


@dataclass(frozen=True)
class Demo:
    """Where the demo desk and its stand-in offline keyring live."""

    directory: Path
    config: Config
    journalist_home: Path
    fingerprint: str

    def instructions(self, port: int) -> str:
        """What to open and how to read what arrives."""
        objects = self.config.store_dir / "objects"
        return "\n".join([
            f"Demo desk in {self.directory}",
            f"  source interface:  http://127.0.0.1:{port}/",
            f"  demo journalist key {self.fingerprint}",
            f"  its secret key (standing in for the offline machine): {self.journalist_home}",
            "Read a submission with stock gpg:",
            f"  gpg --homedir {self.journalist_home} --decrypt {objects}/<id>/meta.gpg",
            f"  for p in {objects}/<id>/part-*.gpg; do "
            f"gpg --homedir {self.journalist_home} --decrypt \"$p\"; done > original",
            "This demo key has no passphrase: never use it for a real desk.",
        ])


def setup_demo(directory: Path, env: Mapping[str, str]) -> Demo:
    """Create (or reuse) the demo directory, its journalist keypair and its desk."""
    config = dataclasses.replace(load_config(env), data_dir=directory / "data",
                                 database_url=f"sqlite:///{directory / 'data' / 'desk.db'}")
    home = directory / "journalist-gnupg"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    journalist_gpg = GnuPG(home)
    keys = journalist_gpg.list_keys()
    fingerprint = keys[0].fingerprint if keys \
        else journalist_gpg.generate_key("Demo Journalist", "demo@desk.invalid")
    public_key = journalist_gpg.export_public_key(fingerprint)
    (directory / "demo-journalist.asc").write_bytes(public_key)
    init_desk(config)
    services = open_services(config)
    with services.sessions() as session:
        if session.scalar(select(Journalist).where(Journalist.username == DEMO_USER)) is None:
            add_journalist(session, services.gpg, DEMO_USER, public_key, is_admin=True)
            session.commit()
    services.engine.dispose()
    return Demo(directory, config, home, fingerprint)
