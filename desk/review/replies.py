"""`desk-review reply` and `desk-review replies`: end-to-end replies from the offline machine.

A reply is sealed here to the source's pinned reply public key, its copy is encrypted to the
desk's pinned journalist keys (kept in a GnuPG home of their own; see desk/review/keys.py for
what pinned means), and the journalist's own key signs both, so the desk can refuse a reply
file changed on the way without being able to read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crypto.durable import write_durably
from crypto.errors import CryptoError, FormatError
from crypto.gpg import GnuPG
from crypto.reply import MAX_REPLY_BYTES, key_id, read_header, reply_record, seal_reply
from crypto.replyfile import ReplyCopy, ReplyFile, signed_payload
from desk.review.errors import ReviewError
from desk.review.index import KnownDesk, PendingKey, Recipient, ReplyCopyRecord, SourceKey
from desk.review.keys import left_out, pending_source_change, reply_recipients, unconfirmed
from desk.review.workspace import Workspace, log_action


@dataclass(frozen=True)
class WrittenReply:
    """What `reply` wrote."""

    path: Path
    source: str
    author: str
    reply_id: str


def read_message(path: Path) -> str:
    """The reply text from a UTF-8 file; ReviewError if it is empty, too long or not text."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ReviewError(f"the message file {path} is not UTF-8 text",
                          "save the message as plain UTF-8 text") from exc
    if not text:
        raise ReviewError(f"the message file {path} is empty",
                          "write the reply into the file first")
    if len(reply_record(text)) > MAX_REPLY_BYTES:
        raise ReviewError(f"the message file {path} is too long for a reply (at most 64 KiB)",
                          "shorten it, or send it as two replies")
    return text


def desk_keys(session: Session, desk: str | None) -> list[str] | None:
    """The signing keys of the desks `--desk` names (by name or the start of its signing key,
    at least 8 hex digits); None when it was not given."""
    if desk is None:
        return None
    wanted = desk.strip().lower()
    desks = session.scalars(select(KnownDesk)).all()
    found = [d.signing_key for d in desks if d.name.lower() == wanted] or \
        [d.signing_key for d in desks if len(wanted) >= 8 and d.signing_key.startswith(wanted)]
    if not found:
        known = ", ".join(f"{d.name} ({d.signing_key[:8]})" for d in desks)
        raise ReviewError(f"no desk {desk!r} in this workspace",
                          f"desks here: {known}" if known else "import a bundle first")
    return found


def one_desk(session: Session, source: str, found: list[str]) -> str:
    """The only desk in `found`, or a ReviewError asking which one."""
    if len(set(found)) > 1:
        names = ", ".join(sorted(f"{d.name} ({d.signing_key[:8]})" for d in session.scalars(
            select(KnownDesk).where(KnownDesk.signing_key.in_(found)))))
        raise ReviewError(f"source {source!r} is known at several desks: {names}",
                          "choose one with --desk NAME, or --desk and the first 8 digits of "
                          "its signing key")
    return found[0]


def _source_key(session: Session, source: str, desk: str | None) -> SourceKey:
    wanted = " ".join(source.lower().split())
    query = select(SourceKey).where(func.lower(SourceKey.designation) == wanted)
    if (chosen := desk_keys(session, desk)) is not None:
        query = query.where(SourceKey.desk_key.in_(chosen))
    keys = list(session.scalars(query))
    if not keys:
        known = ", ".join(session.scalars(select(SourceKey.designation).distinct()
                                          .order_by(SourceKey.designation)).all())
        raise ReviewError(
            f"no reply key for source {source!r} in this workspace",
            f"sources you can reply to: {known}" if known else
            "import a bundle exported after the source got a codename or logged in")
    desk_key = one_desk(session, source, [k.desk_key for k in keys])
    key = next(k for k in keys if k.desk_key == desk_key)
    if (change := pending_source_change(session, desk_key, key.designation)) is not None:
        raise ReviewError(
            f"a bundle ({change.seen_in}) offers another reply key for {key.designation}; "
            "it is not pinned, and nothing was written",
            "a codename's reply key never changes on an honest desk: tell the desk's admins. "
            f"To seal to the new key anyway: desk-review keys accept {change.fingerprint}")
    return key


def _signer(gpg: GnuPG, recipients: list[Recipient], chosen: str | None) -> Recipient:
    by_fingerprint = {r.fingerprint: r for r in recipients}
    if chosen:
        wanted = chosen.replace(" ", "").upper()
        found = by_fingerprint.get(wanted)
        if found is None:
            raise ReviewError(f"--signer {chosen} is not a journalist key of this desk",
                              "use the fingerprint of your own journalist key")
        return found
    mine = [by_fingerprint[f] for f in gpg.secret_fingerprints() if f in by_fingerprint]
    if not mine:
        raise ReviewError("none of the secret keys in this GnuPG home is a journalist key "
                          "of this desk", "use --gnupghome for the home with your journalist "
                          "secret key")
    if len(mine) > 1:
        raise ReviewError("several journalist secret keys are here",
                          "choose yours with --signer FINGERPRINT")
    return mine[0]


def write_reply(workspace: Workspace, gpg: GnuPG, source: str, text: str, out: Path,
                signer: str | None = None, desk: str | None = None,
                announce: Callable[[list[Recipient], list[PendingKey]], None] = lambda *_: None,
                ) -> WrittenReply:
    """Seal, encrypt, sign and write a reply file; refuse to overwrite `out`. `announce` is
    told the copy's recipients, and the keys the desk lists that it leaves out, before
    anything is signed."""
    if out.exists():  # checked again when writing; this spares a smartcard touch
        raise ReviewError(f"the output file {out} already exists", "choose another --out name")
    with workspace.session() as session:
        key = _source_key(session, source, desk)
        recipients = reply_recipients(session, key.desk_key)
        if not recipients:
            waiting = unconfirmed(session, key.desk_key) or left_out(session, key.desk_key)
            raise ReviewError("no pinned journalist keys for this desk in the workspace",
                              "compare the fingerprints `desk-review keys` lists with your "
                              "colleagues, then `desk-review keys accept FINGERPRINT`"
                              if waiting else
                              "import a bundle exported by this version of the desk")
        author = _signer(gpg, recipients, signer)
        announce(recipients, left_out(session, key.desk_key))
        try:
            box = seal_reply(key.reply_public_key, text)
        except FormatError as exc:
            raise ReviewError(f"cannot seal the reply: {exc}") from exc
        header = read_header(box)
        copy = ReplyCopy(header.reply_id, key.designation, key_id(key.reply_public_key).hex(),
                         datetime.now(UTC), author.username, "console", text)
        # A home of public keys only: no random seed file to leave behind unsynced.
        keyring = GnuPG(workspace.recipients_home(), seed_file=False)
        fingerprints = []
        for recipient in recipients:
            keyring.import_public_key(recipient.public_key.encode("ascii"),
                                      recipient.fingerprint)
            fingerprints.append(recipient.fingerprint)
        encrypted = keyring.encrypt_bytes(copy.to_json(), fingerprints)
        try:
            signature = gpg.sign_detached(signed_payload(box, encrypted), author.fingerprint)
        except CryptoError as exc:
            raise ReviewError(f"cannot sign the reply: {exc}",
                              "the reply is signed with your journalist key; unlock it or "
                              "insert its smartcard") from exc
        data = ReplyFile(box, encrypted, signature).to_bytes()
        if out.exists():
            raise ReviewError(f"the output file {out} already exists",
                              "choose another --out name")
        try:
            write_durably(out, data, replace=False)
        except FileExistsError as exc:
            raise ReviewError(f"the output file {out} already exists",
                              "choose another --out name") from exc
        log_action(session, None, "reply", source=key.designation, reply=header.reply_id,
                   author=author.username, file=out.name)
    return WrittenReply(out, key.designation, author.username, header.reply_id)


@dataclass(frozen=True)
class ShownReply:
    """One reply in a source's history."""

    number: int
    sent_on: date
    author: str | None
    via: str
    text: str | None
    problem: str | None


def reply_history(workspace: Workspace, gpg: GnuPG, source: str, desk: str | None = None
                  ) -> list[ShownReply]:
    """Every imported reply to `source` (at `desk`, needed if several desks know one by that
    name), decrypted in memory, oldest first."""
    wanted = " ".join(source.lower().split())
    with workspace.session() as session:
        query = select(ReplyCopyRecord).where(func.lower(ReplyCopyRecord.source) == wanted)
        if (chosen := desk_keys(session, desk)) is not None:
            query = query.where(ReplyCopyRecord.desk_key.in_(chosen))
        records = list(session.scalars(query.order_by(ReplyCopyRecord.number)))
        if records:
            desk_key = one_desk(session, source, [r.desk_key for r in records])
            records = [r for r in records if r.desk_key == desk_key]
    shown = []
    for record in records:
        text = problem = None
        try:
            text = ReplyCopy.from_json(gpg.decrypt_bytes(
                workspace.reply_copy(record.id).read_bytes())).text
        except (CryptoError, OSError) as exc:
            problem = str(exc)
        shown.append(ShownReply(record.number, record.sent_on, record.author, record.via,
                                text, problem))
    return shown
