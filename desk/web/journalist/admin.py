"""Admin pages: journalists and their keys, key health, and the desk's settings.

Every route answers 403 to a journalist who is not an admin. An admin never sees a
journalist's passphrase or two-factor secret: a new account, and a reset one, gets a one-time
enrolment link with which the journalist sets them. Every change to an account is recorded
under the admin's own name (`account_events`).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from desk.errors import JournalistError
from desk.records.accounts import (
    ACTIONS,
    EnrolmentLink,
    account_events,
    add_journalist,
    issue_enrolment,
    remove_journalist,
    replace_key,
)
from desk.records.instance import load_instance, update_settings
from desk.records.models import Journalist
from desk.records.recipients import key_statuses
from desk.web.context import db_session, services
from desk.web.journalist.access import login_required

blueprint = Blueprint("admin", __name__, url_prefix="/admin")
MAX_ROW_ID = 2**63 - 1

MAX_KEY_BYTES = 256 * 1024


@blueprint.before_request
@login_required
def require_admin() -> None:
    """Refuse every admin page to journalists who are not admins."""
    if not g.journalist.is_admin:
        abort(403)


@blueprint.errorhandler(JournalistError)
def refused(error: JournalistError) -> Response:
    """A refused change: say why on the admin page (the request's transaction is rolled
    back after the request)."""
    flash(str(error), "error")
    return redirect(url_for("admin.index"))


@blueprint.get("/")
def index() -> str:
    """Journalists, key health and settings."""
    db = db_session()
    journalists = list(db.scalars(select(Journalist).order_by(Journalist.username)))
    statuses = {s.username: s for s in key_statuses(db, services().gpg)}
    return render_template("journalist/admin.html", journalists=journalists, statuses=statuses,
                           instance=load_instance(db), events=account_events(db),
                           actions=ACTIONS,
                           default_max_upload=services().config.max_upload_bytes)


@blueprint.post("/journalists")
def add() -> str:
    """Add a journalist and show a one-time enrolment link for them, once."""
    key = _uploaded_key()
    actor = g.journalist.username
    with services().transaction() as db:
        journalist = add_journalist(
            db, services().gpg, request.form.get("username", "").strip(), key,
            is_admin=request.form.get("is_admin") == "1", kdf=services().config.kdf,
            actor=actor)
        db.flush()
        link = issue_enrolment(db, journalist, actor)
    services().recipients.invalidate()
    return _enrolment_link(journalist, link)


@blueprint.post("/journalists/<int:journalist_id>/key")
def change_key(journalist_id: int) -> Response:
    """Replace a journalist's key; show the new fingerprint for comparison."""
    _journalist_or_404(journalist_id)
    key = _uploaded_key()
    with services().transaction() as db:
        journalist = _journalist_or_404(journalist_id, db)
        fingerprint = replace_key(db, services().gpg, journalist, key, g.journalist.username)
    services().recipients.invalidate()
    flash(f"{journalist.username} now has key {fingerprint}. Compare it with them over "
          "another channel.", "info")
    return redirect(url_for("admin.index"))


@blueprint.post("/journalists/<int:journalist_id>/reset-2fa")
def reset_2fa(journalist_id: int) -> str:
    """End the journalist's two-factor and sessions; show a one-time link with which they set
    up two-factor again, typing their passphrase (which they keep)."""
    with services().transaction() as db:
        journalist = _journalist_or_404(journalist_id, db)
        link = issue_enrolment(db, journalist, g.journalist.username,
                               keep_passphrase=journalist.password_hash is not None)
    return _enrolment_link(journalist, link)


@blueprint.post("/journalists/<int:journalist_id>/reset-login")
def reset_login(journalist_id: int) -> str:
    """End the journalist's passphrase, two-factor and sessions; show a one-time link with
    which they choose both again (for a forgotten passphrase)."""
    with services().transaction() as db:
        journalist = _journalist_or_404(journalist_id, db)
        link = issue_enrolment(db, journalist, g.journalist.username)
    return _enrolment_link(journalist, link)


@blueprint.post("/journalists/<int:journalist_id>/remove")
def remove(journalist_id: int) -> Response:
    """Remove an account and its key; not your own."""
    journalist = _journalist_or_404(journalist_id)
    if journalist.id == g.journalist.id:
        flash("You cannot remove your own account.", "error")
    elif request.form.get("confirm") != "yes":
        flash("Tick the box to confirm.", "error")
    else:
        with services().transaction() as db:
            remove_journalist(db, services().gpg, _journalist_or_404(journalist_id, db),
                              g.journalist.username)
        services().recipients.invalidate()
        flash(f"Removed {journalist.username}.", "info")
    return redirect(url_for("admin.index"))


@blueprint.post("/settings")
def settings() -> Response:
    """The desk's name, upload limit and retention."""
    with services().transaction() as db:
        update_settings(db, request.form.get("name", ""), request.form.get("max_upload", ""),
                        request.form.get("retention_days", ""))
    flash("Settings saved.", "info")
    return redirect(url_for("admin.index"))


def _enrolment_link(journalist: Journalist, link: EnrolmentLink) -> str:
    # The link's address is the one this page was asked for: the journalist onion service.
    return render_template("journalist/enrolment_link.html", account=journalist,
                           link=url_for("account.enrol", token=link.token, _external=True),
                           until=link.until)


def _uploaded_key() -> bytes:
    upload = request.files.get("key")
    data = upload.read(MAX_KEY_BYTES + 1) if upload else b""
    if not data:
        raise JournalistError("choose the journalist's public key file (.asc)")
    if len(data) > MAX_KEY_BYTES:
        raise JournalistError("that file is too large to be a public key")
    return data


def _journalist_or_404(journalist_id: int, db: Session | None = None) -> Journalist:
    """The journalist, read through `db` (the request's read-only session by default)."""
    if journalist_id > MAX_ROW_ID:  # past SQLite's integers: no such row, not an overflow
        abort(404)
    journalist = (db or db_session()).get(Journalist, journalist_id)
    if journalist is None:
        abort(404)
    return journalist
