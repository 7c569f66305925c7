"""A file name cannot hide its extension on the offline machine (review 2, finding 7): a source
names an HTML page "photo_\\u202egpj.html" (right-to-left override), which file managers and
the viewer showed as "photo_lmth.jpg", and declares it image/jpeg. Sent through a real desk
and bundle, `desk-review open` writes it as "photo_[U+202E]gpj.html", and the console and the
viewer show every Unicode format character (bidi controls, zero-width characters, tags) as a
visible escape, while `list --json` still gives scripts the exact name."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from crypto.gpg import GnuPG
from desk.review.decrypt import safe_filename
from desk.review.inert import FORMAT_RE, inert
from desk.review.server import create_viewer
from desk.review.workspace import Workspace
from desk.services import Services
from tests.harness.console import export, listing, ok, review
from tests.harness.forms import FormBody
from tests.harness.gpg import Keypair
from tests.harness.web import SourceBrowser

SPOOF = "photo_\u202egpj.html"  # the review's example
HIDDEN = "state\u200bment\u2060.pdf"  # zero-width space and word joiner: looks like statement.pdf
TAGGED = "clip\U000e0041\u200f.mp4"  # a tag character and a right-to-left mark
PAGE = b"<!doctype html><title>x</title><script>alert(1)</script>"
# Any format character at all (category Cf), whatever the Unicode version.
ANY_FORMAT = re.compile("[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u180e\u200b-\u200f"
                        "\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\U000e0001-\U000e007f]")


@pytest.fixture
def imported(desk: Services, source: SourceBrowser, journalist: Keypair, tmp_path: Path
             ) -> tuple[Path, Path, dict[str, str]]:
    """A workspace that imported the three files, sent through the source interface."""
    body = FormBody().field("csrf_token", source.form_token())
    for name in (SPOOF, HIDDEN, TAGGED):
        body.file(name, PAGE, content_type="image/jpeg")
    assert source.submit(body).status_code == 200
    workspace = tmp_path / "ws"
    ok(review(workspace, journalist.home, "import", str(export(desk, tmp_path / "b.tar"))))
    ids = {row["filename"]: row["id"] for row in listing(workspace, journalist.home)}
    assert set(ids) == {SPOOF, HIDDEN, TAGGED}  # scripts get the exact names
    return workspace, journalist.home, ids


def test_open_writes_the_override_visibly_and_keeps_the_real_extension(
        imported: tuple[Path, Path, dict[str, str]]) -> None:
    workspace, home, ids = imported
    written = {}
    for name, item in ids.items():
        _digest, _, where = ok(review(workspace, home, "open", item)).strip().partition("  ")
        path = Path(where)
        assert path.read_bytes() == PAGE
        written[name] = path.name
    # Before: "photo_\u202egpj.html", shown as "photo_lmth.jpg".
    assert written[SPOOF] == "photo_[U+202E]gpj.html"
    assert written[HIDDEN] == "state[U+200B]ment[U+2060].pdf"
    assert written[TAGGED] == "clip[U+E0041][U+200F].mp4"
    for path in (workspace / "decrypted").rglob("*"):
        assert not ANY_FORMAT.search(path.name), repr(path.name)


def test_list_and_viewer_show_format_characters_as_escapes(
        imported: tuple[Path, Path, dict[str, str]]) -> None:
    workspace, home, ids = imported
    out = ok(review(workspace, home, "list"))
    assert not ANY_FORMAT.search(out), repr(out)
    assert "photo_\\u202egpj.html" in out
    assert "state\\u200bment\\u2060.pdf" in out
    assert "clip\\U000e0041\\u200f.mp4" in out
    names = {row["filename"] for row in json.loads(ok(review(workspace, home, "list",
                                                                "--json")))}
    assert names == {SPOOF, HIDDEN, TAGGED}

    opened = Workspace.open(workspace)
    try:
        client = create_viewer(opened, GnuPG(home), "t0ken").test_client()
        page = client.get("/t0ken/").get_data(as_text=True)
        assert not ANY_FORMAT.search(page), repr(page)
        assert '<bdi dir="ltr">photo_\\u202egpj.html</bdi>' in page
        item = client.get(f"/t0ken/items/{ids[HIDDEN]}").get_data(as_text=True)
        assert not ANY_FORMAT.search(item), repr(item)
        assert "state\\u200bment\\u2060.pdf" in item
    finally:
        opened.engine.dispose()


def test_the_format_list_is_every_format_character_python_knows() -> None:
    """The sanitiser's list against this Python's Unicode database (planes 0, 1 and 14 are
    the only ones with format characters)."""
    known = {chr(code) for code in (*range(0x20000), *range(0xE0000, 0xE1000))
             if unicodedata.category(chr(code)) == "Cf"}
    listed = {chr(code) for code in (*range(0x20000), *range(0xE0000, 0xE1000))
              if FORMAT_RE.fullmatch(chr(code))}
    assert listed == known
    assert inert("a\u200bb") == "a\\u200bb"
    assert safe_filename("\u200b", "0" * 32) == "[U+200B]"
