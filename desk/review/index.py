"""The workspace's own small SQLite index: desks, items, parts, custody, and the action log."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from crypto.custody import Subject


class IndexBase(DeclarativeBase):
    """Base of the console's index models (separate from the online desk's)."""

    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


class KnownDesk(IndexBase):
    """A desk whose custody signing key this workspace pinned on first import."""

    __tablename__ = "desks"

    signing_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    first_imported: Mapped[datetime]
    # Custody length of the newest bundle whose keys were compared with the pinned ones: an
    # older bundle imported later changes nothing.
    keys_as_of: Mapped[int | None]


class CustodyLine(IndexBase):
    """One verified custody entry of a desk, as imported (JSON line)."""

    __tablename__ = "custody"

    desk_key: Mapped[str] = mapped_column(ForeignKey("desks.signing_key"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    entry: Mapped[str] = mapped_column(Text)


class Item(IndexBase):
    """An imported object: ciphertext in the workspace, plaintext only where asked."""

    __tablename__ = "items"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    desk_key: Mapped[str] = mapped_column(ForeignKey("desks.signing_key"))
    source: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    # Whole-file SHA-256 from the metadata record, when the desk could compute it.
    sha256: Mapped[str | None] = mapped_column(String(64))
    received_on: Mapped[date]
    received_at: Mapped[datetime]
    ciphertext_sha256: Mapped[str] = mapped_column(String(64))
    # The key of its custody entries' commitments, from the bundle; None for version 1.
    custody_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    verified: Mapped[bool] = mapped_column(default=False)
    imported_at: Mapped[datetime]
    decrypted_path: Mapped[str | None] = mapped_column(Text)
    decrypted_sha256: Mapped[str | None] = mapped_column(String(64))

    parts: Mapped[list[Part]] = relationship(order_by="Part.name", cascade="all, delete-orphan")

    @property
    def custody(self) -> Subject:
        """What its custody entries carry."""
        return Subject(self.id, self.ciphertext_sha256, self.custody_key)


class Part(IndexBase):
    """One part's plaintext size and SHA-256, from the encrypted metadata record."""

    __tablename__ = "parts"

    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class Action(IndexBase):
    """The console's own log of what was done to each item, hash-chained."""

    __tablename__ = "actions"

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    item_id: Mapped[str | None] = mapped_column(String(32), index=True)
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class SourceKey(IndexBase):
    """A source's reply public key, pinned the first time a bundle carried it (a codename's key
    never changes, so a bundle offering another one leaves it as a PendingKey)."""

    __tablename__ = "source_keys"

    desk_key: Mapped[str] = mapped_column(ForeignKey("desks.signing_key"), primary_key=True)
    designation: Mapped[str] = mapped_column(String(64), primary_key=True)
    reply_public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # Length of the custody log of the bundle it came from.
    as_of_entry: Mapped[int]
    # When it was pinned; None for a key an older console kept (pinned on first sight too).
    pinned_at: Mapped[datetime | None]


class Recipient(IndexBase):
    """A pinned journalist key of a desk: pinned on the desk's first import, or accepted with
    `desk-review keys accept` after the journalist compared its fingerprint."""

    __tablename__ = "recipients"

    desk_key: Mapped[str] = mapped_column(ForeignKey("desks.signing_key"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(Text)
    as_of_entry: Mapped[int]
    # When it was pinned; None for a key an older console took from a bundle unconfirmed.
    pinned_at: Mapped[datetime | None]
    # False once the desk's newest bundle no longer lists it (replies then leave it out).
    listed: Mapped[bool | None]


class PendingKey(IndexBase):
    """A key change a bundle offered that nobody has confirmed: a journalist key added or no
    longer listed, or another reply key for a source. Replies ignore it until `desk-review keys
    accept FINGERPRINT`."""

    __tablename__ = "pending_keys"

    desk_key: Mapped[str] = mapped_column(ForeignKey("desks.signing_key"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # journalist or source
    # The journalist's username or the source's designation, as the bundle says.
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A journalist key's OpenPGP fingerprint, or the SHA-256 of a source's reply key (hex).
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    change: Mapped[str] = mapped_column(String(16))  # "added", "removed" or "changed"
    # The offered key: an armored OpenPGP key, or a reply public key; None for "removed".
    material: Mapped[bytes | None] = mapped_column(LargeBinary)
    seen_in: Mapped[str] = mapped_column(Text)  # the bundle's file name
    as_of_entry: Mapped[int]


class ReplyCopyRecord(IndexBase):
    """A reply sent to a source: its journalists' copy stays encrypted in the workspace."""

    __tablename__ = "replies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    desk_key: Mapped[str] = mapped_column(ForeignKey("desks.signing_key"))
    source: Mapped[str] = mapped_column(String(64), index=True)
    number: Mapped[int]
    sent_on: Mapped[date]
    author: Mapped[str | None] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(8))
    ciphertext_sha256: Mapped[str] = mapped_column(String(64))
