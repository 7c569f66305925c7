"""`desk-review serve`: a local viewer on 127.0.0.1 for people who prefer a browser.

It listens on a random port and answers only under a random token in the URL, so another
user or a web page on the same machine cannot read the evidence. It shows the item list,
message text, previews of decrypted items, contact sheets and the metadata report with the
identifying section highlighted. It never decrypts by itself: it shows what `open` made.
"""

from __future__ import annotations

import base64
import secrets
import tempfile
from pathlib import Path

from flask import Flask, Response, abort, render_template, send_file
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, make_server

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

PREVIEW_TYPES = ("video/", "image/", "audio/")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; media-src 'self'; "
                               "style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def create_viewer(workspace: Workspace, gpg: GnuPG | None, token: str) -> Flask:
    """The viewer app; every route lives under /<token>/."""
    app = Flask("desk-review", template_folder=str(TEMPLATES / "review"),
                static_folder=str(Path(__file__).parent.parent / "static"),
                static_url_path=f"/{token}/static")
    # Autoescaping stops HTML in names and messages; this stops their control characters.
    app.jinja_env.finalize = html_value

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.update(HEADERS)
        return response

    @app.get(f"/{token}/")
    def items() -> str:
        with workspace.session() as session:
            rows = list(session.scalars(select(Item).order_by(Item.source, Item.received_at)))
        return render_template("viewer_list.html", items=rows, token=token)

    @app.get(f"/{token}/items/<item_id>")
    def item(item_id: str) -> str:
        record = _item(workspace, item_id)
        text = None
        if record.kind == "message" and gpg is not None:
            text = open_item(workspace, gpg, record.id).text
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
        return render_template("viewer_item.html", item=record, text=text, report=report,
                               sheet=sheet, preview=preview, refused=refused, token=token)

    @app.get(f"/{token}/items/<item_id>/file")
    def original(item_id: str) -> Response:
        record = _item(workspace, item_id)
        # Checked by size here (every seek of a video asks again); the item page checked its
        # SHA-256.
        path = decrypted_copy(record, check_digest=False)
        if path is None:
            abort(404)
        # Shown inline for preview, never offered under its original name.
        return send_file(path, mimetype=_media_type(record),
                         conditional=True, etag=False)

    return app


def _item(workspace: Workspace, item_id: str) -> Item:
    try:
        with workspace.session() as session:
            return workspace.item(session, item_id)
    except ReviewError:
        abort(404)


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
