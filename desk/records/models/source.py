"""Sources, known only by a random id, a random designation and their codename's lookup id."""

from datetime import date

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from desk.records.models.base import Base
from desk.records.models.item import Item


class Source(Base):
    """Someone who was given a codename."""

    __tablename__ = "sources"
    # The sources list: starred first, then most recent activity.
    __table_args__ = (Index("ix_sources_starred_activity", "starred", "last_activity_on"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    lookup_id: Mapped[str] = mapped_column(String(64), unique=True)
    # A random two-word name for journalists ("amber heron"); unrelated to the codename.
    designation: Mapped[str] = mapped_column(String(64), unique=True)
    created_on: Mapped[date]
    last_activity_on: Mapped[date]
    starred: Mapped[bool] = mapped_column(default=False)
    # The public half of the reply key derived from the codename (FORMAT.md, "Reply boxes");
    # None for a source made before replies existed, until they log in.
    reply_public_key: Mapped[bytes | None] = mapped_column(LargeBinary(1216))

    items: Mapped[list[Item]] = relationship(
        back_populates="source", cascade="all, delete-orphan", passive_deletes=True)


class SourceSession(Base):
    """A server-side session of the source interface; the cookie holds only a random token.

    The row keeps the token's SHA-256, the session's data (including the source's reply key,
    sealed under a key derived from the token, which only the cookie holds) and its expiry.
    Rows are deleted at logout, and expired ones when the next session starts.
    """

    __tablename__ = "source_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source_id: Mapped[str | None] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    data: Mapped[str] = mapped_column(Text)
    # The day the idle deadline falls on; the deadline itself is sealed inside `data`.
    expires_on: Mapped[date] = mapped_column(index=True)
