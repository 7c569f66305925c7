"""The one row describing this desk."""

from datetime import date

from sqlalchemy import LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from desk.models.base import Base


class Instance(Base):
    """Per-desk values made by `desk init`."""

    __tablename__ = "instance"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Salt of the Argon2id lookup id: one derivation per codename, whatever the number of sources.
    lookup_salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_on: Mapped[date]
