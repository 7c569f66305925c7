"""The Flask application factory: one app per interface, sharing the desk's services."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from flask import Flask, Response, send_from_directory
from flask_wtf.csrf import CSRFProtect

from crypto.kdf import expected_seconds
from desk.config import Config
from desk.paths import TEMPLATES
from desk.records.instance import read_secret_key
from desk.records.models import JournalistSession, SourceSession
from desk.services import Services, open_services
from desk.web import context, handlers
from desk.web.headers import add_security_headers, local_routing_redirect
from desk.web.i18n import human_rate, human_size, init_babel, isolated
from desk.web.journalist import account_blueprint, admin_blueprint
from desk.web.journalist import blueprint as journalist_blueprint
from desk.web.requests import JournalistRequest, SourceRequest
from desk.web.sessions import DatabaseSessionInterface
from desk.web.source import blueprint as source_blueprint
from desk.web.source import tus_views, views
from desk.web.throttle import DerivationGate, LoginThrottle

Interface = Literal["source", "journalist"]

STATIC = Path(__file__).parent / "static"


# A form may be opened long before a multi-hour upload is sent; the token is checked as soon as
# the body starts arriving, so a day is generous without being forever.
CSRF_TOKEN_SECONDS = 24 * 3600

# Journalists post forms and public keys, never footage.
JOURNALIST_MAX_BODY = 2 * 1024 * 1024


def create_app(config: Config, interface: Interface = "source",
               services: Services | None = None) -> Flask:
    """Build the Flask app for `interface` on an initialised desk."""
    app = Flask("desk", template_folder=str(TEMPLATES), static_folder=str(STATIC))
    app.view_functions["static"] = _static_file
    app.before_request(local_routing_redirect)
    services = services or open_services(config)
    context.install(app, services)
    app.config.update(
        SECRET_KEY=read_secret_key(config),
        SESSION_COOKIE_NAME=f"desk_{interface}",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_PERMANENT=False,
    )
    init_babel(app, interface)
    app.add_template_filter(human_size, "size")
    app.add_template_filter(human_rate, "rate")
    app.add_template_filter(isolated, "isolated")
    if interface == "source":
        _source_interface(app, config, services)
    else:
        _journalist_interface(app, services)
    app.after_request(add_security_headers)
    handlers.register(app)
    return app


def _source_interface(app: Flask, config: Config, services: Services) -> None:
    app.request_class = SourceRequest
    # Sealed under the cookie's token: the row does not say whose session it is, nor its
    # language, nor anything else it holds.
    app.session_interface = DatabaseSessionInterface(SourceSession, None, services.sessions,
                                                     services.writers)
    app.extensions[views.THROTTLE] = LoginThrottle()
    app.extensions[views.GENERATE_THROTTLE] = LoginThrottle()
    app.extensions[views.DERIVATIONS] = DerivationGate(
        pace=lambda: expected_seconds(config.kdf))
    app.config.update(MAX_CONTENT_LENGTH=config.max_upload_bytes,
                      WTF_CSRF_TIME_LIMIT=CSRF_TOKEN_SECONDS)
    # Ahead of CSRFProtect's hook, which would read a refused request's form first.
    app.before_request(views.refuse_without_keys)
    app.before_request(views.apply_upload_limit)
    app.register_blueprint(source_blueprint)
    app.register_blueprint(tus_views.blueprint)
    # CSRFProtect would parse the whole body with request.form; the submit view checks the
    # token itself as the first field streams in.
    CSRFProtect(app).exempt("desk.web.source.views.submit")


def _journalist_interface(app: Flask, services: Services) -> None:
    app.request_class = JournalistRequest
    app.config.update(MAX_CONTENT_LENGTH=JOURNALIST_MAX_BODY)
    app.session_interface = DatabaseSessionInterface(JournalistSession, "journalist_id",
                                                     services.sessions, services.writers)
    app.register_blueprint(journalist_blueprint)
    app.register_blueprint(admin_blueprint)
    app.register_blueprint(account_blueprint)
    CSRFProtect(app)


def _static_file(filename: str) -> Response:
    """A file of desk/static, with no validators and no conditional answer: Last-Modified and
    the ETag Werkzeug makes of the file's mtime date the desk's install or last upgrade to the
    second, and so would a 304 to If-Modified-Since, or a Range honoured under If-Range. Every
    request gets the whole file, which is small and never cached (Cache-Control: no-store)."""
    return send_from_directory(STATIC, filename, etag=False, conditional=False)
