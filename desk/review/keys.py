"""Pinned keys: who a reply from this machine can be read by.

A bundle's manifest is signed with the desk's own key, which a compromised server holds, so
what it says about keys is an offer, never an order:
- The first import of a desk pins the journalist keys it lists, and the console prints their
  fingerprints for the newsroom to compare out of band. (A desk accepted later with
  `--accept-new-desk-key` inherits only keys already pinned for another desk here.)
- A source's reply key is pinned the first time a bundle carries it: it comes from the
  codename and never changes on an honest desk.
- Any later difference (a journalist key added or no longer listed, another reply key for a
  source) is kept as a pending change and reported, and replies ignore it until
  `desk-review keys accept FINGERPRINT`.

Replies are encrypted to the pinned journalist keys the desk still lists, and sealed to a
source's pinned reply key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from crypto.bundle import Manifest
from crypto.reply import key_id
from desk.review.errors import ReviewError
from desk.review.index import KnownDesk, PendingKey, Recipient, SourceKey
from desk.review.workspace import Workspace, log_action

JOURNALIST, SOURCE = "journalist", "source"
ADDED, REMOVED, CHANGED = "added", "removed", "changed"


@dataclass(frozen=True)
class KeyNote:
    """A key as the console reports it: pinned now, or a change left pending."""

    desk: str
    kind: str
    name: str
    fingerprint: str
    change: str | None = None  # None: pinned


def grouped(fingerprint: str) -> str:
    """A fingerprint in groups of four, the way people read them aloud."""
    return " ".join(fingerprint[i:i + 4] for i in range(0, len(fingerprint), 4))


def source_fingerprint(reply_public_key: bytes) -> str:
    """What a source's reply key is called here: the hex SHA-256 of the key."""
    return key_id(reply_public_key).hex()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def compare_offered_keys(session: Session, desk: KnownDesk, manifest: Manifest, entries: int,
                         bundle_name: str) -> tuple[list[KeyNote], list[KeyNote]]:
    """Pin what a desk's first bundle offers, keep every later difference pending; return
    (keys pinned now, changes pending after this bundle)."""
    pinned: list[KeyNote] = []
    if desk.keys_as_of is None or desk.keys_as_of <= entries:
        if manifest.recipients:
            pinned = _compare_journalists(session, desk, manifest, entries, bundle_name)
        _compare_sources(session, desk, manifest, entries, bundle_name)
        desk.keys_as_of = entries
    pending = [_pending_note(desk, change) for change in session.scalars(
        select(PendingKey).where(PendingKey.desk_key == desk.signing_key)
        .order_by(PendingKey.kind, PendingKey.name, PendingKey.fingerprint))]
    return pinned, pending


def _compare_journalists(session: Session, desk: KnownDesk, manifest: Manifest, entries: int,
                         bundle_name: str) -> list[KeyNote]:
    held = {r.fingerprint: r for r in session.scalars(
        select(Recipient).where(Recipient.desk_key == desk.signing_key))}
    offered = {r.fingerprint: r for r in manifest.recipients}
    pending = {p.fingerprint: p for p in session.scalars(
        select(PendingKey).where(PendingKey.desk_key == desk.signing_key,
                                 PendingKey.kind == JOURNALIST))}
    first = not held
    # Keys the newsroom confirmed for another desk in this workspace (a desk whose signing key
    # changed is usually the same newsroom).
    confirmed_elsewhere = set(session.scalars(
        select(Recipient.fingerprint).where(Recipient.desk_key != desk.signing_key,
                                            Recipient.pinned_at.is_not(None))))
    pinned = []
    for fingerprint, recipient in offered.items():
        if fingerprint in held:
            held[fingerprint].listed = True
            if fingerprint in pending:
                session.delete(pending.pop(fingerprint))
            continue
        if first and (fingerprint in confirmed_elsewhere or not confirmed_elsewhere):
            session.add(Recipient(desk_key=desk.signing_key, fingerprint=fingerprint,
                                  username=recipient.username,
                                  public_key=recipient.public_key, as_of_entry=entries,
                                  pinned_at=_now(), listed=True))
            pinned.append(KeyNote(desk.name, JOURNALIST, recipient.username, fingerprint))
            continue
        _offer(session, pending, desk.signing_key, fingerprint, JOURNALIST, ADDED,
               recipient.username, recipient.public_key.encode("ascii"), bundle_name, entries)
    for fingerprint, kept in held.items():
        if fingerprint not in offered:
            kept.listed = False
            _offer(session, pending, desk.signing_key, fingerprint, JOURNALIST, REMOVED,
                   kept.username, None, bundle_name, entries)
    for fingerprint, change in pending.items():
        if change.change == ADDED and fingerprint not in offered:
            session.delete(change)  # offered before, withdrawn since: nothing to confirm
    return pinned


def _compare_sources(session: Session, desk: KnownDesk, manifest: Manifest, entries: int,
                     bundle_name: str) -> None:
    """Pin a source's first reply key silently (nobody could compare it); keep another one
    pending."""
    pending = {p.name: p for p in session.scalars(
        select(PendingKey).where(PendingKey.desk_key == desk.signing_key,
                                 PendingKey.kind == SOURCE))}
    for designation, key in manifest.reply_keys.items():
        known = session.get(SourceKey, (desk.signing_key, designation))
        if known is None:
            session.add(SourceKey(desk_key=desk.signing_key, designation=designation,
                                  reply_public_key=key, as_of_entry=entries, pinned_at=_now()))
        elif known.reply_public_key == key:
            if designation in pending:
                session.delete(pending.pop(designation))
        elif designation not in pending or pending[designation].material != key:
            if designation in pending:
                session.delete(pending.pop(designation))
                session.flush()
            pending[designation] = PendingKey(
                desk_key=desk.signing_key, fingerprint=source_fingerprint(key), kind=SOURCE,
                change=CHANGED, name=designation, material=key, seen_in=bundle_name,
                as_of_entry=entries)
            session.add(pending[designation])


def _offer(session: Session, pending: dict[str, PendingKey], desk_key: str, fingerprint: str,
           kind: str, change: str, name: str, material: bytes | None, bundle_name: str,
           entries: int) -> None:
    """Record (or keep) a pending change; the first bundle that offered it stays named."""
    if fingerprint in pending and pending[fingerprint].change == change:
        return
    if fingerprint in pending:
        session.delete(pending.pop(fingerprint))
        session.flush()
    change_row = PendingKey(desk_key=desk_key, fingerprint=fingerprint, kind=kind,
                            change=change, name=name, material=material, seen_in=bundle_name,
                            as_of_entry=entries)
    session.add(change_row)
    pending[fingerprint] = change_row


def _pending_note(desk: KnownDesk, change: PendingKey) -> KeyNote:
    return KeyNote(desk.name, change.kind, change.name, change.fingerprint, change.change)


@dataclass(frozen=True)
class KeyListing:
    """`desk-review keys`: per desk, its pinned keys and pending changes."""

    desk: str
    signing_key: str
    journalists: list[tuple[str, str, str]]  # (username, fingerprint, state)
    sources: list[tuple[str, str]]  # (designation, fingerprint)
    pending: list[KeyNote]


def list_keys(workspace: Workspace) -> list[KeyListing]:
    """Every desk's pinned journalist and source keys, and what waits for confirmation."""
    listings = []
    with workspace.session() as session:
        for desk in session.scalars(select(KnownDesk).order_by(KnownDesk.first_imported)):
            journalists = [
                (r.username, r.fingerprint, _state(r)) for r in session.scalars(
                    select(Recipient).where(Recipient.desk_key == desk.signing_key)
                    .order_by(Recipient.username, Recipient.fingerprint))]
            sources = [(k.designation, source_fingerprint(k.reply_public_key))
                       for k in session.scalars(
                           select(SourceKey).where(SourceKey.desk_key == desk.signing_key)
                           .order_by(SourceKey.designation))]
            pending = [_pending_note(desk, p) for p in session.scalars(
                select(PendingKey).where(PendingKey.desk_key == desk.signing_key)
                .order_by(PendingKey.kind, PendingKey.name))]
            listings.append(KeyListing(desk.name, desk.signing_key, journalists, sources,
                                       pending))
    return listings


def _state(recipient: Recipient) -> str:
    if recipient.pinned_at is None:
        return "unconfirmed"
    return "pinned" if recipient.listed is not False else "pinned, no longer listed by the desk"


def normalized(fingerprint: str) -> str:
    """A fingerprint as typed (spaces, either case) in the form this console stores."""
    compact = "".join(fingerprint.split())
    return compact.upper() if len(compact) == 40 else compact.lower()


def accept_key(workspace: Workspace, fingerprint: str) -> list[KeyNote]:
    """Confirm the pending change (or the unconfirmed key) with this fingerprint, at every desk
    that has one; ReviewError if there is none."""
    wanted = normalized(fingerprint)
    accepted = []
    with workspace.session() as session:
        desks = {d.signing_key: d for d in session.scalars(select(KnownDesk))}
        for change in session.scalars(select(PendingKey).where(
                func.lower(PendingKey.fingerprint) == wanted.lower())):
            desk = desks[change.desk_key]
            _apply(session, change)
            accepted.append(_pending_note(desk, change))
            session.delete(change)
        for recipient in session.scalars(select(Recipient).where(
                Recipient.fingerprint == wanted, Recipient.pinned_at.is_(None))):
            recipient.pinned_at = _now()
            accepted.append(KeyNote(desks[recipient.desk_key].name, JOURNALIST,
                                    recipient.username, recipient.fingerprint, "confirmed"))
        if not accepted:
            raise ReviewError(f"no pending key change with fingerprint {fingerprint.strip()}",
                              "run `desk-review keys` to see what waits for confirmation")
        for note in accepted:
            log_action(session, None, "keys-accept", desk=note.desk, kind=note.kind,
                       name=note.name, fingerprint=note.fingerprint, change=note.change)
    return accepted


def _apply(session: Session, change: PendingKey) -> None:
    if change.change == REMOVED:
        session.execute(delete(Recipient).where(Recipient.desk_key == change.desk_key,
                                                Recipient.fingerprint == change.fingerprint))
        return
    if change.material is None:
        raise ReviewError("the workspace's pending key has no key material",
                          "someone changed index.db by hand; keep it as evidence")
    if change.kind == JOURNALIST:
        session.add(Recipient(desk_key=change.desk_key, fingerprint=change.fingerprint,
                              username=change.name,
                              public_key=change.material.decode("ascii"),
                              as_of_entry=change.as_of_entry, pinned_at=_now(), listed=True))
        return
    known = session.get(SourceKey, (change.desk_key, change.name))
    if known is None:
        session.add(SourceKey(desk_key=change.desk_key, designation=change.name,
                              reply_public_key=change.material,
                              as_of_entry=change.as_of_entry, pinned_at=_now()))
    else:
        known.reply_public_key, known.as_of_entry = change.material, change.as_of_entry
        known.pinned_at = _now()


def reply_recipients(session: Session, desk_key: str) -> list[Recipient]:
    """The journalist keys a reply's copy is encrypted to: pinned, and still listed."""
    return list(session.scalars(
        select(Recipient).where(Recipient.desk_key == desk_key,
                                Recipient.pinned_at.is_not(None),
                                Recipient.listed.is_not(False))
        .order_by(Recipient.username, Recipient.fingerprint)))


def left_out(session: Session, desk_key: str) -> list[PendingKey]:
    """Journalist keys the desk lists that a reply's copy leaves out until accepted."""
    return list(session.scalars(
        select(PendingKey).where(PendingKey.desk_key == desk_key,
                                 PendingKey.kind == JOURNALIST, PendingKey.change == ADDED)))


def unconfirmed(session: Session, desk_key: str) -> list[Recipient]:
    """Journalist keys an older console kept without anyone confirming them."""
    return list(session.scalars(
        select(Recipient).where(Recipient.desk_key == desk_key,
                                Recipient.pinned_at.is_(None))))


def pending_source_change(session: Session, desk_key: str, designation: str
                          ) -> PendingKey | None:
    """A reply key for this source that differs from the pinned one, if a bundle offered one."""
    return session.scalar(select(PendingKey).where(
        PendingKey.desk_key == desk_key, PendingKey.kind == SOURCE,
        PendingKey.name == designation))
