"""Replies to sources: ciphertext only, readable by the source's codename or the journalists."""

from __future__ import annotations

from datetime import date

from sqlalchemy import CheckConstraint, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from crypto.custody import Subject
from desk.records.models.base import Base


class Reply(Base):
    """One reply: a box only the source can open and a copy only journalists can open.

    Both live in `store/replies/<id>/`; when the source deletes the reply its box goes, and the
    journalists' copy stays, as the record of what was said.
    """

    __tablename__ = "replies"
    __table_args__ = (CheckConstraint("via IN ('console', 'web')", name="via"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"),
                                           index=True)
    # 1, 2, 3... per source: the order replies were sent in (rows hold dates only).
    number: Mapped[int]
    created_on: Mapped[date]
    # The journalist who sent it (the custody entry names them too).
    author: Mapped[str | None] = mapped_column(String(64))
    # "console": sealed on the offline machine, the desk never saw the text; "web": typed into
    # the journalist interface and sealed by the desk.
    via: Mapped[str] = mapped_column(String(8))
    # Digest of the journalists' copy (FORMAT.md, "Ciphertext digest"), as custody recorded it.
    ciphertext_sha256: Mapped[str] = mapped_column(String(64))
    # The random key of its custody entries' commitments, as for an item.
    custody_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    source_deleted: Mapped[bool] = mapped_column(default=False)

    @property
    def custody(self) -> Subject:
        """What its custody entries carry."""
        return Subject(self.id, self.ciphertext_sha256, self.custody_key)
