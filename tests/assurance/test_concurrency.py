"""Many requests at once: no request fails because another one wrote to the database."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from flask.testing import FlaskClient

from desk.services import Services
from tests.harness.web import SourceBrowser, journalist_log_in


def test_journalist_pages_and_uploads_at_once_all_succeed(
        accounts: Services, journalist_app: Flask, source: SourceBrowser) -> None:
    clients: list[FlaskClient] = []
    for name in ("alice", "bob", "alice", "bob"):
        client = journalist_app.test_client()
        assert journalist_log_in(client, accounts, name).status_code == 302
        clients.append(client)
    source.send("first", (("a.mp4", b"a" * 1000),))

    def browse(client: FlaskClient) -> list[int]:
        statuses = []
        for n in range(15):
            statuses.append(client.get("/").status_code)
            if n % 5 == 0:  # writes from journalists: star and unstar
                page = client.get("/")
                token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
                source_id = page.text.split('href="/sources/', 1)[1].split('"', 1)[0]
                statuses.append(client.post(f"/sources/{source_id}/star", data={
                    "csrf_token": token, "starred": str(n % 2)}).status_code)
        return statuses

    def upload(n: int) -> int:
        return source.send(f"message {n}", ((f"clip{n}.mp4", bytes(2000)),)).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        browsing = [pool.submit(browse, client) for client in clients]
        uploads = [pool.submit(upload, n) for n in range(4)]
        statuses = [s for f in browsing for s in f.result()] + [f.result() for f in uploads]
    assert set(statuses) <= {200, 302}, sorted(set(statuses))
