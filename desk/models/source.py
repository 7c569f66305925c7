"""Sources, known only by a random id, a random designation and their codename's lookup id."""

from datetime import date

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from desk.models.base import Base
from desk.models.submission import Submission


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

    submissions: Mapped[list[Submission]] = relationship(
        back_populates="source", cascade="all, delete-orphan", passive_deletes=True)
