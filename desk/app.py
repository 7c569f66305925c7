"""The Flask application factory: one app per interface, sharing the desk's services."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import IO, Literal

from flask import Flask, Request, Response, current_app, g, render_template, request
from flask_babel import ngettext
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from werkzeug.exceptions import BadRequest, HTTPException

from desk.config import Config
from desk.errors import N_, DeskError, NoSpace, is_disk_full
from desk.i18n import init_babel
from desk.instance import read_secret_key
from desk.paths import TEMPLATES
from desk.services import Services, open_services

Interface = Literal["source", "journalist"]


# A form may be opened long before a multi-hour upload is sent; the token is checked as soon as
# the body starts arriving, so a day is generous without being forever.
CSRF_TOKEN_SECONDS = 24 * 3600

DISCARD_CHUNK = 1 << 20
# Journalists post forms and public keys, never footage.
JOURNALIST_MAX_BODY = 2 * 1024 * 1024

# Every powerful feature a browser could grant a page, denied: the desk needs none of them.
DENIED_FEATURES = (
    "accelerometer", "ambient-light-sensor", "attribution-reporting", "autoplay", "battery",
    "bluetooth", "browsing-topics", "camera", "clipboard-read", "clipboard-write",
    "compute-pressure", "display-capture", "document-domain", "encrypted-media",
    "fullscreen", "gamepad", "geolocation", "gyroscope", "hid", "identity-credentials-get",
    "idle-detection", "interest-cohort", "join-ad-interest-group", "keyboard-map",
    "local-fonts", "magnetometer", "microphone", "midi", "otp-credentials", "payment",
    "picture-in-picture", "publickey-credentials-create", "publickey-credentials-get",
    "run-ad-auction", "screen-wake-lock", "serial", "speaker-selection",
    "storage-access", "usb", "web-share", "window-management", "xr-spatial-tracking",
)

SECURITY_HEADERS = {
    # Scripts only from the desk itself (the optional resumable-upload enhancement), and
    # connections only back to it.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
                               "style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Permissions-Policy": ", ".join(f"{feature}=()" for feature in DENIED_FEATURES),
}


class SourceRequest(Request):
    """A request that refuses to spool an uploaded file anywhere.

    Werkzeug's default stream factory writes any file part over 500 KiB to a plaintext temp
    file. Only `ingest_form` reads uploads, streaming them into gpg; if anything else ever
    parses a file part (request.files, request.form on a multipart body), it fails loudly here.
    """

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None,
                         ) -> IO[bytes]:
        raise BadRequest("file parts are only accepted by the submit form")


class JournalistRequest(Request):
    """A request whose small file uploads (public keys) stay in memory, never on disk."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None,
                         ) -> IO[bytes]:
        return io.BytesIO()


def create_app(config: Config, interface: Interface = "source",
               services: Services | None = None) -> Flask:
    """Build the Flask app for `interface` on an initialised desk."""
    app = Flask("desk", template_folder=str(TEMPLATES),
                static_folder=str(Path(__file__).parent / "static"))
    services = services or open_services(config)
    app.extensions["desk"] = services
    app.config.update(
        SECRET_KEY=read_secret_key(config),
        SESSION_COOKIE_NAME=f"desk_{interface}",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_PERMANENT=False,
    )
    init_babel(app, interface)
    app.add_template_filter(human_size, "size")
    if interface == "source":
        _source_interface(app, config, services)
    else:
        _journalist_interface(app, services)
    app.after_request(_end_db_transaction)
    app.teardown_appcontext(_close_db_session)
    app.after_request(_security_headers)
    app.register_error_handler(DeskError, _desk_error)
    # A full disk reaches a view as ENOSPC from a write or SQLite's "database or disk is full".
    app.register_error_handler(OSError, _storage_error)
    app.register_error_handler(OperationalError, _storage_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    return app


def human_size(size: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as people read them)."""
    if size < 1000:
        return str(ngettext("%(num)d byte", "%(num)d bytes", size))
    value = float(size)
    for unit in ("KB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def _source_interface(app: Flask, config: Config, services: Services) -> None:
    from desk.models import SourceSession
    from desk.sessions import DatabaseSessionInterface
    from desk.source import blueprint, uploads, views
    from desk.throttle import LoginThrottle

    app.request_class = SourceRequest
    # Sealed under the cookie's token: the row does not say whose session it is, nor its
    # language, nor anything else it holds.
    app.session_interface = DatabaseSessionInterface(SourceSession, None, services.sessions,
                                                     services.writers, sealed=True)
    app.extensions[views.THROTTLE] = LoginThrottle()
    app.extensions[views.GENERATE_THROTTLE] = LoginThrottle()
    app.config.update(MAX_CONTENT_LENGTH=config.max_upload_bytes,
                      WTF_CSRF_TIME_LIMIT=CSRF_TOKEN_SECONDS)
    # Ahead of CSRFProtect's hook, which would read a refused request's form first.
    app.before_request(views.refuse_without_keys)
    app.before_request(views.apply_upload_limit)
    app.register_blueprint(blueprint)
    app.register_blueprint(uploads.blueprint)
    # CSRFProtect would parse the whole body with request.form; the submit view checks the
    # token itself as the first field streams in.
    CSRFProtect(app).exempt("desk.source.views.submit")


def _journalist_interface(app: Flask, services: Services) -> None:
    from desk.journalist import admin_blueprint, blueprint
    from desk.models import JournalistSession
    from desk.sessions import DatabaseSessionInterface

    app.request_class = JournalistRequest
    app.config.update(MAX_CONTENT_LENGTH=JOURNALIST_MAX_BODY)
    app.session_interface = DatabaseSessionInterface(JournalistSession, "journalist_id",
                                                     services.sessions, services.writers)
    app.register_blueprint(blueprint)
    app.register_blueprint(admin_blueprint)
    CSRFProtect(app)


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


def _end_db_transaction(response: Response) -> Response:
    # Views commit what they change. Ending the transaction here, before Flask saves the
    # session, releases a POST's write lock so the session save does not wait on it.
    session = g.get("db")
    if session is not None:
        session.rollback()
    return response


def _close_db_session(_exc: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def _security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    # Nothing that tells a version, and no validators on pages made for one request.
    response.headers.pop("Server", None)
    if request.endpoint != "static":
        response.headers.pop("ETag", None)
        response.headers.pop("Last-Modified", None)
    return response


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


def _error_page(status: int, message: str) -> tuple[str, int]:
    discard_unread_body()
    return render_template("errors/error.html", status=status, message=message), status


def report_no_space() -> None:
    """Tell the operator, in one line without request data, that the disk is full."""
    current_app.logger.warning(
        "refused a write (507): the disk holding the desk's data is full; nothing was kept, "
        "and the desk works again as soon as space is freed")


def _desk_error(error: DeskError) -> tuple[str, int]:
    if isinstance(error, NoSpace):
        report_no_space()
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
        413: N_("That was more than this desk accepts in one sending, so nothing was kept. "
                "Please send fewer or smaller files at a time."),
        429: N_("Too many attempts right now. Please wait a minute, then try again."),
    }
    return _error_page(status, messages.get(status, N_("Something went wrong. Nothing was kept.")))
