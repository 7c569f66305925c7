"""Replies to sources: checked, stored and recorded in custody without the desk reading them.

A reply is a box only the source's codename opens (crypto/reply.py) and a copy only the
journalists' keys open (crypto/replyfile.py). Replies written on the offline machine arrive as
signed reply files; replies typed into the journalist interface are sealed here, in memory.
Both are stored in `store/replies/<id>/` and recorded with a `reply` custody entry whose
digest covers the journalists' copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from crypto.custody import new_custody_key
from crypto.errors import EncryptionFailed, FormatError
from crypto.names import REPLY_BOX_NAME, REPLY_COPY_NAME
from crypto.reply import key_id, read_header, seal_reply
from crypto.replyfile import ReplyCopy, ReplyFile
from desk.errors import JournalistError, NotAcceptingSubmissions
from desk.records.custody import append_entry, reply_digest
from desk.records.instance import load_instance
from desk.records.items import retention_cutoff
from desk.records.models import Journalist, Reply, Source
from desk.services import Services

REFUSED = "nothing was stored"


@dataclass(frozen=True)
class ReplyTarget:
    """What replying needs to know of a source, read before any slow work starts."""

    source_id: str
    designation: str
    reply_public_key: bytes | None

    @classmethod
    def of(cls, source: Source) -> ReplyTarget:
        """The target for a loaded source row."""
        return cls(source.id, source.designation, source.reply_public_key)


def accept_reply_file(desk: Services, target: ReplyTarget, data: bytes, uploader: str) -> Reply:
    """Check a reply file from `desk-review reply` and store it; JournalistError says exactly
    what is wrong with a refused one. The checks (gpg runs) hold no transaction; only storing
    takes the write lock, briefly."""
    try:
        reply_file = ReplyFile.from_bytes(data)
    except FormatError as exc:
        raise JournalistError(f"{exc}: choose the .desk file desk-review reply wrote; "
                              f"{REFUSED}") from exc
    with desk.sessions() as reader:
        names = {fingerprint: name for fingerprint, name in reader.execute(
            select(Journalist.fingerprint, Journalist.username))}
        retention = load_instance(reader).retention_days
    signed = desk.gpg.verify_detached(reply_file.payload(), reply_file.signature)
    author = None if signed is None else names.get(signed.fingerprint)
    if signed is None or author is None:
        raise JournalistError(
            "the reply file's signature does not verify: it was altered or damaged after "
            "desk-review wrote it, or signed with a key that is not a journalist key of this "
            f"desk; {REFUSED}")
    # Retention purges a reply's row, and with it the only record of its id (nothing of a
    # deleted reply may stay). A file signed before the retention period could be one whose
    # row is gone: sent again, the source would see an old reply as new.
    if retention is not None and signed.made_at.date() < retention_cutoff(retention):
        raise JournalistError(
            f"this reply file was signed on {signed.made_at.date().isoformat()}, before the "
            f"desk's retention period of {retention} days: the desk cannot tell it from a "
            f"reply sent and deleted since; write the reply again; {REFUSED}")
    try:
        header = read_header(reply_file.box)
    except FormatError as exc:
        raise JournalistError(f"the reply box is damaged ({exc}); {REFUSED}") from exc
    if target.reply_public_key is None or \
            header.recipient != key_id(target.reply_public_key):
        raise JournalistError(
            f"this reply was written for another source, not {target.designation}: check the "
            f"source named in desk-review reply; {REFUSED}")
    problems = _recipient_problems(names, desk, reply_file.copy)
    if problems:
        raise JournalistError(
            f"the journalists' copy is wrong: {'; '.join(problems)}; export a fresh bundle, "
            f"import it and write the reply again; {REFUSED}")
    return _store(desk, target, header.reply_id, reply_file.box, reply_file.copy, "console",
                  author, uploader)


def write_web_reply(desk: Services, target: ReplyTarget, text: str, author: str) -> Reply:
    """Seal a reply typed into the journalist interface and store it. The text exists only
    in this process's memory; sealing and encrypting hold no transaction."""
    if target.reply_public_key is None:
        raise JournalistError(f"{target.designation} has not logged in since replies were "
                              "added, so the desk has no key to reply to yet")
    recipients = desk.recipients.current()
    if not recipients:
        raise NotAcceptingSubmissions()
    try:
        box = seal_reply(target.reply_public_key, text)
    except FormatError as exc:
        raise JournalistError(str(exc)) from exc
    header = read_header(box)
    copy = ReplyCopy(header.reply_id, target.designation, header.recipient.hex(),
                     datetime.now(UTC), author, "web", text)
    try:
        encrypted = desk.gpg.encrypt_bytes(copy.to_json(), recipients)
    except EncryptionFailed as exc:
        raise JournalistError(f"could not encrypt the journalists' copy: {exc}") from exc
    return _store(desk, target, header.reply_id, box, encrypted, "web", author, author)


def _recipient_problems(names: dict[str, str], desk: Services, copy: bytes) -> list[str]:
    """What is wrong with who the copy is encrypted to: journalists it leaves out, and any key
    it is encrypted to that is not a current journalist key."""
    key_ids = desk.gpg.recipient_key_ids(copy)
    now = datetime.now(UTC)
    missing, allowed = [], set()
    for fingerprint in desk.recipients.current():
        key = desk.gpg.key(fingerprint)
        ids = set() if key is None else \
            {part.fingerprint[-16:].upper() for part in key.encryption_parts(now)}
        allowed |= ids
        if not ids & key_ids:
            missing.append(names.get(fingerprint, fingerprint))
    problems = []
    if missing:
        problems.append(f"it is not encrypted to every journalist key of this desk (missing: "
                        f"{', '.join(missing)})")
    if extra := sorted(key_ids - allowed):
        problems.append(f"it is also encrypted to keys that are not journalist keys of this "
                        f"desk (key ids {', '.join(extra)})")
    return problems


def _store(desk: Services, target: ReplyTarget, reply_id: str, box: bytes, copy: bytes,
           via: str, author: str, actor: str) -> Reply:
    """Write the reply's files (no transaction), then publish, record and commit them in one
    short writer transaction; all or nothing."""
    store = desk.store
    staging = store.stage()
    try:
        staging.write(REPLY_BOX_NAME, [box])
        staging.write(REPLY_COPY_NAME, [copy])
        with desk.writers() as db:
            if db.get(Reply, reply_id) is not None:
                raise JournalistError(f"this reply was already sent; {REFUSED}")
            # A folder without a row is what a crash between publishing and committing leaves.
            store.remove_reply(reply_id)
            store.publish_reply(staging, reply_id)
            try:
                digest = reply_digest(store, reply_id)
                number = (db.scalar(select(func.max(Reply.number))
                                    .where(Reply.source_id == target.source_id)) or 0) + 1
                reply = Reply(id=reply_id, source_id=target.source_id, number=number,
                              created_on=datetime.now(UTC).date(), author=author, via=via,
                              ciphertext_sha256=digest, custody_key=new_custody_key())
                db.add(reply)
                append_entry(db, desk.signing_key, "reply", reply.custody, actor)
                db.commit()
            except BaseException:
                db.rollback()
                store.remove_reply(reply_id)
                raise
    finally:
        store.discard(staging)
    return reply
