"""The custody log as stored: append-only rows, each a signed link of the chain."""

from datetime import date

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from crypto.custody import CustodyEntry
from desk.records.models.base import Base


class CustodyRecord(Base):
    """One custody entry (crypto/FORMAT.md, "Chain of custody"). Never updated or deleted."""

    __tablename__ = "custody_entries"

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    on: Mapped[date]
    event: Mapped[str] = mapped_column(String(16))
    # 1: `subject` and `digest` are an item's or reply's id and ciphertext digest in clear;
    # 2: keyed commitments to them (crypto/custody.py).
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    # No foreign key: the entry outlives the object it records the deletion of.
    subject: Mapped[str | None] = mapped_column(String(64), index=True)
    digest: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)
    signature: Mapped[str] = mapped_column(String(128))

    def entry(self) -> CustodyEntry:
        """The row as a chain entry."""
        return CustodyEntry(self.seq, self.on, self.event, self.subject, self.digest,
                            self.actor, self.prev_hash, self.entry_hash, self.signature,
                            self.version)

    @classmethod
    def from_entry(cls, entry: CustodyEntry) -> "CustodyRecord":
        """A row for a freshly made entry."""
        return cls(seq=entry.seq, on=entry.on, event=entry.event, version=entry.version,
                   subject=entry.subject, digest=entry.digest, actor=entry.actor,
                   prev_hash=entry.prev_hash, entry_hash=entry.entry_hash,
                   signature=entry.signature)
