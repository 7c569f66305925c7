"""Source views. Every message a source sees is calm and reveals nothing about the desk's state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_wtf.csrf import validate_csrf
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import RequestEntityTooLarge, TooManyRequests
from werkzeug.wrappers import Response
from wtforms import ValidationError

from crypto.errors import FormatError
from crypto.reply import reply_text
from desk.errors import BadSending, EmptySending, NotAcceptingSubmissions
from desk.intake.ingest import ItemWriter, ingest_form
from desk.intake.tus import unfinished_uploads
from desk.records.db import is_busy
from desk.records.instance import load_instance
from desk.records.items import record_items
from desk.records.models import Source
from desk.records.quota import require_room
from desk.records.replies import delete_for_source, replies_for_source
from desk.storage.store import StagedItem
from desk.web.context import db_session, end_reads, services
from desk.web.sessions import server_session
from desk.web.source.login import (
    find_source,
    forget_session,
    new_source,
    session_reply_key,
    start_session,
    too_many_unused,
)
from desk.web.source.tus_views import session_owner_secret
from desk.web.throttle import DerivationGate, LoginThrottle

THROTTLE = "desk_login_throttle"
# Every derivation a request of this process may start goes through this gate.
DERIVATIONS = "desk_derivation_gate"
# A new codename costs two derivations; a login one, or two for a codename that is a source's
# (reserve two for every login: how many it needed must not change how it is treated).
GENERATE_COST = LOGIN_COST = 2
# New codenames have buckets of their own: guessing codenames must not stop new sources from
# getting one, nor a flood of new codenames stop sources from logging in.
GENERATE_THROTTLE = "desk_generate_throttle"

# Inodes a form post needs at least, checked before it is read: its staging folder, and a
# part and a metadata record for its first item.
FORM_INODES = 4
# How many times a form post's recording waits for the write lock (BUSY_TIMEOUT_MS each).
COMMIT_ATTEMPTS = 3
# The speeds, in bytes per second, a source may choose for sending slowly (upload.js), and
# the one chosen at first: 1, 2 and 4 Mbit/s. upload.js keeps to the cap over any minute, and
# its pieces must be at least 1 MiB (tus.MIN_PATCH_BYTES), which sets how low a cap can be.
SLOW_RATES = (125_000, 250_000, 500_000)
SLOW_RATE = 250_000

blueprint = Blueprint("source", __name__)


def refuse_without_keys() -> None:
    """With no valid journalist key every page says so, before any request body is read.

    Registered on the app ahead of CSRFProtect, whose check would read the form first.
    """
    if request.endpoint != "static" and not services().recipients.current():
        raise NotAcceptingSubmissions()


def apply_upload_limit() -> None:
    """The admins' upload limit, if they set one, else DESK_MAX_UPLOAD_BYTES.

    Read in a short read-only session: the request's own session, on a POST, would take
    SQLite's write lock here and hold it through the whole view.
    """
    with services().sessions() as reader:
        limit = load_instance(reader).max_upload_bytes
    if limit is not None:
        request.max_content_length = limit


@blueprint.get("/")
def index() -> str:
    """Landing page: safety guidance and the button that makes a codename."""
    return render_template("source/index.html")


@blueprint.post("/generate")
def generate() -> str:
    """Make a codename, store only its lookup id and reply public key, and show it once.

    Two derivations and a new row: throttled like a login, in buckets of its own. The gate
    comes before the cap, whose count is a query: in a burst most requests are refused, and
    they are refused before any database work of the view's own.
    """
    _throttle(GENERATE_THROTTLE)
    with _derivations(GENERATE_COST):
        if too_many_unused(services()):
            raise TooManyRequests()  # the cap of codenames not yet used: no derivation spent
        made = new_source(services())
    if made is None:
        raise TooManyRequests()
    codename, source, seed = made
    start_session(source, seed)
    # Rendered in the POST response, never redirected to: the codename is in no URL or cookie.
    return render_template("source/codename.html", codename=codename.reveal())


@blueprint.get("/login")
def login_form() -> str:
    """The "I have a codename" form."""
    return render_template("source/login.html")


@blueprint.post("/login")
def login() -> Response | tuple[str, int]:
    """Log in with a codename: one Argon2id derivation, the same answer for any codename that
    is not one, and a throttle for the whole desk and for each session."""
    typed = request.form.get("codename", "")
    if not typed.strip():
        return render_template("source/login.html", failed=True), 401
    _throttle(THROTTLE)
    with _derivations(LOGIN_COST):
        found = find_source(services(), typed)
    if found is None:
        return render_template("source/login.html", failed=True), 401
    source, seed = found
    start_session(source, seed)
    return redirect(url_for("source.submit_form"))


@dataclass(frozen=True)
class ShownReply:
    """A reply on the source's page: its text, or None if it cannot be opened."""

    id: str
    text: str | None


@blueprint.get("/submit")
def submit_form() -> Response | str:
    """Replies from the journalists, the codename's unfinished uploads, and the message and
    files form."""
    source = _current_source()
    if source is None:
        return redirect(url_for("source.index"))
    key = session_reply_key()
    shown = []
    for found in replies_for_source(db_session(), services().store, source.id):
        text = None
        if key is not None:
            try:
                text = reply_text(key.open(found.box))
            except FormatError:
                text = None
        shown.append(ShownReply(found.reply.id, text))
    secret = session_owner_secret()
    unfinished = [] if secret is None else unfinished_uploads(db_session(), source.id, secret)
    return render_template("source/submit.html", max_upload=request.max_content_length,
                           replies=shown, unfinished=unfinished, slow_rates=SLOW_RATES,
                           slow_rate=SLOW_RATE)


@blueprint.post("/replies/delete")
def delete_replies() -> Response:
    """Delete the chosen replies (their boxes), or all of them."""
    source = _current_source()
    if source is None:
        return redirect(url_for("source.index"))
    if request.form.get("all") == "1":
        ids = [found.reply.id for found in replies_for_source(db_session(), services().store,
                                                              source.id)]
    else:
        ids = request.form.getlist("reply")[:1000]
    with services().transaction() as db:
        delete_for_source(db, services().store, source.id, ids)
    return redirect(url_for("source.submit_form"))


@blueprint.post("/submit")
def submit() -> Response | str:
    """Stream the form's message and files into gpg, then store them all or none."""
    source = _current_source()
    if source is None:
        raise BadSending("no source session")
    end_reads()  # an upload can take hours
    if request.mimetype != "multipart/form-data" or "boundary" not in request.mimetype_params:
        raise BadSending("not a multipart form")
    # Refuse a body that cannot fit before encrypting any of it; one that fills the disk
    # anyway (a body of unknown length, or other uploads arriving meanwhile) fails with
    # NoSpace and leaves nothing behind.
    if request.max_content_length is not None and \
            (request.content_length or 0) > request.max_content_length:
        raise RequestEntityTooLarge()  # too large for the desk at all, whatever the disk
    store = services().store
    store.require_space(request.content_length or 0, FORM_INODES)
    with services().sessions() as reader:  # a short read: the view must not hold the lock
        require_room(reader, services().config, store, source.id, request.content_length or 0)
    writer = ItemWriter(store, services().gpg, services().recipients.current())
    # Read the body ourselves: request.files would spool file parts to a plaintext temp file.
    staged = ingest_form(request.stream, request.mimetype_params["boundary"], writer, _check_csrf)
    if not staged:
        raise EmptySending()
    _record(source.id, staged)
    return render_template("source/received.html",
                           files=[obj for obj in staged if obj.kind == "file"],
                           message_sent=any(obj.kind == "message" for obj in staged))


@blueprint.post("/logout")
def logout() -> Response:
    """Forget this browser's session (keeping only the language it chose, under a new token)."""
    forget_session()
    server_session().rotate()
    return redirect(url_for("source.index"))


def _throttle(which: str) -> None:
    """429 unless this session and the whole desk may spend a derivation now."""
    throttle: LoginThrottle = current_app.extensions[which]
    if not throttle.allow(server_session().key):
        raise TooManyRequests()


@contextlib.contextmanager
def _derivations(count: int) -> Iterator[None]:
    """Run the block's derivations if the gate admits them now, else 429 at once."""
    gate: DerivationGate = current_app.extensions[DERIVATIONS]
    if not gate.try_admit(count):
        raise TooManyRequests()
    try:
        yield
    finally:
        gate.release(count)


def _current_source() -> Source | None:
    source_id = session.get("source_id")
    return None if source_id is None else db_session().get(Source, source_id)


def _record(source_id: str, staged: list[StagedItem]) -> None:
    """Record what a form post staged, all or nothing; nothing is left in staging if it fails.

    The post may have taken hours over Tor: if another writer held SQLite's write lock past
    the busy timeout, the ciphertext is still staged, so wait for the lock again rather than
    lose the sending (COMMIT_ATTEMPTS in all).
    """
    store = services().store
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            with services().transaction() as db:
                # Again with what it made, under the write lock: a body of unknown length, or
                # another post of this source's finished meanwhile, must not take it past its
                # quota.
                require_room(db, services().config, store, source_id,
                             sum(obj.ciphertext_size for obj in staged))
                record_items(db, store, services().signing_key, source_id, staged)
            return
        except OperationalError as exc:
            # Only a wait for the lock that ran out, with everything still staged, is tried
            # again: record_items undoes its own work on any failure inside it.
            if attempt < COMMIT_ATTEMPTS and is_busy(exc) and \
                    all(obj.staging.path.is_dir() for obj in staged):
                current_app.logger.warning("the database was locked past its busy timeout; "
                                           "recording a form post again")
                continue
            _discard(staged)
            raise
        except BaseException:
            _discard(staged)
            raise


def _discard(staged: list[StagedItem]) -> None:
    for obj in staged:
        services().store.discard(obj.staging)


def _check_csrf(token: str) -> None:
    try:
        validate_csrf(token)
    except ValidationError as exc:
        raise BadSending("CSRF token refused") from exc
