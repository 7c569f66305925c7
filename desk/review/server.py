"""`desk-review serve`: a local viewer on 127.0.0.1 for people who prefer a browser.

It listens on a random port and answers only under a random token in the URL, so another
user or a web page on the same machine cannot read the evidence. It shows the item list,
message text, previews of decrypted items, contact sheets and the metadata report with the
identifying section highlighted. It never decrypts by itself: it shows what `open` made.
"""

from __future__ import annotations

import base64
import logging
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound
from werkzeug.routing import Map, MapAdapter, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.test import Client
from werkzeug.utils import send_file, send_from_directory
from werkzeug.wrappers import Request, Response

from crypto.gpg import GnuPG
from crypto.names import VIEW_SCRATCH_PREFIX
from desk.paths import TEMPLATES
from desk.review.decrypt import decrypted_copy, open_item
from desk.review.errors import ReviewError
from desk.review.index import Item
from desk.review.inert import html_value
from desk.review.inspect import inspect_file
from desk.review.publish import is_still_image
from desk.review.sheet import contact_sheet
from desk.review.workspace import Workspace, log_action

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

STATIC = Path(__file__).parent.parent / "static"
PREVIEW_TYPES = ("video/", "image/", "audio/")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; media-src 'self'; "
                               "style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}

log = logging.getLogger("desk-review")


class Viewer:
    """The viewer as a WSGI application, on Werkzeug alone (the offline machine has no Flask):
    every route lives under /<token>/ and every answer, errors included, carries HEADERS."""

    def __init__(self, workspace: Workspace, gpg: GnuPG | None, token: str) -> None:
        self.workspace, self.gpg, self.token = workspace, gpg, token
        # GET (and so HEAD) on each; OPTIONS says which methods a URL takes.
        self.urls = Map([Rule(rule, endpoint=endpoint, methods=["GET", "OPTIONS"])
                         for rule, endpoint in ((f"/{token}/", "items"),
                                                (f"/{token}/items/<item_id>", "item"),
                                                (f"/{token}/items/<item_id>/file", "original"),
                                                (f"/{token}/static/<path:filename>", "static"))])
        # Autoescaping stops HTML in names and messages; finalize stops their control
        # characters.
        self.templates = Environment(loader=FileSystemLoader(TEMPLATES / "review"),
                                     autoescape=True, finalize=html_value)

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        urls = self.urls.bind_to_environ(environ)
        try:
            endpoint, args = urls.match()
            if request.method == "OPTIONS":
                response = Response(mimetype="text/html")
                response.allow.update(urls.allowed_methods())
            else:
                response = getattr(self, endpoint)(request, urls, **args)
        except HTTPException as exc:  # not found, a slash to add, a range past the end...
            response = exc.get_response(environ)
        except Exception:  # a bug or a failed decryption: the traceback here, a plain 500 there
            log.exception("Exception on %s [%s]", request.path, request.method)
            response = InternalServerError().get_response(environ)
        response.headers.update(HEADERS)
        return response(environ, start_response)

    def test_client(self) -> Client:
        """Werkzeug's test client on the viewer, no server between."""
        return Client(self)

    def _page(self, urls: MapAdapter, template: str, **context: object) -> Response:
        """A template rendered as HTML. The templates use `token` and `url_for` (for the
        stylesheet), nothing else from outside their context."""
        def url_for(endpoint: str, **values: object) -> str:
            return urls.build(endpoint, values)

        html = self.templates.get_template(template).render(url_for=url_for, token=self.token,
                                                            **context)
        return Response(html, mimetype="text/html")

    def items(self, _request: Request, urls: MapAdapter) -> Response:
        with self.workspace.session() as session:
            rows = list(session.scalars(select(Item).order_by(Item.source, Item.received_at)))
        return self._page(urls, "viewer_list.html", items=rows)

    def item(self, _request: Request, urls: MapAdapter, item_id: str) -> Response:
        workspace = self.workspace
        record = _item(workspace, item_id)
        text = None
        if record.kind == "message" and self.gpg is not None:
            text = open_item(workspace, self.gpg, record.id).text
        path = decrypted_copy(record)
        report = sheet = refused = None
        if path is not None:
            staging = workspace.staging
            try:
                report = inspect_file(path, staging)
            except ReviewError as exc:  # a file the tools refuse: said on the page
                refused = str(exc)
            sheet = _sheet(path, record, staging)
            with workspace.session() as session:
                log_action(session, record.id, "view",
                           findings=None if report is None else len(report.findings),
                           refused=refused)
        preview = path is not None and (
            (record.content_type or "").startswith(PREVIEW_TYPES) or is_still_image(path))
        return self._page(urls, "viewer_item.html", item=record, text=text, report=report,
                          sheet=sheet, preview=preview, refused=refused)

    def original(self, request: Request, _urls: MapAdapter, item_id: str) -> Response:
        record = _item(self.workspace, item_id)
        # Checked by size here (every seek of a video asks again); the item page checked its
        # SHA-256.
        path = decrypted_copy(record, check_digest=False)
        if path is None:
            raise NotFound()
        # Shown inline for preview, never offered under its original name (send_file would
        # name the decrypted copy in Content-Disposition); streamed, and answering ranges so a
        # video seeks.
        response = send_file(path, request.environ, mimetype=_media_type(record),
                             conditional=True, etag=False)
        del response.headers["Content-Disposition"]
        return response

    def static(self, request: Request, _urls: MapAdapter, filename: str) -> Response:
        return send_from_directory(STATIC, filename, request.environ)


def create_viewer(workspace: Workspace, gpg: GnuPG | None, token: str) -> Viewer:
    """The viewer app; every route lives under /<token>/."""
    return Viewer(workspace, gpg, token)


def _item(workspace: Workspace, item_id: str) -> Item:
    try:
        with workspace.session() as session:
            return workspace.item(session, item_id)
    except ReviewError:
        raise NotFound() from None


def _media_type(item: Item) -> str:
    declared = item.content_type or ""
    return declared if declared.startswith(PREVIEW_TYPES) else "application/octet-stream"


def _sheet(path: Path, item: Item, staging: Path) -> str | None:
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=VIEW_SCRATCH_PREFIX, dir=staging) as work:
        out = Path(work) / "sheet.png"
        try:
            contact_sheet(path, out, is_image=is_still_image(path), scratch=staging)
        except ReviewError:
            return None
        return base64.b64encode(out.read_bytes()).decode("ascii")


def start_viewer(workspace: Workspace, gpg: GnuPG | None) -> tuple[BaseWSGIServer, str]:
    """A server on 127.0.0.1 at a random port, and the URL with its random token."""
    token = secrets.token_urlsafe(24)
    server = make_server("127.0.0.1", 0, create_viewer(workspace, gpg, token), threaded=True)
    return server, f"http://127.0.0.1:{server.server_port}/{token}/"
