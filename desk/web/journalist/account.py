"""A journalist's own login: enrolling through a one-time link, and changing the passphrase or
the two-factor secret later. Nobody else ever sees either.

A two-factor secret waiting to be confirmed lives in the server-side session, sealed under the
cookie's token (desk/web/sessions.py), until a code from it is typed back.
"""

from __future__ import annotations

import base64
import binascii

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from desk.errors import JournalistError
from desk.records.accounts import (
    ACTIONS,
    account_events,
    change_passphrase,
    change_two_factor,
    complete_enrolment,
    enrolment_digest,
    pending_enrolment,
)
from desk.records.credentials import MAX_PASSWORD_CHARS, new_totp_secret, totp_secret_text, totp_uri
from desk.records.models import Journalist
from desk.web.context import db_session, services
from desk.web.journalist.access import login_required
from desk.web.sessions import server_session

blueprint = Blueprint("account", __name__)

# The session field holding the two-factor secret being set up, and what it is for.
PENDING = "pending_totp"


@blueprint.route("/enrol/<token>", methods=["GET", "POST"])
def enrol(token: str) -> Response | tuple[str, int] | str:
    """Choose a passphrase (or type the one kept) and set up two-factor, once, with the link
    an admin handed over; then log in."""
    journalist = pending_enrolment(db_session(), token)
    if journalist is None:
        return render_template("journalist/enrol_invalid.html"), 404
    purpose = "enrol:" + enrolment_digest(token)
    secret = _pending_secret(purpose)
    if request.method == "GET":
        return _enrol_page(journalist, token, secret)
    try:
        with services().transaction() as db:
            current = pending_enrolment(db, token)
            if current is None:  # used or replaced meanwhile
                return render_template("journalist/enrol_invalid.html"), 404
            complete_enrolment(db, current, _field("passphrase"), _field("repeated"), secret,
                               request.form.get("code", "")[:16], services().config.kdf)
            journalist_id = current.id
    except JournalistError as exc:
        return _enrol_page(journalist, token, secret, error=str(exc)), 400
    session.clear()
    server_session().rotate()
    session["journalist_id"] = journalist_id
    flash("You are enrolled and logged in. Log in next time with your username, your "
          "passphrase and a code from your authenticator app.", "info")
    return redirect(url_for("journalist.sources"))


@blueprint.get("/account")
@login_required
def account() -> str:
    """The journalist's own login: change the passphrase or the two-factor secret, and every
    change made to the account, by whom."""
    journalist: Journalist = g.journalist
    secret = _pending_secret(f"account:{journalist.id}")
    return render_template("journalist/account.html", totp_secret=totp_secret_text(secret),
                           totp_uri=totp_uri(secret, journalist.username),
                           events=account_events(db_session(), journalist.username),
                           actions=ACTIONS)


@blueprint.post("/account/passphrase")
@login_required
def passphrase() -> Response:
    """A new passphrase, given the current one and a two-factor code."""
    try:
        with services().transaction() as db:
            change_passphrase(db, _writable(db), _field("current"),
                              request.form.get("code", "")[:16], _field("passphrase"),
                              _field("repeated"), server_session().sid, services().config.kdf)
    except JournalistError as exc:
        flash(f"Passphrase not changed: {exc}.", "error")
    else:
        flash("Passphrase changed. Your other sessions have ended.", "info")
    return redirect(url_for("account.account"))


@blueprint.post("/account/two-factor")
@login_required
def two_factor() -> Response:
    """The new two-factor secret shown on the account page, confirmed by a code from it, given
    the passphrase and a code from the old one."""
    purpose = f"account:{g.journalist.id}"
    secret = _pending_secret(purpose)
    try:
        with services().transaction() as db:
            change_two_factor(db, _writable(db), _field("current"),
                              request.form.get("code", "")[:16], secret,
                              request.form.get("new_code", "")[:16], server_session().sid)
    except JournalistError as exc:
        flash(f"Two-factor not changed: {exc}.", "error")
    else:
        session.pop(PENDING, None)
        flash("Two-factor changed: from now on only codes from the new entry work. Delete "
              "the old entry from your authenticator app. Your other sessions have ended.",
              "info")
    return redirect(url_for("account.account"))


def _enrol_page(journalist: Journalist, token: str, secret: bytes, error: str | None = None
                ) -> str:
    events = account_events(db_session(), journalist.username, limit=1)
    return render_template(
        "journalist/enrol.html", account=journalist, token=token, error=error,
        keeps_passphrase=journalist.password_hash is not None,
        issued_by=events[0].actor if events else None,
        totp_secret=totp_secret_text(secret), totp_uri=totp_uri(secret, journalist.username))


def _pending_secret(purpose: str) -> bytes:
    """The two-factor secret this session is setting up for `purpose`; a new one if none."""
    pending = session.get(PENDING)
    if isinstance(pending, dict) and pending.get("for") == purpose:
        try:
            return base64.b32decode(str(pending.get("secret", "")))
        except (binascii.Error, ValueError):
            pass
    secret = new_totp_secret()
    session[PENDING] = {"for": purpose, "secret": totp_secret_text(secret)}
    return secret


def _field(name: str) -> str:
    return request.form.get(name, "")[:MAX_PASSWORD_CHARS + 1]


def _writable(db: Session) -> Journalist:
    """The logged-in journalist's row in the writer session `db`."""
    journalist = db.get(Journalist, g.journalist.id)
    if journalist is None:  # removed meanwhile
        raise JournalistError("this account no longer exists")
    return journalist
