"""The tus 1.0.0 protocol's vocabulary as the desk's tests speak it, and where a desk keeps what
an upload left: its folder, its row, the object it became."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from crypto.items import padme
from crypto.names import LOCK_NAME, TAIL_PREFIX, tail_name
from desk.intake import shape
from desk.intake.shape import part_size
from desk.records.models import Upload
from desk.services import Services
from tests.harness.data import sha256
from tests.harness.desks import StoredObject, read_objects
from tests.harness.gpg import Keypair

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


def b64(data: bytes | str) -> str:
    """Base64 as Upload-Metadata and Upload-Checksum carry it."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def metadata(filename: str | None = None, filetype: str | None = None) -> str:
    """An Upload-Metadata header value."""
    pairs = [("filename", filename), ("filetype", filetype)]
    return ",".join(f"{key} {b64(value)}" for key, value in pairs if value is not None)


def checksum(algorithm: str, data: bytes) -> str:
    """An Upload-Checksum header value."""
    return f"{algorithm} {b64(hashlib.new(algorithm, data).digest())}"


@contextlib.contextmanager
def parts_of(size: int) -> Iterator[None]:
    """In this process (the Flask test client, doctor examined in-process), cut parts of `size`
    bytes instead of 64 MiB, through the test hook `desk.intake.shape.simulated_part_size`;
    servers get it from small_parts_env."""
    before = shape.simulated_part_size
    shape.simulated_part_size = size
    try:
        yield
    finally:
        shape.simulated_part_size = before


def tail_at(offset: int) -> str:
    """The name of the tail piece a PATCH at `offset` leaves."""
    return tail_name(offset)


def upload_id(location: str) -> str:
    """The upload id at the end of a Location."""
    return location.rstrip("/").rsplit("/", 1)[-1]


def upload_folder(desk: Services, location: str) -> Path:
    """Where an upload's parts wait."""
    return desk.store.uploads / upload_id(location)


def upload_rows(desk: Services) -> list[Upload]:
    """Every unfinished upload's row."""
    with desk.sessions() as session:
        return list(session.scalars(select(Upload)))


def uploads_left(desk: Services) -> list[Path]:
    """Every upload folder in the store."""
    return sorted(desk.store.uploads.iterdir()) if desk.store.uploads.exists() else []


def only_object(desk: Services, keypair: Keypair) -> StoredObject:
    """The one published object, decrypted with stock gpg."""
    objects = read_objects(desk.config, keypair)
    assert len(objects) == 1, [o.path for o in objects]
    return objects[0]


def canonical_parts(data: bytes) -> list[bytes]:
    """The plaintexts of the parts an item of `data` is stored as: padded with zeros to
    Padmé(len(data)), cut every part_size() bytes (at least one part)."""
    padded = data + bytes(padme(len(data)) - len(data))
    size = part_size()
    return [padded[i:i + size] for i in range(0, len(padded), size)] or [b""]


def assert_parts(record: dict[str, object], data: bytes) -> None:
    """The record lists the canonical parts of `data` (however it was sent), with their sizes
    and SHA-256, and `size` is the true size."""
    parts = record["parts"]
    assert isinstance(parts, list)
    assert record["size"] == len(data)
    assert [(p["size"], p["sha256"]) for p in parts] \
        == [(len(c), sha256(c)) for c in canonical_parts(data)]


def tail_pieces(folder: Path) -> list[str]:
    """The names of an upload's sealed tail pieces."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TAIL_PREFIX))


def held(folder: Path) -> list[str]:
    """What an upload's folder holds besides its lock: parts and sealed tail pieces."""
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)
