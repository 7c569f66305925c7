"""Views read through a read-only request session and change rows only in short writer
transactions of their own, so nothing holds SQLite's write lock while a body streams in."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, update
from typing_extensions import Buffer

from desk.records.db import ReadOnlySession, read_only_session
from desk.records.models import Source
from desk.services import Services
from desk.web.context import db_session
from tests.harness.forms import FormBody
from tests.harness.web import SourceBrowser


def _write_lock_is_free(database: Path) -> bool:
    """Whether another connection can take the write lock at once (no waiting)."""
    connection = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()
    return True


def test_the_request_session_refuses_every_change(app: Flask,
                                                   source: SourceBrowser) -> None:
    with app.test_request_context("/submit", method="POST"):
        db = db_session()
        found = db.scalars(select(Source)).one()
        found.starred = True
        with pytest.raises(ReadOnlySession):
            db.flush()
        db.rollback()
        with pytest.raises(ReadOnlySession):
            db.execute(update(Source).values(starred=True))


def test_a_transaction_commits_at_its_end_and_rolls_back_on_error(
        desk: Services, source: SourceBrowser) -> None:
    with desk.transaction() as db:
        db.execute(update(Source).values(starred=True))
    def unstar_then_fail() -> None:
        with desk.transaction() as db:
            db.execute(update(Source).values(starred=False))
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        unstar_then_fail()
    with read_only_session(desk.sessions) as db:
        assert db.scalars(select(Source.starred)).all() == [True]


class _WatchedBody(io.BytesIO):
    """A request body that checks the database's write lock each time the view reads it."""

    def __init__(self, data: bytes, database: Path) -> None:
        super().__init__(data)
        self.size, self.database = len(data), database
        self.lock_free_while_reading: list[bool] = []

    def _watch(self) -> None:
        if 0 < self.tell() < self.size:
            self.lock_free_while_reading.append(_write_lock_is_free(self.database))

    def read(self, size: int | None = -1) -> bytes:
        self._watch()
        return super().read(size)

    def read1(self, size: int | None = -1) -> bytes:
        self._watch()
        return super().read1(size)

    def readinto(self, buffer: Buffer) -> int:
        self._watch()
        return super().readinto(buffer)


def test_no_write_lock_is_held_while_a_form_streams_in(desk: Services,
                                                       source: SourceBrowser) -> None:
    body = FormBody().field("csrf_token", source.form_token()).field("message", "hello")
    body.file("clip.mp4", bytes(8 << 20))
    watched = _WatchedBody(body.encode(), desk.config.data_dir / "desk.db")
    response = source.client.post("/submit", input_stream=watched,
                                  content_type=body.content_type,
                                  content_length=watched.size)
    assert response.status_code == 200, response.text
    assert len(watched.lock_free_while_reading) > 4
    assert all(watched.lock_free_while_reading)
