"""Sources, known only by a random id and the Argon2id lookup id of their codename."""

from datetime import date

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from desk.models.base import Base
from desk.models.submission import Submission


class Source(Base):
    """Someone who was given a codename."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    lookup_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_on: Mapped[date]
    last_activity_on: Mapped[date]

    submissions: Mapped[list[Submission]] = relationship(
        back_populates="source", cascade="all, delete-orphan", passive_deletes=True)
