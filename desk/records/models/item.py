"""Stored items (a message or a file): only what a seized disk may show."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crypto.custody import Subject
from desk.records.models.base import Base

if TYPE_CHECKING:
    from desk.records.models.source import Source


class Item(Base):
    """One stored item; its name, type, hashes and receipt time live only in ciphertext.

    The table keeps its first name, `submissions`: renaming it would change every data
    directory for a word.
    """

    __tablename__ = "submissions"
    __table_args__ = (
        CheckConstraint("kind IN ('message', 'file')", name="kind"),
        Index("ix_submissions_source_id_seen", "source_id", "seen"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    ciphertext_size: Mapped[int] = mapped_column(BigInteger)
    # Digest of the ciphertext files (FORMAT.md, "Ciphertext digest"), as custody recorded it.
    ciphertext_sha256: Mapped[str] = mapped_column(String(64))
    # The random key of its custody entries' commitments (crypto/FORMAT.md, "Chain of
    # custody"); deleted with the row, after which those entries name nothing. None for
    # items received before custody version 2, whose entries name them in clear.
    custody_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    part_count: Mapped[int]
    received_on: Mapped[date]
    # Seen by any journalist (opened, downloaded or exported), desk-wide.
    seen: Mapped[bool] = mapped_column(default=False)

    source: Mapped[Source] = relationship(back_populates="items")

    @property
    def custody(self) -> Subject:
        """What its custody entries carry."""
        return Subject(self.id, self.ciphertext_sha256, self.custody_key)
