"""Source views. Every message a source sees is calm and reveals nothing about the desk's state."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_wtf.csrf import validate_csrf
from werkzeug.wrappers import Response
from wtforms import ValidationError

from crypto.codename import generate_codename, lookup_id
from desk.app import db_session
from desk.errors import BadSubmission, EmptySubmission, NotAcceptingSubmissions
from desk.ingest import ObjectWriter, StagedObject, ingest_form
from desk.instance import load_instance
from desk.models import Source, Submission
from desk.services import Services

blueprint = Blueprint("source", __name__)


def services() -> Services:
    """The desk's services for this app."""
    return current_app.extensions["desk"]  # type: ignore[no-any-return]


def refuse_without_keys() -> None:
    """With no valid journalist key every page says so, before any request body is read.

    Registered on the app ahead of CSRFProtect, whose check would read the form first.
    """
    if request.endpoint != "static" and not services().recipients.current():
        raise NotAcceptingSubmissions()


@blueprint.app_template_filter("size")
def human_size(size: int) -> str:
    """1234567 -> '1.2 MB'."""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


@blueprint.get("/")
def index() -> str:
    """Landing page: safety guidance and the button that makes a codename."""
    return render_template("source/index.html")


@blueprint.post("/generate")
def generate() -> str:
    """Make a codename, store only its Argon2id lookup id, and show it once."""
    db = db_session()
    codename = generate_codename()
    today = datetime.now(UTC).date()
    source = Source(id=secrets.token_hex(16),
                    lookup_id=lookup_id(codename, load_instance(db).lookup_salt,
                                        services().config.kdf),
                    created_on=today, last_activity_on=today)
    db.add(source)
    db.commit()
    session.clear()
    session["source"] = source.id
    # Rendered in the POST response, never redirected to: the codename is in no URL or cookie.
    return render_template("source/codename.html", codename=codename.reveal())


@blueprint.get("/submit")
def submit_form() -> Response | str:
    """The message and files form."""
    if _current_source() is None:
        return redirect(url_for("source.index"))
    return render_template("source/submit.html",
                           max_upload=current_app.config["MAX_CONTENT_LENGTH"])


@blueprint.post("/submit")
def submit() -> Response | str:
    """Stream the form's message and files into gpg, then store them all or none."""
    source = _current_source()
    if source is None:
        raise BadSubmission("no source session")
    if request.mimetype != "multipart/form-data" or "boundary" not in request.mimetype_params:
        raise BadSubmission("not a multipart form")
    writer = ObjectWriter(services().store, services().gpg, services().recipients.current())
    # Read the body ourselves: request.files would spool file parts to a plaintext temp file.
    staged = ingest_form(request.stream, request.mimetype_params["boundary"], writer, _check_csrf)
    if not staged:
        raise EmptySubmission()
    _publish(source, staged)
    return render_template("source/received.html",
                           files=[obj for obj in staged if obj.kind == "file"],
                           message_sent=any(obj.kind == "message" for obj in staged))


@blueprint.post("/logout")
def logout() -> Response:
    """Forget this browser's session."""
    session.clear()
    return redirect(url_for("source.index"))


def _current_source() -> Source | None:
    source_id = session.get("source")
    return None if source_id is None else db_session().get(Source, source_id)


def _check_csrf(token: str) -> None:
    try:
        validate_csrf(token)
    except ValidationError as exc:
        raise BadSubmission("CSRF token refused") from exc


def _publish(source: Source, staged: list[StagedObject]) -> None:
    """Publish every staged object, then commit their rows; undo everything on failure."""
    store, db = services().store, db_session()
    today = datetime.now(UTC).date()
    published: list[str] = []
    try:
        for obj in staged:
            store.publish(obj.staging, obj.object_id)
            published.append(obj.object_id)
            db.add(Submission(id=obj.object_id, source_id=source.id, kind=obj.kind,
                              ciphertext_size=obj.ciphertext_size, part_count=obj.part_count,
                              received_on=today))
        source.last_activity_on = today
        db.commit()
    except BaseException:
        db.rollback()
        for object_id in published:
            store.remove(object_id)
        for obj in staged[len(published):]:
            store.discard(obj.staging)
        raise
