"""Quotas through a real server: one source cannot fill the disk for everyone.

`desk serve source` (gunicorn) with small quotas set as an administrator sets them
(DESK_QUOTA_PER_SOURCE, DESK_QUOTA_ALL_SOURCES); sources send over HTTP with the no-JavaScript
form and as a tus client. A sending past a quota gets the calm answer a full disk gets (507),
leaves nothing behind and names the quota in the log; other sources keep sending.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from desk.services import Services
from tests.harness.data import MiB
from tests.harness.desks import read_objects
from tests.harness.disk import (
    NO_SPACE_LOG,
    assert_no_space_page,
    leftovers,
    listed,
    log_lines,
)
from tests.harness.forms import FormBody
from tests.harness.gpg import Keypair
from tests.harness.http import HttpBrowser, SourceSession
from tests.harness.servers import Server, start_server
from tests.harness.tus import metadata

PER_SOURCE_LOG = "a source's quota (DESK_QUOTA_PER_SOURCE) is reached"
ALL_SOURCES_LOG = "the sources' share of the disk (DESK_QUOTA_ALL_SOURCES) is reached"
TUS_NO_ROOM = "not enough space on the desk right now; nothing was kept"


def serve(desk: Services, tmp_path: Path, **quotas: str) -> Iterator[Server]:
    """The source interface of `desk` under gunicorn with these DESK_QUOTA_* settings."""
    server = start_server(desk.config.data_dir, "source", log=tmp_path / "server.log",
                          tmpdir=tmp_path / "server-tmp", timeout=30, env={
                              "DESK_MAX_UPLOAD_BYTES": str(desk.config.max_upload_bytes),
                              **quotas})
    yield server
    server.stop(timeout=30)


@pytest.fixture
def three_mib_each(desk: Services, tmp_path: Path) -> Iterator[Server]:
    """A server that lets each source keep 3 MiB."""
    yield from serve(desk, tmp_path, DESK_QUOTA_PER_SOURCE="3MiB")


@pytest.fixture
def five_mib_for_all(desk: Services, tmp_path: Path) -> Iterator[Server]:
    """A server that lets all sources together keep 5 MiB."""
    yield from serve(desk, tmp_path, DESK_QUOTA_ALL_SOURCES="5MiB")


def form(browser: HttpBrowser, *files: tuple[str, bytes]) -> FormBody:
    """The submit form with these files and no message."""
    body = FormBody().field("csrf_token", browser.form_token()).field("message", "")
    for name, data in files:
        body.file(name, data)
    return body


def create(session: SourceSession, length: int) -> tuple[int, str]:
    """A tus creation of `length` bytes: its status and text."""
    answer = session.request("POST", "/uploads/", **{"Upload-Length": str(length),
                                                     "Upload-Metadata": metadata("clip.mp4")})
    return answer.status_code, answer.text


def stored(desk: Services, journalist: Keypair) -> list[bytes]:
    """The plaintext of every stored item, sorted."""
    return sorted(obj.plaintext for obj in read_objects(desk.config, journalist))


def test_a_source_over_its_quota_is_refused_while_another_still_sends(
        desk: Services, three_mib_each: Server, journalist: Keypair) -> None:
    first, second = (HttpBrowser.with_codename(three_mib_each.url) for _ in range(2))
    clip, more, other = (os.urandom(2 * MiB) for _ in range(3))
    assert first.post(form(first, ("clip.mp4", clip))).status_code == 200
    before = listed(desk)

    # 2 MiB kept and 2 MiB more: past 3 MiB, by the form and by tus alike.
    page = first.post(form(first, ("more.mp4", more)))
    refused = create(first.session(), len(more))

    assert_no_space_page(page)
    assert refused == (507, TUS_NO_ROOM)
    assert listed(desk) == before
    assert leftovers(desk) == []
    # The other source still sends, by tus and by the form.
    tus = second.session()
    location = tus.new_upload(len(other), metadata("other.mp4"))
    assert tus.patch(location, 0, other).status_code == 204
    assert second.post(form(second, ("note.txt", b"a small one"))).status_code == 200
    assert stored(desk, journalist) == sorted([clip, other, b"a small one"])
    assert len(log_lines(three_mib_each, PER_SOURCE_LOG)) == 2
    assert log_lines(three_mib_each, NO_SPACE_LOG) == []
    assert log_lines(three_mib_each, "Traceback") == []


def test_a_tus_upload_reserves_its_whole_length_from_its_creation(
        desk: Services, three_mib_each: Server, journalist: Keypair) -> None:
    browser = HttpBrowser.with_codename(three_mib_each.url)
    tus = browser.session()
    clip = os.urandom(2 * MiB)
    location = tus.new_upload(len(clip), metadata("clip.mp4"))
    assert tus.patch(location, 0, clip[:MiB]).status_code == 204

    # Half of it has arrived, all of it counts: 2 MiB reserved and 2 MiB more is too much.
    page = browser.post(form(browser, ("more.mp4", os.urandom(2 * MiB))))
    refused = create(tus, 2 * MiB)

    assert_no_space_page(page)
    assert refused[0] == 507
    assert tus.patch(location, MiB, clip[MiB:]).status_code == 204
    assert stored(desk, journalist) == [clip]


def test_a_body_without_a_length_is_held_to_the_quota_by_what_it_made(
        desk: Services, three_mib_each: Server, journalist: Keypair) -> None:
    browser = HttpBrowser.with_codename(three_mib_each.url)
    clip = os.urandom(2 * MiB)
    assert browser.post(form(browser, ("clip.mp4", clip))).status_code == 200
    body = form(browser, ("more.mp4", os.urandom(2 * MiB)))
    data = body.encode()

    # Sent in chunks, with no Content-Length: nothing to check before it is encrypted.
    page = browser.post(iter([data[i:i + MiB] for i in range(0, len(data), MiB)]),
                        body.content_type)

    assert_no_space_page(page)
    assert stored(desk, journalist) == [clip]
    assert leftovers(desk) == []


def test_sources_together_are_held_to_their_share(
        desk: Services, five_mib_for_all: Server, journalist: Keypair) -> None:
    first, second = (HttpBrowser.with_codename(five_mib_for_all.url) for _ in range(2))
    clip, small = os.urandom(3 * MiB), os.urandom(MiB)
    assert first.post(form(first, ("clip.mp4", clip))).status_code == 200

    # Within its own quota, but not within what all sources may keep.
    refused = create(second.session(), 3 * MiB)

    assert refused == (507, TUS_NO_ROOM)
    assert second.post(form(second, ("small.mp4", small))).status_code == 200
    assert stored(desk, journalist) == sorted([clip, small])
    assert len(log_lines(five_mib_for_all, ALL_SOURCES_LOG)) == 1
