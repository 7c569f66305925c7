"""A seized server must not shape a submission (docs/INVARIANTS.md): against a real `desk serve
source` whose parts are cut at 1 MiB (the test hook `desk.intake.shape.simulated_part_size`,
set by a sitecustomize only tests put on the path), the same file sent by a form, by tus in one
PATCH and by tus in 37 PATCHes with a cut connection and a resume is stored as the same files
of the same sizes; sizes within one Padmé step store alike; stock gpg decrypts every stored
file and the console gives back exactly the original bytes, of items stored before padding
(record version 1) too.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from crypto.custody import ciphertext_digest, object_files
from crypto.items import ItemRecord, new_object_id, padme
from crypto.names import METADATA_NAME
from desk.app import create_app
from desk.intake.ingest import ItemWriter
from desk.records.items import record_items
from desk.records.models import Source
from desk.services import Services
from desk.storage.store import StagedItem
from tests.harness.console import ok, review
from tests.harness.data import MiB
from tests.harness.desks import read_objects, run_desk
from tests.harness.forms import FormBody
from tests.harness.gpg import Keypair
from tests.harness.http import HttpBrowser, SourceSession, hang_up, open_source_session, unsent
from tests.harness.servers import Server, small_parts_env, start_server, wait_for
from tests.harness.tus import OCTETS, metadata
from tests.harness.web import SourceBrowser

pytestmark = pytest.mark.slow

PART = MiB


@pytest.fixture
def small_parts(desk: Services, tmp_path: Path) -> Iterator[Server]:
    """The source interface of `desk`, cutting parts of 1 MiB."""
    started = start_server(desk.config.data_dir, "source", log=tmp_path / "server.log",
                           tmpdir=tmp_path / "server-tmp", timeout=30,
                           env=small_parts_env(tmp_path, PART))
    yield started
    started.stop(timeout=30)


def shape_of(folder: Path) -> list[tuple[str, int]]:
    """What a seized store shows of an item: its files' names and sizes."""
    return sorted((p.name, p.stat().st_size) for p in folder.iterdir())


def by_form(server: Server, data: bytes, name: str) -> None:
    browser = HttpBrowser(server.url)
    browser.get_codename()
    body = FormBody().field("csrf_token", browser.form_token()).file(name, data)
    assert browser.post(body).status_code in (200, 302, 303)


def moved(remote: SourceSession, location: str, offset: int) -> Callable[[], bool]:
    """Whether the upload's offset has moved past `offset`."""
    return lambda: remote.offset(location) > offset


def by_tus(remote: SourceSession, data: bytes, name: str, patches: int) -> None:
    location = remote.new_upload(len(data), metadata(name, "video/mp4"))
    step = -(-len(data) // patches)
    offset = 0
    for number, start in enumerate(range(0, len(data), step)):
        chunk = data[start:start + step]
        if number == patches // 2:
            # Cut the connection halfway through this body, then resume from where HEAD says.
            with remote.begin_patch(location, offset, len(chunk)) as sock:
                sock.sendall(chunk[:len(chunk) // 2])
                assert wait_for(lambda: unsent(sock) == 0, 10)
                time.sleep(0.3)
                hang_up(sock, False)
            assert wait_for(moved(remote, location, offset), 20)
            offset = remote.offset(location)
            chunk = data[offset:start + step]
        response = remote.request("PATCH", location, chunk, **{
            "Content-Type": OCTETS, "Upload-Offset": str(offset)})
        assert response.status_code == 204, response.text
        offset += len(chunk)
    assert offset == len(data)


def test_the_stored_form_does_not_depend_on_how_a_file_was_sent(
        desk: Services, small_parts: Server, journalist: Keypair, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 123_457)  # more than three parts of 1 MiB
    remote = open_source_session(small_parts.url)
    by_form(small_parts, data, "form.mp4")
    by_tus(remote, data, "one-patch.mp4", 1)
    by_tus(remote, data, "many-patches-with-a-longer-name.mp4", 37)
    objects = read_objects(desk.config, journalist)  # stock gpg, every stored file
    assert len(objects) == 3
    shapes = {tuple(shape_of(obj.path)) for obj in objects}
    assert len(shapes) == 1, shapes
    for obj in objects:
        assert obj.plaintext == data
        parts = obj.record["parts"]
        assert isinstance(parts, list)
        assert len(parts) == 4
        assert [p["size"] for p in parts[:-1]] == [PART] * 3
        assert sum(p["size"] for p in parts) == padme(len(data)) > len(data)

    # The console opens every one of them, trimmed to exactly the original bytes.
    bundle = tmp_path / "all.tar"
    exported = run_desk("export", "--out", str(bundle), "--all", data_dir=desk.config.data_dir)
    assert exported.returncode == 0, exported.stderr
    workspace = tmp_path / "workspace"
    ok(review(workspace, journalist.home, "import", str(bundle)))
    for obj in objects:
        out = tmp_path / "out" / obj.path.name
        line = ok(review(workspace, journalist.home, "open", obj.path.name, "--out", str(out)))
        assert line.startswith(hashlib.sha256(data).hexdigest())
        (opened,) = [p for p in out.iterdir() if p.is_file()]
        assert opened.read_bytes() == data


def test_sizes_within_one_padme_step_are_stored_alike(
        desk: Services, small_parts: Server, journalist: Keypair) -> None:
    small, large = 1_480_000, 1_507_000  # both pad to 1,507,328 (46 steps of 32 KiB)
    assert padme(small) == padme(large)
    remote = open_source_session(small_parts.url)
    by_tus(remote, os.urandom(small), "a.mp4", 3)
    by_form(small_parts, os.urandom(large), "b-with-another-name.mp4")
    objects = read_objects(desk.config, journalist)
    assert sorted(len(o.plaintext) for o in objects) == [small, large]
    assert shape_of(objects[0].path) == shape_of(objects[1].path)


def store_version_1_item(desk: Services, source_id: str, chunks: list[bytes],
                         filename: bytes, content_type: str) -> str:
    """An item as the desk stored it before padding (record version 1): one unpadded part per
    chunk, as a tus upload of one PATCH per chunk used to leave, and `size` the parts' sum;
    recorded with its row and custody entry. Returns its id."""
    recipients = desk.recipients.current()
    writer = ItemWriter(desk.store, desk.gpg, recipients)
    staging = desk.store.stage()
    parts = tuple(writer.write_part(staging, index, io.BytesIO(chunk))[0]
                  for index, chunk in enumerate(chunks))
    data = b"".join(chunks)
    record = ItemRecord(object_id=new_object_id(), kind="file", received_at=datetime.now(UTC),
                        parts=parts, filename=filename, content_type=content_type,
                        sha256=hashlib.sha256(data).hexdigest(), version=1)
    with staging.new_file(METADATA_NAME) as temp:
        desk.gpg.encrypt_stream(io.BytesIO(record.to_json()), recipients, temp)
    ciphertext = object_files(staging.path)
    staged = StagedItem(
        object_id=record.object_id, kind="file", staging=staging, size=len(data),
        sha256=record.sha256, filename=record.display_name, part_count=len(parts),
        ciphertext_size=sum(size for size, _ in ciphertext.values()),
        ciphertext_sha256=ciphertext_digest(ciphertext))
    with desk.writers() as db:
        record_items(db, desk.store, desk.signing_key, source_id, [staged])
    return record.object_id


def test_the_console_opens_a_version_1_item_exactly(
        desk: Services, journalist: Keypair, tmp_path: Path) -> None:
    browser = SourceBrowser(create_app(desk.config, "source", services=desk).test_client())
    browser.get_codename()
    # Sizes off every Padmé step: read as version 2, the item would be refused or cut short.
    chunks = [os.urandom(100_003), os.urandom(1), os.urandom(77_777)]
    old = b"".join(chunks)
    new = os.urandom(50_001)
    assert browser.send("", (("new.mp4", new),)).status_code == 200
    with desk.sessions() as session:
        source_id = session.scalars(select(Source.id)).one()
    old_id = store_version_1_item(desk, source_id, chunks, "старый.mp4".encode(), "video/mp4")
    desk.engine.dispose()

    # Stock gpg reads what the desk stored: a version 1 record beside a version 2 one.
    stored = {obj.path.name: obj for obj in read_objects(desk.config, journalist)}
    assert stored[old_id].record["version"] == 1
    assert stored[old_id].record["size"] == len(old)
    assert stored[old_id].padded == old  # no padding
    (new_id,) = set(stored) - {old_id}
    assert stored[new_id].record["version"] == 2
    verified = run_desk("custody", "verify", data_dir=desk.config.data_dir)
    assert verified.returncode == 0, verified.stderr

    bundle = tmp_path / "all.tar"
    exported = run_desk("export", "--out", str(bundle), "--all", data_dir=desk.config.data_dir)
    assert exported.returncode == 0, exported.stderr
    workspace = tmp_path / "workspace"
    ok(review(workspace, journalist.home, "import", str(bundle)))
    for item_id, data in ((old_id, old), (new_id, new)):
        out = tmp_path / "out" / item_id
        line = ok(review(workspace, journalist.home, "open", item_id, "--out", str(out)))
        assert line.startswith(hashlib.sha256(data).hexdigest())
        (opened,) = [p for p in out.iterdir() if p.is_file()]
        assert opened.read_bytes() == data
    assert (tmp_path / "out" / old_id / "старый.mp4").is_file()
