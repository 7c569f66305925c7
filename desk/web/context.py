"""What a view reaches through the request context: the desk's services, the request's
database session, and the body it may have to drain."""

from __future__ import annotations

import contextlib

from flask import Flask, Response, current_app, g, request
from sqlalchemy.orm import Session

from desk.services import Services

DISCARD_CHUNK = 1 << 20


def services() -> Services:
    """The desk's services for the current app."""
    return current_app.extensions["desk"]  # type: ignore[no-any-return]


def db_session() -> Session:
    """The request's database session, opened on first use and closed at teardown.

    POST requests change things, so their transactions take SQLite's write lock when they
    begin: a deferred transaction that reads and then writes fails at once ("database is
    locked") if another writer committed in between, and busy_timeout cannot help it.
    """
    if "db" not in g:
        desk = services()
        g.db = (desk.writers if request.method == "POST" else desk.sessions)()
    return g.db  # type: ignore[no-any-return]


def end_db_transaction(response: Response) -> Response:
    """End the request's transaction before Flask saves the session."""
    # Views commit what they change. Ending the transaction here, before Flask saves the
    # session, releases a POST's write lock so the session save does not wait on it.
    session = g.get("db")
    if session is not None:
        session.rollback()
    return response


def close_db_session(_exc: BaseException | None) -> None:
    """Close the request's database session at teardown."""
    session = g.pop("db", None)
    if session is not None:
        session.close()


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


def report_no_space() -> None:
    """Tell the operator, in one line without request data, that the disk is full."""
    current_app.logger.warning(
        "refused a write (507): the disk holding the desk's data is full; nothing was kept, "
        "and the desk works again as soon as space is freed")


def install(app: Flask, services: Services) -> None:
    """Put `services` on `app` and end each request's database session with the request."""
    app.extensions["desk"] = services
    app.after_request(end_db_transaction)
    app.teardown_appcontext(close_db_session)
