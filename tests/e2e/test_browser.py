"""The source interface in a real browser (Debian's chromium, driven by Playwright).

Once with JavaScript off (the plain multipart form, as Tor Browser at Safest sends it) and once
with it on (desk/static/upload.js sending each file over tus, then the message on its own).
Both runs must store exactly the bytes chosen, readable with stock gpg, with no console error
and no Content-Security-Policy violation, and show the same receipt (each file's SHA-256, as
the desk computed it). With JavaScript, the progress shown is only what the desk has
acknowledged, "Send slowly" keeps to its speed, and a file stopped part-way continues after
the codename logs in again. Screenshots go to test-artifacts/ for a human to look at.

Playwright comes from PyPI (`pip install playwright`); its own browser download is never used.
Without it or without chromium these tests skip on a developer's machine, and fail under CI.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from desk.services import Services
from tests.harness.desks import read_objects
from tests.harness.gpg import Keypair
from tests.harness.paths import REPO
from tests.harness.servers import Server, small_parts_env, start_server
from tests.harness.tus import upload_rows

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover - depends on the machine
    HAVE_PLAYWRIGHT = False

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("DESK_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts"
MiB = 1024 * 1024
TIMEOUT_MS = 30_000
# Slow enough that the progress bar and the Pause button can be seen working, fast enough
# that the module's tests but one (which must take a minute) stay short.
UPLOAD_BYTES_PER_SECOND = 6_000_000

# More than upload.js's first piece (1 MiB) and its largest (16 MiB): the JavaScript runs send
# the big file in three requests or more, and can be paused or cut off between them.
BIG = ("railway station, platform 3.mp4", 17 * MiB + 12345)
SMALL = ("заметки — notes.txt", 70_000)
MESSAGE = "Filmed on Tuesday evening from the footbridge. — ünïcode ✓"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine; under CI a missing browser is a failure, never a skip."""
    if _in_ci():
        pytest.fail(f"{reason} (CI is set, so this is an error rather than a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, launched once for the module."""
    if not HAVE_PLAYWRIGHT:
        _unavailable("Python Playwright is not installed (pip install playwright)")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                              headless=True)
        yield launched
        launched.close()


@dataclass
class Run:
    """One browser session on the source interface, and everything it logged."""

    page: Page
    name: str
    errors: list[str] = field(default_factory=list)

    def watch(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        # Chromium asks every site for /favicon.ico; the desk has none (see the report on
        # base.html). Only that exact request is forgiven.
        if (message.text.startswith("Failed to load resource") and
                message.location.get("url", "").endswith("/favicon.ico")):
            return
        self.errors.append(message.text)  # CSP violations are logged here as errors too

    def screenshot(self, what: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"browser-{self.name}-{what}.png"),
                             full_page=True)

    def to_submit_page(self, server: Server) -> str:
        """Open the desk, get a codename, and go on to the submit form; the codename."""
        self.page.goto(server.url + "/")
        self.page.get_by_role("button", name="Get a codename and continue").click()
        codename = self.page.locator("#codename").inner_text().strip()
        assert codename
        self.page.get_by_role("link", name="I have written it down: continue").click()
        self.page.wait_for_url("**/submit")
        return codename

    def log_in(self, server: Server, codename: str) -> None:
        """Log in with a codename, as a source coming back, and land on the submit form."""
        self.page.goto(server.url + "/login")
        self.page.fill("#codename", codename)
        self.page.get_by_role("button", name="Continue").click()
        self.page.wait_for_url("**/submit")


@pytest.fixture
def chosen(tmp_path: Path) -> dict[str, bytes]:
    """The files the source chooses, by name, written to disk for the file picker."""
    folder = tmp_path / "chosen"
    folder.mkdir()
    files = {name: os.urandom(size) for name, size in (BIG, SMALL)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _paths(tmp_path: Path, files: dict[str, bytes]) -> list[str]:
    return [str(tmp_path / "chosen" / name) for name in files]


def _throttle(cdp: Any, offline: bool = False) -> None:
    """Slow the browser's uploads down (or cut it off) with Chromium's network emulation."""
    cdp.send("Network.emulateNetworkConditions", {
        "offline": offline, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": UPLOAD_BYTES_PER_SECOND})


def _throttled_submit_page(context: Any, run: Run, server: Server) -> Any:
    """Take `run` to the submit page with its uploads throttled, once tus is ready; the CDP
    session is returned, to throttle or cut the network later."""
    cdp = context.new_cdp_session(run.page)
    cdp.send("Network.enable")
    _throttle(cdp)
    run.to_submit_page(server)
    run.page.wait_for_function("() => window.tus && window.tus.isSupported")
    return cdp


def _open(browser: Browser, name: str, javascript: bool, **options: Any) -> tuple[Any, Run]:
    context = browser.new_context(java_script_enabled=javascript,
                                  viewport={"width": 900, "height": 900}, **options)
    context.set_default_timeout(TIMEOUT_MS)
    run = Run(context.new_page(), name)
    run.watch()
    return context, run


def _check_stored(desk: Services, journalist: Keypair, files: dict[str, bytes],
                  message: str | None = MESSAGE) -> None:
    """One object per file, and one for the message if any, each decrypting to what was sent."""
    objects = read_objects(desk.config, journalist)
    by_kind: dict[str, list[Any]] = {}
    for obj in objects:
        by_kind.setdefault(str(obj.record["kind"]), []).append(obj)
    assert sorted(by_kind) == (["file", "message"] if message else ["file"]), \
        [o.record for o in objects]
    stored = {str(obj.record["filename"]): obj for obj in by_kind["file"]}
    assert sorted(stored) == sorted(files)
    for name, data in files.items():
        assert stored[name].plaintext == data, name
        assert stored[name].record["size"] == len(data)
    assert stored[BIG[0]].record["content_type"] == "video/mp4"
    if message:
        [stored_message] = by_kind["message"]
        assert stored_message.plaintext == message.encode("utf-8")


def test_plain_form_without_javascript(browser: Browser, server: Server, desk: Services,
                                       journalist: Keypair, chosen: dict[str, bytes],
                                       tmp_path: Path) -> None:
    context, run = _open(browser, "nojs", javascript=False)
    try:
        run.to_submit_page(server)
        page = run.page
        # Without JavaScript nothing of the upload panel shows.
        assert page.locator("#upload-progress").is_hidden()
        page.set_input_files("#files", _paths(tmp_path, chosen))
        page.fill("#message", MESSAGE)
        run.screenshot("1-form")
        page.get_by_role("button", name="Send", exact=True).click()
        page.wait_for_selector("table.received")
        assert page.locator("h1").inner_text() == "Received"
        text = page.locator("main").inner_text()
        assert "Your message was received." in text
        for name, data in chosen.items():
            assert name in text
            assert hashlib.sha256(data).hexdigest() in text
        run.screenshot("2-received")
    finally:
        context.close()
    _check_stored(desk, journalist, chosen)
    assert run.errors == []


def test_resumable_upload_with_javascript(browser: Browser, server: Server, desk: Services,
                                          journalist: Keypair, chosen: dict[str, bytes],
                                          tmp_path: Path) -> None:
    context, run = _open(browser, "js", javascript=True)
    try:
        page = run.page
        # Throttle uploads in the browser so the progress can be watched (and paused); the
        # session is held for the whole test.
        _throttling = _throttled_submit_page(context, run, server)
        assert page.locator("#upload-progress").is_hidden()
        page.set_input_files("#files", _paths(tmp_path, chosen))
        page.fill("#message", MESSAGE)
        run.screenshot("1-form")
        page.get_by_role("button", name="Send", exact=True).click()

        # The panel shows, one row per file; the big file goes first and makes progress.
        page.wait_for_selector("#upload-progress", state="visible")
        items = page.locator("#upload-list li")
        assert items.count() == 2
        first = items.nth(0)
        page.wait_for_function(
            "() => document.querySelector('#upload-list progress').value >= 5")
        amount = first.locator(".upload-amount").inner_text()
        # Each value filled in is bidi-isolated (U+2068 ... U+2069).
        assert "of \u206817.8 MB\u2069" in amount, amount
        assert page.locator("#send-button").is_hidden()
        run.screenshot("2-sending")

        # Pause keeps what arrived on the desk; Resume carries on from there.
        first.get_by_role("button", name="Pause").click()
        assert first.get_attribute("data-state") == "paused"
        paused_at = first.locator("progress").evaluate("e => e.value")
        run.screenshot("3-paused")
        time.sleep(0.5)
        first.get_by_role("button", name="Resume").click()

        page.wait_for_selector("#upload-received", state="visible")
        assert page.locator("#submit-area").is_hidden()
        values = page.eval_on_selector_all("#upload-list progress", "els => els.map(e => e.value)")
        assert values == [100, 100], values
        assert 0 < paused_at < 100
        received = page.locator("#upload-received").inner_text()
        assert "Your message was received." in received
        for name, data in chosen.items():
            row = page.locator("#received-files tbody tr", has_text=name)
            assert row.count() == 1, name
            expected = "17.8 MB" if len(data) > MiB else "70.0 kB"
            assert row.locator("td").nth(1).inner_text() == expected
            # The same receipt as without JavaScript: the desk's SHA-256 of what it received.
            assert row.locator("td code.hash").inner_text() == hashlib.sha256(data).hexdigest()
        assert page.locator("#received-hashes").is_visible()
        run.screenshot("4-received")
        storage = page.evaluate("() => [localStorage.length, sessionStorage.length]")
        assert storage == [0, 0], "the upload left something in the browser's storage"
    finally:
        context.close()
    _check_stored(desk, journalist, chosen)
    assert run.errors == []


def test_upload_survives_a_dropped_connection(browser: Browser, server: Server,
                                              desk: Services, journalist: Keypair,
                                              chosen: dict[str, bytes], tmp_path: Path) -> None:
    """The connection drops mid-file; the page says so calmly, and carries on by itself."""
    big = {BIG[0]: chosen[BIG[0]]}
    context, run = _open(browser, "js-dropped", javascript=True)
    try:
        page = run.page
        cdp = _throttled_submit_page(context, run, server)
        page.set_input_files("#files", _paths(tmp_path, big))
        page.get_by_role("button", name="Send", exact=True).click()
        page.wait_for_function(
            "() => document.querySelector('#upload-list progress').value >= 5")
        _throttle(cdp, offline=True)
        note = page.locator(".upload-note[data-kind=retrying]")
        note.wait_for()
        assert "Trying again by itself" in note.inner_text()
        run.screenshot("3-retrying")
        _throttle(cdp)
        page.wait_for_selector("#upload-received", state="visible")
        # No message was written, so only the files are confirmed.
        assert page.locator("#received-message").is_hidden()
        assert page.locator("#received-files tbody tr").count() == 1
        assert page.evaluate("() => [localStorage.length, sessionStorage.length]") == [0, 0]
    finally:
        context.close()
    _check_stored(desk, journalist, big, message=None)
    # The browser reports the requests cut off while offline; nothing else may appear.
    assert [e for e in run.errors if "net::ERR_INTERNET_DISCONNECTED" not in e] == []


# The progress a file's row shows: the bar's value and the "{done} of {total}" line's done.
SHOWN = """() => {
  const row = document.querySelector('#upload-list li');
  if (!row) return null;
  return [row.querySelector('progress').value, row.querySelector('.upload-amount').textContent,
          row.dataset.state || ''];
}"""


def _acknowledged(desk: Services, length: int) -> int:
    """The offset the desk has acknowledged of the one upload under way, read from its row;
    the whole length once it has been published (its row gone, its object stored)."""
    rows = upload_rows(desk)
    if rows:
        [row] = rows
        return row.offset
    return length if any((desk.config.store_dir / "objects").iterdir()) else 0


def _done_bytes(amount: str) -> int:
    """The "done" number of a progress line in megabytes, as bytes ("5.2 of 17.8 MB")."""
    match = re.match(r"\u2068([0-9]+)\.([0-9])\u2069 of \u2068[0-9.]+ MB\u2069", amount)
    assert match, amount
    return int(match.group(1)) * 1_000_000 + int(match.group(2)) * 100_000


def test_progress_shows_only_what_the_desk_has_acknowledged(
        browser: Browser, server: Server, desk: Services, journalist: Keypair,
        chosen: dict[str, bytes], tmp_path: Path) -> None:
    """Over Tor the browser has handed a piece to the network long before the desk has it:
    sampled all along a throttled upload, the bar and the amount never show more than the
    offset the desk had acknowledged by then (read from its row just after each sample)."""
    big = {BIG[0]: chosen[BIG[0]]}
    length = len(chosen[BIG[0]])
    context, run = _open(browser, "js-acknowledged", javascript=True)
    samples: list[tuple[int, int, int]] = []
    try:
        page = run.page
        _throttling = _throttled_submit_page(context, run, server)  # held for the whole test
        page.set_input_files("#files", _paths(tmp_path, big))
        page.get_by_role("button", name="Send", exact=True).click()
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        state = ""
        while state != "done":
            assert time.monotonic() < deadline, samples[-5:]
            shown = page.evaluate(SHOWN)
            if shown is None:
                continue
            percent, amount, state = shown
            acknowledged = _acknowledged(desk, length)  # after the sample: it only grows
            samples.append((percent, _done_bytes(amount), acknowledged))
            time.sleep(0.02)
        run.screenshot("acknowledged")
    finally:
        context.close()
    ahead = [(percent, done, acknowledged) for percent, done, acknowledged in samples
             if percent > acknowledged * 100 // length or done > acknowledged]
    assert ahead == []
    # The samples saw the upload part-way, not only its start and end.
    assert any(0 < percent < 100 for percent, _, _ in samples), samples[::10]
    _check_stored(desk, journalist, big, message=None)
    assert run.errors == []


# The slowest speed the submit page offers, in bytes per second.
SLOWEST = 125_000
WINDOW_SECONDS = 60


def test_sending_slowly_keeps_to_the_chosen_speed(browser: Browser, server: Server,
                                                  desk: Services, tmp_path: Path) -> None:
    """Unthrottled, "Send slowly" at the slowest speed: over a minute the desk receives no
    more than that speed allows (plus 10%), in pieces of random sizes. The one test here that
    takes a minute, as the cap is defined over one."""
    folder = tmp_path / "chosen"
    folder.mkdir()
    name = "quiet evening.mp4"
    (folder / name).write_bytes(os.urandom(12 * MiB))  # more than a minute at that speed
    context, run = _open(browser, "js-slow", javascript=True)
    try:
        page = run.page
        run.to_submit_page(server)
        page.wait_for_function("() => window.tus && window.tus.isSupported")
        assert page.locator("#slow-send").is_visible()
        page.set_input_files("#files", [str(folder / name)])
        page.check("#slow-mode")
        page.select_option("#slow-rate", str(SLOWEST))
        run.screenshot("1-slow-form")
        page.get_by_role("button", name="Send", exact=True).click()
        page.locator(".upload-note", has_text="Sending slowly").wait_for()
        # From the first acknowledged piece, one minute of what the desk received.
        page.wait_for_function(
            "() => document.querySelector('#upload-list progress').value > 0")
        first = _acknowledged(desk, 12 * MiB)
        offsets = [first]
        end = time.monotonic() + WINDOW_SECONDS
        while time.monotonic() < end:
            time.sleep(min(0.25, max(end - time.monotonic(), 0)))
            offsets.append(_acknowledged(desk, 12 * MiB))
        run.screenshot("2-slow-sending")
    finally:
        context.close()
    received = offsets[-1] - first
    assert 0 < received <= SLOWEST * WINDOW_SECONDS * 1.1, received
    assert offsets[-1] < 12 * MiB  # still under way: the window was all sending
    pieces = [after - before for before, after in itertools.pairwise(offsets) if after > before]
    assert all(piece >= MiB for piece in pieces), pieces  # the desk's smallest piece
    assert len(pieces) >= 2, offsets
    assert len(set(pieces)) > 1, pieces  # of random sizes
    assert run.errors == []


@pytest.fixture
def parted_server(desk: Services, tmp_path: Path) -> Iterator[Server]:
    """The source interface cutting parts of 4 MiB: a file of several parts, so that its
    receipt's SHA-256 spans parts and sessions."""
    started = start_server(desk.config.data_dir, "source", log=tmp_path / "server.log",
                           tmpdir=tmp_path / "server-tmp", timeout=30, env={
                               "DESK_MAX_UPLOAD_BYTES": str(desk.config.max_upload_bytes),
                               **small_parts_env(tmp_path, 4 * MiB)})
    yield started
    started.stop(timeout=30)


def test_an_unfinished_file_continues_after_logging_in_again(
        browser: Browser, parted_server: Server, desk: Services, journalist: Keypair,
        chosen: dict[str, bytes], tmp_path: Path) -> None:
    """The page is closed part-way through a file. Later, in a new browser session, the
    codename logs in, the page lists the file, and choosing it again continues it where the
    desk stopped; another codename sees nothing of it."""
    name, data = BIG[0], chosen[BIG[0]]
    big = {name: data}
    context, run = _open(browser, "js-stopped", javascript=True)
    try:
        page = run.page
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        _throttle(cdp)
        codename = run.to_submit_page(parted_server)
        page.wait_for_function("() => window.tus && window.tus.isSupported")
        page.set_input_files("#files", _paths(tmp_path, big))
        page.get_by_role("button", name="Send", exact=True).click()
        page.wait_for_function(
            "() => document.querySelector('#upload-list progress').value >= 5")
    finally:
        context.close()  # the tab is closed mid-file
    [stopped] = upload_rows(desk)
    assert 0 < stopped.offset < len(data)
    assert run.errors == []

    context, other = _open(browser, "js-other-codename", javascript=True)
    try:
        other.to_submit_page(parted_server)
        assert other.page.locator("#unfinished").count() == 0
        assert name not in other.page.content()
        assert stopped.id not in other.page.content()
    finally:
        context.close()

    context, again = _open(browser, "js-continued", javascript=True)
    try:
        page = again.page
        again.log_in(parted_server, codename)
        page.wait_for_function("() => window.tus && window.tus.isSupported")
        listed = page.locator("#unfinished li")
        assert listed.count() == 1
        assert name in listed.inner_text()
        assert listed.get_attribute("data-upload") == f"/uploads/{stopped.id}"
        again.screenshot("1-listed")
        page.set_input_files("#files", _paths(tmp_path, big))
        page.get_by_role("button", name="Send", exact=True).click()
        # It starts from what the desk had, not from nothing.
        assert page.locator("#upload-list progress").evaluate("e => e.value") > 0
        page.wait_for_selector("#upload-received", state="visible")
        row = page.locator("#received-files tbody tr", has_text=name)
        assert row.locator("td code.hash").inner_text() == hashlib.sha256(data).hexdigest()
        again.screenshot("2-received")
    finally:
        context.close()
    assert upload_rows(desk) == []  # the same upload was continued, none was left behind
    _check_stored(desk, journalist, big, message=None)
    assert again.errors == []
    assert other.errors == []


def _edges(page: Page, element: str, container: str) -> tuple[float, float]:
    """How far `element` sits from the start and from the end edge of `container`, in pixels,
    measured from the left and the right of the page respectively."""
    inner, outer = page.locator(element).bounding_box(), page.locator(container).bounding_box()
    assert inner is not None
    assert outer is not None
    return (inner["x"] - outer["x"],
            (outer["x"] + outer["width"]) - (inner["x"] + inner["width"]))


def _check_direction(page: Page, rtl: bool, element: str, container: str) -> None:
    """The page says its direction, and a start-aligned button sits on the matching side."""
    assert page.locator("html").get_attribute("dir") == ("rtl" if rtl else "ltr")
    from_left, from_right = _edges(page, element, container)
    near, far = (from_right, from_left) if rtl else (from_left, from_right)
    # Near the start edge (within the container's padding), far from the other one.
    assert near < 40 < far, (from_left, from_right)


@pytest.mark.parametrize(("code", "rtl"), [("en", False), ("ug", True)])
def test_landing_and_submit_pages_in_english_and_uyghur(browser: Browser, server: Server,
                                                        code: str, rtl: bool) -> None:
    """As Tor Browser at Safest shows them (no JavaScript): screenshots for a human, and the
    layout mirrored for right-to-left."""
    context, run = _open(browser, f"lang-{code}", javascript=False)
    try:
        page = run.page
        page.goto(f"{server.url}/?l={code}")
        assert page.locator("html").get_attribute("lang") == code
        generate = "form[action$='/generate'] button"
        _check_direction(page, rtl, generate, "main")
        run.screenshot("1-landing")
        page.locator(generate).click()
        assert page.locator("#codename").inner_text().strip()
        # The codename itself stays left to right, words in Latin letters, in every language.
        assert page.locator("#codename").get_attribute("dir") == "ltr"
        page.locator("main a.button.primary").click()
        page.wait_for_url("**/submit")
        _check_direction(page, rtl, "#send-button", "#submit-form")
        run.screenshot("2-submit")
        heading = page.locator("#submit-area h1").inner_text()
        if rtl:
            assert re.search(r"[\u0600-\u06ff]", heading), heading
        else:
            assert heading == "Send a message and files"
    finally:
        context.close()
    assert run.errors == []


@pytest.mark.parametrize("javascript", [True, False])
def test_landing_page_tells_a_browser_with_javascript_to_use_tor_browser(
        browser: Browser, server: Server, javascript: bool) -> None:
    """Chromium is not Tor Browser: with JavaScript on the page says so; at Safest (no
    JavaScript) it shows neither note."""
    context, run = _open(browser, "detect", javascript=javascript)
    try:
        page = run.page
        page.goto(server.url + "/")
        assert page.locator("#use-tor-browser").is_visible() is javascript
        assert page.locator("#raise-security").is_hidden()
    finally:
        context.close()
    assert run.errors == []


# What Tor Browser tells every page it is: Firefox ESR, in UTC, on its platform.
TOR_BROWSER_AGENTS = {
    "computer": "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Firefox/128.0",
    "android": "Mozilla/5.0 (Android 10; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0",
}


@pytest.mark.parametrize("platform", sorted(TOR_BROWSER_AGENTS))
def test_tor_browser_below_safest_is_told_the_steps_for_its_platform(
        browser: Browser, server: Server, platform: str) -> None:
    """Tor Browser for Android has no shield icon: it gets its own steps, and a computer gets
    the shield, Save and restart, and opening the address again."""
    context, run = _open(browser, f"detect-{platform}", javascript=True,
                         user_agent=TOR_BROWSER_AGENTS[platform], timezone_id="UTC")
    try:
        page = run.page
        page.goto(server.url + "/")
        shown, hidden = (("#raise-security-android", "#raise-security") if platform == "android"
                         else ("#raise-security", "#raise-security-android"))
        page.locator(shown).wait_for(state="visible")
        assert page.locator(hidden).is_hidden()
        assert page.locator("#use-tor-browser").is_hidden()
        note = page.locator(shown).inner_text()
        assert "open this address again" in note
        if platform == "android":
            assert "shield" not in note
            assert "On a phone" in note
        else:
            assert "Save and restart" in note
            assert "On a computer" in note
        run.screenshot("landing")
    finally:
        context.close()
    assert run.errors == []


# Measures, in the rendered line, the number of the total ("17.8") and its unit (as the
# browser's locale data writes megabytes in the page's language): the gap between them, and
# whether they sit on one line. The amount is one text node.
MEASURE_TOTAL = r"""(element, number) => {
  const node = element.firstChild;
  const text = node.data;
  const format = new Intl.NumberFormat(document.documentElement.lang + "-u-nu-latn", {
    style: "unit", unit: "megabyte", unitDisplay: "short"});
  const unit = format.formatToParts(1).find(part => part.type === "unit").value;
  const box = (start, length) => {
    const range = document.createRange();
    range.setStart(node, start);
    range.setEnd(node, start + length);
    const r = range.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};
  };
  const at = text.indexOf(number), unitAt = text.indexOf(unit);
  if (at < 0 || unitAt < 0) return {text: text, unitName: unit};
  return {text: text, unitName: unit, number: box(at, number.length),
          unit: box(unitAt, unit.length)};
}"""


@pytest.mark.parametrize("code", ["ug", "ar", "fa"])
def test_the_progress_line_keeps_the_unit_beside_its_number_right_to_left(
        browser: Browser, server: Server, tmp_path: Path, code: str) -> None:
    """In a right-to-left paragraph the filled-in numbers once pulled "MB" away from the total
    and after the percentage. Measured in the rendered line, not in the DOM string."""
    folder = tmp_path / "chosen"
    folder.mkdir()
    (folder / BIG[0]).write_bytes(os.urandom(BIG[1]))
    context, run = _open(browser, f"progress-{code}", javascript=True)
    try:
        page = run.page
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        _throttle(cdp)
        page.goto(f"{server.url}/?l={code}")
        page.locator("form[action$='/generate'] button").click()
        page.locator("main a.button.primary").click()
        page.wait_for_url("**/submit")
        page.wait_for_function("() => window.tus && window.tus.isSupported")
        page.set_input_files("#files", [str(folder / BIG[0])])
        page.locator("#send-button").click()
        page.wait_for_function(
            "() => document.querySelector('#upload-list progress').value >= 5")
        amount = page.locator("#upload-list .upload-amount").first
        measured = amount.evaluate(MEASURE_TOTAL, f"{BIG[1] / 1e6:.1f}")
        run.screenshot("sending")
        assert "number" in measured, measured["text"]
        number, unit = measured["number"], measured["unit"]
        assert page.locator("html").get_attribute("dir") == "rtl"
        # One line, and nothing between the number and its unit but the space.
        assert abs(number["top"] - unit["top"]) < 2, measured
        gap = max(unit["left"] - number["right"], number["left"] - unit["right"])
        assert 0 <= gap < 8, measured
        assert "%" in measured["text"], measured["text"]
        assert "{" not in measured["text"], measured["text"]
    finally:
        context.close()
    assert run.errors == []


def test_skip_or_fail_rule_is_ci_aware(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CI a missing browser fails the run instead of skipping silently."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        _unavailable("no browser")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _unavailable("no browser")
