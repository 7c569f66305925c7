"""Resumable uploads in progress: sizes and dates only; names and part hashes stay sealed."""

from datetime import date

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String, false
from sqlalchemy.orm import Mapped, mapped_column

from desk.records.models.base import Base


class Upload(Base):
    """A tus upload that has not received all its bytes yet."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"),
                                           index=True)
    # SHA-256 of the owner secret, which only a session of the source's codename yields
    # (deploy/STORAGE.md): other codenames get 404.
    owner: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    part_count: Mapped[int] = mapped_column(default=0)
    # Filename, type and each part's plaintext hash, sealed (AES-256-GCM) with a key derived
    # from that cookie secret: the server's disk alone cannot read them.
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_on: Mapped[date]
    expires_on: Mapped[date] = mapped_column(index=True)
    # Whether a settle has run since the upload was made: says no more than "since the last
    # settle" does. `desk purge` drops an upload that a settle saw and that is still empty.
    settled: Mapped[bool] = mapped_column(default=False, server_default=false())
