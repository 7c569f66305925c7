"""New codenames and logins are not a free lever: the desk caps the codenames made in a day
and not yet used, and refuses derivations at once rather than queue them past a second."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import func, select

from crypto.kdf import PRODUCTION_KDF
from desk.app import create_app
from desk.records.models import Item, Source
from desk.services import Services
from desk.web.source import views as source_views
from desk.web.source.login import too_many_unused
from desk.web.source.views import DERIVATIONS, GENERATE_COST, GENERATE_THROTTLE, THROTTLE
from desk.web.throttle import DerivationGate, Limits, LoginThrottle
from tests.harness.forms import csrf_token
from tests.harness.web import SourceBrowser

BUSY = "Too many attempts right now. Please wait a minute, then try again."


def sources(desk: Services) -> int:
    with desk.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(Source)) or 0)


def test_codenames_beyond_the_days_unused_cap_get_the_calm_answer_and_no_row(
        desk: Services) -> None:
    capped = dataclasses.replace(desk, config=dataclasses.replace(
        desk.config, unused_codenames_per_day=2))
    app = create_app(capped.config, "source", services=capped)
    for _ in range(2):
        SourceBrowser(app.test_client()).get_codename()
    assert sources(desk) == 2
    client = app.test_client()
    page = client.post("/generate", data={"csrf_token": csrf_token(client.get("/").text)})
    assert page.status_code == 429
    assert BUSY in page.text
    assert 'id="codename"' not in page.text
    assert sources(desk) == 2
    # A codename used for a sending no longer counts against the cap.
    with desk.sessions() as db:
        first = db.scalars(select(Source)).first()
    assert first is not None
    with desk.transaction() as db:
        db.add(Item(id="9" * 32, source_id=first.id, kind="message", ciphertext_size=1,
                    ciphertext_sha256="0" * 64, part_count=1, received_on=first.created_on))
    SourceBrowser(app.test_client()).get_codename()
    assert sources(desk) == 3


def test_a_codename_the_gate_refuses_costs_no_count_of_the_cap(
        desk: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a burst most new codenames are refused: before the cap's query, not after it."""
    app = create_app(desk.config, "source", services=desk)
    gate = DerivationGate(pace=lambda: 10.0)  # one request at a time
    app.extensions[DERIVATIONS] = gate
    counted: list[Services] = []

    def counting(services: Services) -> bool:
        counted.append(services)
        return too_many_unused(services)

    monkeypatch.setattr(source_views, "too_many_unused", counting)
    client = app.test_client()
    token = csrf_token(client.get("/").text)
    assert gate.try_admit(GENERATE_COST)  # a derivation under way
    refused = client.post("/generate", data={"csrf_token": token})
    assert refused.status_code == 429
    assert BUSY in refused.text
    assert counted == []
    gate.release(GENERATE_COST)
    assert client.post("/generate", data={"csrf_token": token}).status_code == 200
    assert len(counted) == 1
    assert gate.expected_wait() == 0
    assert sources(desk) == 1


def burst_app(desk: Services) -> Flask:
    """The source app with real (production) derivations and throttles that let a burst
    through, so only the derivation gate stands between the burst and the pages."""
    real = dataclasses.replace(desk, config=dataclasses.replace(desk.config, kdf=PRODUCTION_KDF))
    app = create_app(real.config, "source", services=real)
    roomy = Limits(desk_capacity=1000, session_capacity=1000)
    app.extensions[THROTTLE] = LoginThrottle(roomy)
    app.extensions[GENERATE_THROTTLE] = LoginThrottle(roomy)
    return app


def test_a_burst_of_codenames_and_logins_is_refused_rather_than_queued(desk: Services) -> None:
    app = burst_app(desk)
    gate: DerivationGate = app.extensions[DERIVATIONS]
    done = threading.Event()
    page_waits: list[float] = []

    def pages() -> None:
        client = app.test_client()
        while not done.is_set():
            started = time.monotonic()
            assert client.get("/").status_code == 200
            page_waits.append(time.monotonic() - started)
            time.sleep(0.05)

    def generate(_: int) -> int:
        client = app.test_client()
        token = csrf_token(client.get("/").text)
        return client.post("/generate", data={"csrf_token": token}).status_code

    def log_in(_: int) -> int:
        client = app.test_client()
        token = csrf_token(client.get("/login").text)
        return client.post("/login", data={"csrf_token": token,
                                           "codename": "not a codename at all"}).status_code

    watcher = threading.Thread(target=pages)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=48) as pool:
            made = list(pool.map(generate, range(12)))
            tried = list(pool.map(log_in, range(12)))
            mixed = list(pool.map(lambda i: (generate if i % 2 else log_in)(i), range(24)))
    finally:
        done.set()
        watcher.join()
    answers = made + tried + mixed
    assert set(answers) <= {200, 401, 429}
    # Refused at once instead of queued: some were turned away, some got through, and the
    # queue never held more than the budget's worth of derivations.
    assert 429 in answers
    assert {200, 401} & set(answers)
    assert gate.refused == answers.count(429)
    assert gate.peak <= 2 + gate.budget / 0.05  # a real derivation takes far more than 50 ms
    assert gate.expected_wait() == 0
    assert sources(desk) == answers.count(200)
    # Pages kept answering all along (loosely timed: a loaded 2-core machine is slow).
    assert page_waits
    assert max(page_waits) < 5, max(page_waits)
