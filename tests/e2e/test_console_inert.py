"""A source cannot drive the journalist's terminal (issue 14, finding 4): what a source sends
(a message with escape sequences, files whose names and tags are Rich markup) goes through a
real desk, a real export and a real `desk-review` process, and the console shows it as text:
no raw ESC or C1 byte reaches the terminal, markup is printed literally, and neither `list`
nor `inspect` breaks. An item the console should not keep can be dropped."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from crypto.gpg import GnuPG
from desk.review.index import Action, Part
from desk.review.inert import inert, json_text
from desk.review.server import create_viewer
from desk.review.workspace import Workspace, verify_actions
from desk.services import Services
from tests.harness.console import diagnostic, export, listing, ok, review
from tests.harness.forms import FormBody
from tests.harness.gpg import Keypair
from tests.harness.web import SourceBrowser

FAKE_LINE = "desk-review: custody verified, nothing identifying found"
MESSAGE = ("\x1b[2J\x1b[H"                      # clear the screen, cursor home
           "\x1b]0;desk-review: all clear\x07"  # OSC 0: the window title
           f"\x1b[32m{FAKE_LINE}\x1b[0m\n"      # a fake green line
           "\x9b2J\u202eevil\n"                 # C1 CSI, a bidi override
           "the real words of the source")
CRASH = "[/]clip.mp4"
LINK = "[link=file:///etc/passwd]statement[/link] [green]verified[/green].jpg"
ESCAPED = "\x1b]0;pwned\x07\x1b[2Jnote\u202egpj.exe"
HTML = "<script>alert(1)<script>.jpg"
TAG_MODEL = "\x1b]0;pwned\x07[bold green]Witness Cam[/bold green]"
TAG_MAKE = "[/]"
TAG_ARTIST = "[link=file:///etc/passwd]me[/link]"
# What must never reach the terminal raw: ESC and the other C0 controls but tab and newline,
# DEL, the C1 controls and the bidi overrides.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _tagged_jpeg(folder: Path) -> bytes:
    path = folder / "tagged.jpg"
    Image.new("RGB", (16, 16), "red").save(path)
    subprocess.run(["exiftool", "-q", "-overwrite_original", f"-Make={TAG_MAKE}",
                    f"-Model={TAG_MODEL}", f"-Artist={TAG_ARTIST}", str(path)],
                   check=True, capture_output=True, timeout=60)
    return path.read_bytes()


@dataclass(frozen=True)
class Hostile:
    """A workspace holding one source's hostile message and files, by name: item id."""

    workspace: Path
    home: Path
    ids: dict[str, str]
    message_id: str


@pytest.fixture
def hostile(desk: Services, source: SourceBrowser, journalist: Keypair, tmp_path: Path
            ) -> Hostile:
    """A source's message and three files with hostile names, sent through the source
    interface, exported by the desk and imported by the console."""
    picture = _tagged_jpeg(tmp_path)
    body = FormBody().field("csrf_token", source.form_token()).field("message", MESSAGE)
    for name in (CRASH, LINK, ESCAPED, HTML):
        body.file(name, picture, content_type="image/jpeg")
    page = source.submit(body)
    assert page.status_code == 200, page.text
    workspace = tmp_path / "ws"
    ok(review(workspace, journalist.home, "import", str(export(desk, tmp_path / "b.tar"))))
    rows = listing(workspace, journalist.home)
    ids = {r["filename"]: r["id"] for r in rows if r["kind"] == "file"}
    # `list --json` gives scripts every name exactly as the source sent it.
    assert set(ids) == {CRASH, LINK, ESCAPED, HTML}
    message_id, = (r["id"] for r in rows if r["kind"] == "message")
    return Hostile(workspace, journalist.home, ids, message_id)


def _shown(result: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr of a run that must have succeeded, checked for raw controls."""
    out = ok(result)
    assert RAW.findall(out) == [], out
    assert RAW.findall(result.stderr) == [], result.stderr
    return out


def test_a_message_cannot_clear_the_screen_or_fake_a_line(hostile: Hostile) -> None:
    out = _shown(review(hostile.workspace, hostile.home, "open", hostile.message_id))
    assert out == inert(MESSAGE, lines=True) + "\n"
    assert "\\x1b[2J\\x1b[H\\x1b]0;desk-review: all clear\\x07" in out
    assert f"\\x1b[32m{FAKE_LINE}\\x1b[0m" in out  # visible, and never on a line of its own
    assert not any(line.startswith(FAKE_LINE) for line in out.splitlines())
    assert "\\x9b2J\\u202eevil" in out
    assert out.splitlines()[-1] == "the real words of the source"


def test_list_shows_markup_names_literally_and_does_not_crash(hostile: Hostile) -> None:
    out = _shown(review(hostile.workspace, hostile.home, "list"))
    assert CRASH in out
    assert LINK in out
    assert inert(ESCAPED) in out
    # With colour forced, Rich styles only its own table: no hyperlink (OSC 8), no screen
    # clearing, no title, and the names' markup still shown as text.
    coloured = review(hostile.workspace, hostile.home, "list", extra_env={"FORCE_COLOR": "1"})
    shown = ok(coloured)
    assert "\x1b[" in shown  # colour really was on
    assert "\x1b]" not in shown
    assert "\x1b[2J" not in shown
    assert CRASH in shown
    assert LINK in shown


def test_list_json_is_exact_and_inert(hostile: Hostile) -> None:
    out = _shown(review(hostile.workspace, hostile.home, "list", "--json"))
    names = {r["filename"] for r in json.loads(out)}
    assert names == {None, CRASH, LINK, ESCAPED, HTML}


@pytest.mark.parametrize("name", [CRASH, LINK, ESCAPED])
def test_inspect_shows_names_and_tags_literally(hostile: Hostile, name: str) -> None:
    out = _shown(review(hostile.workspace, hostile.home, "inspect", hostile.ids[name]))
    assert inert(name) in out
    assert TAG_MAKE in out
    assert inert(TAG_MODEL) in out
    assert TAG_ARTIST in out
    report = json.loads(_shown(review(hostile.workspace, hostile.home, "inspect",
                                      hostile.ids[name], "--json")))
    values = {f["value"] for f in report["could_identify_the_source"]}
    assert {TAG_MAKE, TAG_MODEL, TAG_ARTIST} <= values  # exact for scripts


def test_errors_quoting_a_bundle_are_inert(hostile: Hostile, tmp_path: Path) -> None:
    message_file = tmp_path / "reply.txt"
    message_file.write_text("hello")
    result = review(hostile.workspace, hostile.home, "reply", "\x1b[2Jnobody",
                    "--message-file", str(message_file), "--out", str(tmp_path / "r.desk"))
    message, hint = diagnostic(result)
    assert RAW.findall(result.stderr) == []
    assert "nobody" in message
    assert hint is not None


def test_json_text_round_trips_and_escapes_what_json_leaves_raw() -> None:
    value = {"name": ESCAPED + "\x85\x9b\u2028", "message": MESSAGE}
    text = json_text(value)
    assert RAW.findall(text) == []
    assert "\u2028" not in text
    assert json.loads(text) == value


def test_inert_keeps_text_and_shows_controls() -> None:
    assert inert("clip (1).mp4 شكراً") == "clip (1).mp4 شكراً"
    assert inert("a\tb\nc\r") == "a\\tb\\nc\\r"
    assert inert("a\tb\nc\r", lines=True) == "a\tb\nc\\r"
    assert inert("\x1b\x00\x7f\x9b\u202e\u2066\ud800") == \
        "\\x1b\\x00\\x7f\\x9b\\u202e\\u2066\\ud800"


# --- drop --------------------------------------------------------------------------------------


def test_drop_removes_an_item_after_confirmation_and_logs_it(hostile: Hostile) -> None:
    ws, home, item = hostile.workspace, hostile.home, hostile.ids[CRASH]
    opened = Path(_shown(review(ws, home, "open", item)).strip().partition("  ")[2])
    assert opened.is_file()

    # Without --yes and without a terminal to ask in, nothing is dropped.
    message, hint = diagnostic(review(ws, home, "drop", item))
    assert message.startswith(f"dropping item {item} ")
    assert "needs confirmation" in message
    assert hint is not None
    assert "--yes" in hint
    assert item in {r["id"] for r in listing(ws, home)}

    dropped = review(ws, home, "drop", item, "--yes")
    assert ok(dropped) == ""
    assert RAW.findall(dropped.stderr) == []
    assert f"dropped item {item} ([/]clip.mp4, from " in dropped.stderr
    assert "1 decrypted file(s)" in dropped.stderr
    assert item not in {r["id"] for r in listing(ws, home)}
    assert not (ws / "objects" / item).exists()
    assert not opened.exists()
    assert len(listing(ws, home)) == 4

    workspace = Workspace.open(ws)
    try:
        with workspace.session() as session:
            actions = verify_actions(session)
            assert session.scalars(select(Part).where(Part.item_id == item)).all() == []
            logged = [a for a in actions if a.item_id == item]
            assert [a.action for a in logged][-2:] == ["wipe", "drop"]
            assert json.loads(logged[-1].detail)["decrypted_removed"] == 1
            assert session.scalars(select(Action).where(Action.action == "drop")).all()
    finally:
        workspace.engine.dispose()

    message, _ = diagnostic(review(ws, home, "drop", item, "--yes"))
    assert item in message


# --- the local web viewer ----------------------------------------------------------------------


def test_the_viewer_escapes_names_and_messages(hostile: Hostile) -> None:
    workspace = Workspace.open(hostile.workspace)
    try:
        client = create_viewer(workspace, GnuPG(hostile.home), "t0ken").test_client()
        page = client.get("/t0ken/").get_data(as_text=True)
        assert RAW.findall(page) == []
        assert "[link=file:///etc/passwd]statement[/link]" in page
        assert "<script>" not in page
        assert "&lt;script&gt;alert(1)&lt;script&gt;.jpg" in page
        message = client.get(f"/t0ken/items/{hostile.message_id}").get_data(as_text=True)
        assert RAW.findall(message) == []
        assert "\\x1b[32m" + FAKE_LINE in message
    finally:
        workspace.engine.dispose()


def test_the_evidence_report_escapes_names_and_tags(hostile: Hostile, tmp_path: Path) -> None:
    for name in (HTML, ESCAPED):
        out = tmp_path / f"report-{hostile.ids[name]}.html"
        ok(review(hostile.workspace, hostile.home, "report", hostile.ids[name], "--out",
                  str(out)))
        page = out.read_text()
        assert RAW.findall(page) == []
        assert "<script>" not in page
        assert inert(TAG_MODEL) in page
    assert "&lt;script&gt;alert(1)&lt;script&gt;.jpg" in (
        tmp_path / f"report-{hostile.ids[HTML]}.html").read_text()
