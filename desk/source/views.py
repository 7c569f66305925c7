"""Source views. Every message a source sees is calm and reveals nothing about the desk's state."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_wtf.csrf import validate_csrf
from werkzeug.wrappers import Response
from wtforms import ValidationError

from crypto.codename import generate_codename
from desk.app import db_session, services
from desk.errors import BadSubmission, EmptySubmission, NotAcceptingSubmissions
from desk.ingest import ObjectWriter, ingest_form
from desk.instance import load_instance
from desk.models import Source
from desk.submissions import create_source, record_submission
from desk.tus import OWNER_FIELD, new_owner_secret

blueprint = Blueprint("source", __name__)


def refuse_without_keys() -> None:
    """With no valid journalist key every page says so, before any request body is read.

    Registered on the app ahead of CSRFProtect, whose check would read the form first.
    """
    if request.endpoint != "static" and not services().recipients.current():
        raise NotAcceptingSubmissions()


def apply_upload_limit() -> None:
    """The admins' upload limit, if they set one, else DESK_MAX_UPLOAD_BYTES."""
    limit = load_instance(db_session()).max_upload_bytes
    if limit is not None:
        request.max_content_length = limit


@blueprint.get("/")
def index() -> str:
    """Landing page: safety guidance and the button that makes a codename."""
    return render_template("source/index.html")


@blueprint.post("/generate")
def generate() -> str:
    """Make a codename, store only its Argon2id lookup id, and show it once."""
    db = db_session()
    codename = generate_codename()
    source = create_source(db, codename, services().config.kdf)
    db.commit()
    session.clear()
    session["source"] = source.id
    # Made now, so a tus client given this cookie once keeps a cookie that owns its uploads.
    session[OWNER_FIELD] = new_owner_secret()
    # Rendered in the POST response, never redirected to: the codename is in no URL or cookie.
    return render_template("source/codename.html", codename=codename.reveal())


@blueprint.get("/submit")
def submit_form() -> Response | str:
    """The message and files form."""
    if _current_source() is None:
        return redirect(url_for("source.index"))
    session.setdefault(OWNER_FIELD, new_owner_secret())
    return render_template("source/submit.html", max_upload=request.max_content_length)


@blueprint.post("/submit")
def submit() -> Response | str:
    """Stream the form's message and files into gpg, then store them all or none."""
    source = _current_source()
    if source is None:
        raise BadSubmission("no source session")
    # End the read transaction now: an upload can take hours, and an open snapshot would
    # hold back the WAL checkpoint all that time.
    db_session().commit()
    if request.mimetype != "multipart/form-data" or "boundary" not in request.mimetype_params:
        raise BadSubmission("not a multipart form")
    writer = ObjectWriter(services().store, services().gpg, services().recipients.current())
    # Read the body ourselves: request.files would spool file parts to a plaintext temp file.
    staged = ingest_form(request.stream, request.mimetype_params["boundary"], writer, _check_csrf)
    if not staged:
        raise EmptySubmission()
    with services().writers() as writer:
        record_submission(writer, services().store, services().signing_key, source.id, staged)
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
