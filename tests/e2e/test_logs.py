"""What a real server logs: a source's whole visit leaves nothing about the source in the log
(no address, browser, referrer, codename, filename, message or path visited)."""

from __future__ import annotations

from desk.services import Services
from tests.harness.forms import csrf_token
from tests.harness.http import HttpBrowser
from tests.harness.servers import Server

MARK_UA = "Mozilla/5.0 (UA-MARKER-7d1e)"
MARK_REFERRER = "http://referrer-marker-3b9a.example/page"
MARK_FORWARDED = "203.0.113.77"


def test_a_full_source_flow_leaves_nothing_about_the_source_in_the_logs(
        server: Server, desk: Services) -> None:
    source = HttpBrowser(server.url)
    browser = source.http
    browser.headers.update({"User-Agent": MARK_UA, "Referer": MARK_REFERRER,
                            "X-Forwarded-For": MARK_FORWARDED})
    url = server.url
    codename = source.get_codename(timeout=60)
    token = source.form_token()
    sent = browser.post(f"{url}/submit", data={
        "csrf_token": token, "message": "a message for the logs test"}, files={
        "files": ("evidence-name-5e2c.mp4", b"\x00" * 5000, "video/mp4")}, timeout=60)
    assert sent.status_code == 200
    assert browser.get(f"{url}/no/such/page", timeout=30).status_code == 404
    assert browser.post(f"{url}/generate", data={"csrf_token": "stale"},
                        timeout=30).status_code == 400
    token = csrf_token(browser.get(f"{url}/submit", timeout=30).text)
    assert browser.post(f"{url}/logout", data={"csrf_token": token},
                        timeout=30).status_code == 200
    token = csrf_token(browser.get(f"{url}/login", timeout=30).text)
    back = browser.post(f"{url}/login", data={"csrf_token": token,
                                              "codename": codename}, timeout=60)
    assert back.status_code == 200
    wrong = browser.post(f"{url}/login", data={
        "csrf_token": csrf_token(browser.get(f"{url}/login", timeout=30).text),
        "codename": "wrong words typed by a source"}, timeout=60)
    assert wrong.status_code == 401

    server.process.terminate()
    server.process.wait(timeout=30)
    log = server.log.read_text(errors="replace")
    # Every Tor client is 127.0.0.1, so the forwarded address stands in for a source's.
    for marker in (MARK_UA, "UA-MARKER", "referrer-marker", MARK_FORWARDED,
                   codename, "wrong words typed", "evidence-name-5e2c",
                   "a message for the logs test", "/generate", "/submit", "/login"):
        assert marker not in log, marker
