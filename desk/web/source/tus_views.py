"""The tus 1.0.0 endpoint at /uploads/ for sources with JavaScript (resumable uploads).

It belongs to the source interface: the session cookie of a source who has a codename, and
the submit page's CSRF token in an X-CSRFToken header. Responses are short plain text for
client programs; the protocol is in desk/intake/tus.py.
"""

from __future__ import annotations

import re
import shutil

from flask import Blueprint, Response, request, session
from sqlalchemy.exc import OperationalError
from werkzeug.http import http_date

from desk.errors import NoSpace, is_disk_full
from desk.intake.ingest import ItemWriter
from desk.intake.tus import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    SHA256_HEADER,
    TUS_VERSION,
    PatchResult,
    TusError,
    append_part,
    create_upload,
    expires_at,
    find_upload,
    locked,
    owner_secret,
    parse_checksum,
    parse_metadata,
    require_patch_room,
    terminate,
    upload_dir,
)
from desk.records.models import Upload
from desk.records.quota import require_room, require_upload_room
from desk.web.context import (
    db_session,
    discard_unread_body,
    end_reads,
    report_no_space,
    services,
)
from desk.web.source.login import session_reply_seed

blueprint = Blueprint("uploads", __name__, url_prefix="/uploads")
NUMBER_RE = re.compile(r"[0-9]{1,19}")


@blueprint.before_request
def check_version() -> Response | None:
    """Every request but OPTIONS names the protocol version; anything else gets 412."""
    if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != TUS_VERSION:
        return _answer(412, "Tus-Resumable: 1.0.0 required", {"Tus-Version": TUS_VERSION})
    return None


@blueprint.after_request
def tus_headers(response: Response) -> Response:
    """Name the protocol on every answer, and never let anything cache one."""
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.errorhandler(TusError)
def refused(error: TusError) -> Response:
    """A refusal as the protocol expects it."""
    return _answer(error.status, str(error))


@blueprint.errorhandler(NoSpace)
@blueprint.errorhandler(OSError)
@blueprint.errorhandler(OperationalError)
def no_space(error: Exception) -> Response:
    """A full disk as the protocol expects it: 507, and the client resumes later from the
    offset HEAD gives. Any other error goes on to the app's 500 handler."""
    if not is_disk_full(error):
        raise error
    report_no_space(error)
    # Read the rest of a PATCH body, so that the client gets this answer, not a reset.
    discard_unread_body()
    return _answer(507, "not enough space on the desk right now; nothing was kept")


@blueprint.route("/", methods=["OPTIONS"], provide_automatic_options=False)
def options() -> Response:
    """What this server supports."""
    return _answer(204, "", {
        "Tus-Version": TUS_VERSION, "Tus-Extension": EXTENSIONS,
        "Tus-Max-Size": str(request.max_content_length or 0),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS)})


@blueprint.post("/")
def create() -> Response:
    """Creation: Upload-Length and Upload-Metadata (filename, filetype)."""
    source_id, secret = session.get("source_id"), session_owner_secret()
    if source_id is None or secret is None:
        raise TusError(403, "get a codename first")
    length = _header_number("Upload-Length")
    if length is None:
        raise TusError(400, "Upload-Length is required (deferred length is not supported)")
    if length < 0:
        raise TusError(400, "Upload-Length must not be negative")
    if request.max_content_length is not None and length > request.max_content_length:
        raise TusError(413, "larger than this desk accepts")
    metadata = parse_metadata(request.headers.get("Upload-Metadata", ""))
    with services().transaction() as db:
        # The whole declared length is reserved now: the bodies still to come count already.
        require_room(db, services().config, services().store, source_id, length)
        require_upload_room(db, services().config, services().store, source_id, length)
        upload = create_upload(db, services().store, source_id, secret, length, metadata)
        try:
            db.commit()
        except BaseException:
            shutil.rmtree(upload_dir(services().store, upload.id), ignore_errors=True)
            raise
    headers = {"Location": f"{request.script_root}/uploads/{upload.id}",
               "Upload-Expires": _http_date(upload)}
    if length == 0:
        with locked(services().store, upload.id):
            headers.update(_receipt(_append(upload, secret)))
    return _answer(201, "", headers)


@blueprint.route("/<upload_id>", methods=["HEAD"])
def head(upload_id: str) -> Response:
    """Where to resume."""
    upload = find_upload(db_session(), upload_id, session_owner_secret())
    return _answer(200, "", {"Upload-Offset": str(upload.offset),
                             "Upload-Length": str(upload.length),
                             "Upload-Expires": _http_date(upload)})


@blueprint.route("/<upload_id>", methods=["PATCH"])
def patch(upload_id: str) -> Response:
    """Stream this body into the upload's next encrypted part."""
    if request.mimetype != "application/offset+octet-stream":
        raise TusError(415, "Content-Type must be application/offset+octet-stream")
    offset = _header_number("Upload-Offset")
    if offset is None:
        raise TusError(400, "Upload-Offset is required")
    checksum = parse_checksum(request.headers.get("Upload-Checksum"))
    secret = session_owner_secret()
    upload = find_upload(db_session(), upload_id, secret)
    if offset != upload.offset:
        raise TusError(409, f"the upload is at offset {upload.offset}")
    if (request.content_length or 0) > upload.length - upload.offset:
        raise TusError(400, "this body goes past Upload-Length")
    require_patch_room(services().store, upload, request.content_length)
    with locked(services().store, upload.id):
        db_session().refresh(upload)  # another request may have moved it before the lock
        if offset != upload.offset:
            raise TusError(409, f"the upload is at offset {upload.offset}")
        end_reads()  # an upload can take hours
        result = _append(upload, secret or "", checksum)
    return _answer(204, "", {"Upload-Offset": str(result.offset),
                             "Upload-Expires": _http_date(upload), **_receipt(result)})


@blueprint.route("/<upload_id>", methods=["DELETE"])
def delete(upload_id: str) -> Response:
    """Termination: drop the upload and its parts."""
    upload = find_upload(db_session(), upload_id, session_owner_secret())
    with locked(services().store, upload.id), services().transaction() as writer:
        terminate(writer, services().store, writer.merge(upload))
    return _answer(204, "")


def _header_number(name: str) -> int | None:
    """A header that tus defines as a non-negative integer: ASCII digits only (int() would
    also take '+5', '1_0', '-0' and surrounding Unicode spaces), at most 19 of them."""
    value = request.headers.get(name, "")
    return int(value) if NUMBER_RE.fullmatch(value) else None


def session_owner_secret() -> str | None:
    """The secret that owns this source's uploads and seals their records: derived from the
    codename's reply key seed, which the session holds sealed under the cookie, so the server
    never stores it. The same codename yields it in every session: an upload resumes after
    its session ends and the source logs in again, and no other codename can reach it."""
    if session.get("source_id") is None:
        return None
    seed = session_reply_seed()
    return None if seed is None else owner_secret(seed)


def _append(upload: Upload, secret: str,
            checksum: tuple[str, bytes] | None = None) -> PatchResult:
    writer = ItemWriter(services().store, services().gpg, services().recipients.current())
    return append_part(services().writers, writer, services().signing_key, upload, secret,
                       request.stream, request.content_length, checksum)


def _receipt(result: PatchResult) -> dict[str, str]:
    """The whole file's SHA-256 on the answer that completes it: the desk's own hash of what
    it encrypted, which the page shows the source as the form post's received page does."""
    return {SHA256_HEADER: result.sha256} if result.finished and result.sha256 else {}


def _http_date(upload: Upload) -> str:
    return http_date(expires_at(upload))


def _answer(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return Response(text, status=status, headers=headers or {}, mimetype="text/plain")
