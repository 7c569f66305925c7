"""What a view reaches through the request context: the desk's services, the request's
database session, and the body it may have to drain."""

from __future__ import annotations

import contextlib

from flask import Flask, Response, current_app, g, request
from sqlalchemy.orm import Session

from desk.errors import QuotaReached
from desk.records.db import read_only_session, scrub_pending
from desk.services import Services

DISCARD_CHUNK = 1 << 20


def services() -> Services:
    """The desk's services for the current app."""
    desk: Services = current_app.extensions["desk"]
    return desk


def db_session() -> Session:
    """The request's database session: read-only, opened on first use, closed at teardown.

    A view changes rows only inside `services().transaction()`, its own short writer
    transaction, so no view can hold SQLite's write lock across gpg or an upload.
    """
    if "db" not in g:
        g.db = read_only_session(services().sessions)
    db: Session = g.db
    return db


def end_reads() -> None:
    """End the request session's read transaction before slow work: an open snapshot would
    hold back the WAL checkpoint, and its pooled connection be out of everyone's reach, for as
    long as an upload takes.

    What the view read stays as it was read, detached: the rollback would otherwise expire it,
    and the first attribute the upload then touched would open a new transaction, holding a
    connection until the request ends (a few slow uploads took every pooled connection and
    every other request failed).
    """
    session = g.get("db")
    if session is not None:
        session.expunge_all()
        session.rollback()


def end_db_transaction(response: Response) -> Response:
    """End the request's read transaction before Flask saves the session."""
    end_reads()
    return response


def close_db_session(_exc: BaseException | None) -> None:
    """Close the request's database session at teardown, then, if the request deleted rows,
    empty the write-ahead log of their old images before the answer goes out."""
    session = g.pop("db", None)
    if session is not None:
        session.close()
    scrub_pending()


def discard_unread_body() -> None:
    """Read and drop what is left of the request body.

    Answering before the body is read makes gunicorn close the socket under a client that is
    still sending, and the browser shows a reset connection instead of our page. Nothing read
    here is kept.
    """
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return
    # Whatever the server's reader raises on a malformed body (gunicorn's InvalidChunkSize,
    # a reset connection), the answer is still the error page already chosen.
    with contextlib.suppress(Exception):
        while stream.read(DISCARD_CHUNK):
            pass


def report_no_space(error: BaseException | None = None) -> None:
    """Tell the operator, in one line without request data, that the disk is full or which
    quota was reached."""
    if isinstance(error, QuotaReached):
        current_app.logger.warning("refused a write (507): %s; nothing was kept", error)
        return
    current_app.logger.warning(
        "refused a write (507): the disk holding the desk's data is full; nothing was kept, "
        "and the desk works again as soon as space is freed")


def install(app: Flask, services: Services) -> None:
    """Put `services` on `app` and end each request's database session with the request."""
    app.extensions["desk"] = services
    app.after_request(end_db_transaction)
    app.teardown_appcontext(close_db_session)
