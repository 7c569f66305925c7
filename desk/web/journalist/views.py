"""Journalist views: log in, see what arrived, mark, star, delete and export it.

Journalists get specific messages. Everything works without JavaScript.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from sqlalchemy import case, func, select
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response

from desk.errors import JournalistError
from desk.outbound.export import Export, export_bundle, select_item_ids, select_items
from desk.outbound.replies import ReplyTarget, accept_reply_file, write_web_reply
from desk.records.credentials import LoginFailed, authenticate
from desk.records.instance import load_instance
from desk.records.items import delete_items, set_seen
from desk.records.models import Item, Source
from desk.records.replies import history
from desk.records.sources import delete_source, set_starred
from desk.web.context import db_session, end_reads, services
from desk.web.journalist.access import login_required
from desk.web.sessions import server_session

blueprint = Blueprint("journalist", __name__)

PAGE_SIZE = 50
MAX_REPLY_FILE = 512 * 1024


@blueprint.app_context_processor
def _page_context() -> dict[str, object]:
    return {"journalist": g.get("journalist"), "instance_name": load_instance(db_session()).name}


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | str:
    """Username, password and two-factor code."""
    if request.method == "GET":
        return render_template("journalist/login.html")
    try:
        # A writer transaction: a failure or the used TOTP step is recorded on the account.
        with services().transaction() as db:
            journalist = authenticate(
                db, request.form.get("username", "")[:64],
                request.form.get("password", "")[:1024], request.form.get("code", "")[:16],
                services().config.kdf)
    except LoginFailed:
        return render_template("journalist/login.html", failed=True), 401
    session.clear()
    server_session().rotate()
    session["journalist_id"] = journalist.id
    return redirect(url_for("journalist.sources"))


@blueprint.post("/logout")
def logout() -> Response:
    """End the session (POST with CSRF, so a link elsewhere cannot log anyone out)."""
    session.clear()
    return redirect(url_for("journalist.login"))


@blueprint.get("/")
@login_required
def sources() -> str:
    """Sources with anything stored: starred first, then by last activity, paginated."""
    db = db_session()
    # Selecting the indexed column lets SQLite answer from ix_submissions_source_id_seen alone.
    has_items = select(Item.source_id).where(Item.source_id == Source.id).exists()
    total = db.scalar(select(func.count()).select_from(Source).where(has_items)) or 0
    last_page = max(-(-total // PAGE_SIZE), 1)
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), last_page)
    rows = list(db.scalars(
        select(Source).where(has_items)
        .order_by(Source.starred.desc(), Source.last_activity_on.desc(), Source.id)
        .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)))
    counts = {source_id: (items, unseen) for source_id, items, unseen in db.execute(
        select(Item.source_id, func.count(),
               func.sum(case((Item.seen.is_(False), 1), else_=0)))
        .where(Item.source_id.in_([s.id for s in rows]))
        .group_by(Item.source_id))}
    pages = last_page
    return render_template("journalist/sources.html", sources=rows, counts=counts, page=page,
                           pages=pages, total=total)


@blueprint.get("/sources/<source_id>")
@login_required
def source(source_id: str) -> str:
    """One source's items and the replies sent to it."""
    found = _source_or_404(source_id)
    items = select_items(db_session(), source=found)
    return render_template("journalist/source.html", source=found, items=items,
                           replies=history(db_session(), found.id))


@blueprint.post("/sources/<source_id>/replies/upload")
@login_required
def upload_reply(source_id: str) -> Response:
    """Store a reply file written by `desk-review reply` on the offline machine."""
    target, username = ReplyTarget.of(_source_or_404(source_id)), g.journalist.username
    upload = request.files.get("reply_file")
    data = upload.read(MAX_REPLY_FILE + 1) if upload is not None else b""
    if not data:
        flash("Choose the reply file (.desk) that desk-review reply wrote.", "error")
    else:
        try:
            reply = accept_reply_file(services(), target, data, username)
        except JournalistError as exc:
            flash(f"Reply refused: {exc}.", "error")
        else:
            flash(f"Reply {reply.number} to {target.designation} stored. The desk cannot read "
                  "it; the source sees it the next time they log in.", "info")
    return redirect(url_for("journalist.source", source_id=source_id))


@blueprint.post("/sources/<source_id>/replies")
@login_required
def write_reply(source_id: str) -> Response:
    """Seal a reply typed here (the convenience path: the server sees the text in memory)."""
    target, username = ReplyTarget.of(_source_or_404(source_id)), g.journalist.username
    text = request.form.get("text", "").strip()
    if not text:
        flash("Write the reply first.", "error")
    else:
        try:
            reply = write_web_reply(services(), target, text, username)
        except JournalistError as exc:
            flash(f"Reply not sent: {exc}.", "error")
        else:
            flash(f"Reply {reply.number} to {target.designation} sent.", "info")
    return redirect(url_for("journalist.source", source_id=source_id))


@blueprint.post("/sources/<source_id>/star")
@login_required
def star(source_id: str) -> Response:
    """Star or unstar a source, then go back to the page of the form: the list's page whose
    number it carries, or else the source's own page. Only a page number comes from the form,
    never a path, so no form field can lead anywhere else."""
    found = _source_or_404(source_id)
    with services().transaction() as db:
        set_starred(db, found.id, request.form.get("starred") == "1")
    if "page" not in request.form:
        return redirect(url_for("journalist.source", source_id=found.id))
    page = request.form.get("page", type=_page_number)
    return redirect(url_for("journalist.sources", page=page) if page else
                    url_for("journalist.sources"))


@blueprint.post("/sources/<source_id>/delete")
@login_required
def remove_source(source_id: str) -> Response:
    """Delete a source and everything it sent, for good."""
    found = _source_or_404(source_id)
    if request.form.get("confirm") != "yes":
        flash("Tick the box to confirm: deletion is final.", "error")
        return redirect(url_for("journalist.source", source_id=source_id))
    end_reads()
    if not delete_source(services().writers, services().store, services().signing_key,
                         found.id, g.journalist.username):
        abort(404)  # deleted by someone else meanwhile
    flash(f"Deleted {found.designation} and everything it sent.", "info")
    return redirect(url_for("journalist.sources"))


@blueprint.post("/sources/<source_id>/items")
@login_required
def items_action(source_id: str) -> Response:
    """Mark selected items seen or unseen, delete them, or export them."""
    found = _source_or_404(source_id)
    selected = [s.id for s in select_items(db_session(), source=found,
                                                 ids=request.form.getlist("item"))]
    action = request.form.get("action")
    back = redirect(url_for("journalist.source", source_id=source_id))
    if not selected:
        flash("Select at least one item first.", "error")
        return back
    if action in ("seen", "unseen"):
        with services().transaction() as db:
            set_seen(db, selected, action == "seen")
        return back
    if action == "delete":
        if request.form.get("confirm") != "yes":
            flash("Tick the box to confirm: deletion is final.", "error")
            return back
        end_reads()
        delete_items(services().writers, services().store, services().signing_key,
                     selected, g.journalist.username)
        flash(f"Deleted {len(selected)} item(s).", "info")
        return back
    if action == "export":
        return _export(ids=selected)
    raise BadRequest("unknown action")


@blueprint.post("/items/<item_id>/download")
@login_required
def download(item_id: str) -> Response:
    """One object's ciphertext, as a bundle of one. A POST with the form's token, like every
    export: it marks the item seen and signs a custody entry, so a link cannot."""
    return _export(ids=[item_id], event="download")


@blueprint.post("/export")
@login_required
def export() -> Response:
    """Everything, or everything unseen, as one bundle."""
    scope = request.form.get("scope")
    if scope not in ("all", "unseen"):
        abort(400)
    return _export(unseen=scope == "unseen")


def _export(ids: list[str] | None = None, unseen: bool = False,
            event: str = "export") -> Response:
    # Chosen in the request's read session; export_bundle writes its custody entries in short
    # batches of its own, so neither a source's upload nor a page waits on the whole export.
    chosen = select_item_ids(db_session(), ids=ids, unseen=unseen)
    end_reads()
    if not chosen:
        if ids is not None and event == "download":
            abort(404)
        flash("There is nothing to export.", "error")
        return redirect(url_for("journalist.sources"))
    try:
        bundle = export_bundle(services(), chosen, g.journalist.username, event)
    except JournalistError as exc:
        flash(str(exc), "error")
        return redirect(url_for("journalist.sources"))
    return _stream(bundle)


def _stream(bundle: Export) -> Response:
    # Streamed straight from the store: no temp copy of the bundle is made on the server.
    response = Response(stream_with_context(bundle.chunks), mimetype="application/x-tar")
    response.headers["Content-Length"] = str(bundle.size)
    response.headers["Content-Disposition"] = f'attachment; filename="{bundle.filename}"'
    response.call_on_close(bundle.close)
    return response


def _page_number(value: str) -> int:
    """A page of the sources list: 1 or more, in at most 9 ASCII digits (int() would also take
    ' 2', '+2', '2_0' and digits of other scripts)."""
    if not (value.isascii() and value.isdigit() and len(value) <= 9) or int(value) < 1:
        raise ValueError(value)
    return int(value)


def _source_or_404(source_id: str) -> Source:
    found = db_session().get(Source, source_id)
    if found is None:
        abort(404)
    return found
