"""`desk-review reply` and `desk-review replies`: end-to-end replies from the offline machine.

A reply is sealed here to the source's reply public key (from the newest bundle), its copy is
encrypted to the desk's journalist keys (from the same place, kept in a GnuPG home of their
own), and the journalist's own key signs both, so the desk can refuse a reply file changed on
the way without being able to read it.
"""

from __future__ import annotations

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
from desk.review.index import Recipient, ReplyCopyRecord, SourceKey
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


def _source_key(session: Session, source: str) -> SourceKey:
    wanted = " ".join(source.lower().split())
    key = session.scalar(select(SourceKey).where(func.lower(SourceKey.designation) == wanted))
    if key is None:
        known = ", ".join(session.scalars(select(SourceKey.designation)
                                          .order_by(SourceKey.designation)).all())
        raise ReviewError(
            f"no reply key for source {source!r} in this workspace",
            f"sources you can reply to: {known}" if known else
            "import a bundle exported after the source got a codename or logged in")
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
                signer: str | None = None) -> WrittenReply:
    """Seal, encrypt, sign and write a reply file; refuse to overwrite `out`."""
    if out.exists():  # checked again when writing; this spares a smartcard touch
        raise ReviewError(f"the output file {out} already exists", "choose another --out name")
    with workspace.session() as session:
        key = _source_key(session, source)
        recipients = list(session.scalars(select(Recipient)
                                          .where(Recipient.desk_key == key.desk_key)
                                          .order_by(Recipient.fingerprint)))
        if not recipients:
            raise ReviewError("no journalist keys for this desk in the workspace",
                              "import a bundle exported by this version of the desk")
        author = _signer(gpg, recipients, signer)
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


def reply_history(workspace: Workspace, gpg: GnuPG, source: str) -> list[ShownReply]:
    """Every imported reply to `source`, decrypted in memory, oldest first."""
    wanted = " ".join(source.lower().split())
    with workspace.session() as session:
        records = list(session.scalars(
            select(ReplyCopyRecord).where(func.lower(ReplyCopyRecord.source) == wanted)
            .order_by(ReplyCopyRecord.number)))
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
