"""The one row describing this desk."""

from datetime import date

from sqlalchemy import BigInteger, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from desk.records.models.base import Base

DEFAULT_NAME = "desk"


class Instance(Base):
    """Per-desk values made by `desk init` and settings admins change."""

    __tablename__ = "instance"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Salt of the Argon2id lookup id: one derivation per codename, whatever the number of sources.
    lookup_salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    # Salt of the Argon2id derivation of each source's reply key from the codename.
    reply_salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_on: Mapped[date]
    name: Mapped[str] = mapped_column(String(100), default=DEFAULT_NAME)
    # None: DESK_MAX_UPLOAD_BYTES applies.
    max_upload_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # None: keep submissions until a journalist deletes them.
    retention_days: Mapped[int | None]
    # Failed journalist logins, since the last settle, for a name with no account that can log
    # in. Counting one is the same one-row write and commit as counting a failure on an
    # account, so that the two cost the same time (desk/records/credentials.py); nothing reads
    # it, and every settle sets it back to 0.
    unknown_user_failures: Mapped[int] = mapped_column(default=0)
