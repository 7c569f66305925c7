"""Journalists and the key fingerprints the desk encrypts to."""

from datetime import date

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from desk.models.base import Base


class Journalist(Base):
    """A journalist account and its pinned OpenPGP key."""

    __tablename__ = "journalists"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # The desk encrypts to this exact 40-hex fingerprint, never to a user id.
    fingerprint: Mapped[str] = mapped_column(String(40), unique=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_on: Mapped[date]
