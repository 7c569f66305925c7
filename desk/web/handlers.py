"""One table from errors to pages: what a source or journalist sees when something fails."""

from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from desk.errors import N_, DeskError, NoSpace, is_disk_full
from desk.web.context import discard_unread_body, report_no_space


def register(app: Flask) -> None:
    """Send every error the desk knows to its page."""
    app.register_error_handler(DeskError, _desk_error)
    # A full disk reaches a view as ENOSPC from a write or SQLite's "database or disk is full".
    app.register_error_handler(OSError, _storage_error)
    app.register_error_handler(OperationalError, _storage_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)


def _error_page(status: int, message: str) -> tuple[str, int]:
    discard_unread_body()
    return render_template("errors/error.html", status=status, message=message), status


def _desk_error(error: DeskError) -> tuple[str, int]:
    if isinstance(error, NoSpace):
        report_no_space(error)
    return _error_page(error.status, error.source_message)


def _storage_error(error: Exception) -> tuple[str, int]:
    """507 for a full disk; anything else goes on to the 500 handler, logged as before."""
    if not is_disk_full(error):
        raise error
    return _desk_error(NoSpace())


def _csrf_error(_error: CSRFError) -> tuple[str, int]:
    return _error_page(400, N_("This page has expired. Please go back, reload it and try again."))


def _http_error(error: HTTPException) -> tuple[str, int]:
    status = error.code or 500
    # What no view handler saw, such as saving the session on a full disk.
    if status == 500 and is_disk_full(getattr(error, "original_exception", None)):
        return _desk_error(NoSpace())
    messages = {
        404: N_("There is nothing here."),
        405: N_("There is nothing here."),
        413: N_("That was more than this desk accepts at once, so nothing was kept. "
                "Please send fewer or smaller files at a time."),
        429: N_("Too many attempts right now. Please wait a minute, then try again."),
    }
    return _error_page(status, messages.get(status, N_("Something went wrong. Nothing was kept.")))
