"""Initial schema: instance, journalists and sessions, sources, submissions, uploads, custody.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite refuses any change to a custody row; the hash chain detects it anyway if someone
# with direct access to the file drops the triggers first.
APPEND_ONLY_TRIGGERS = [
    f"CREATE TRIGGER custody_entries_no_{verb} BEFORE {verb.upper()} ON custody_entries "
    "BEGIN SELECT RAISE(ABORT, 'the custody log is append-only'); END"
    for verb in ("update", "delete")
]


def upgrade() -> None:
    op.create_table(
        "instance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lookup_salt", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("max_upload_bytes", sa.BigInteger(), nullable=True),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance")),
    )
    op.create_table(
        "journalists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=40), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("totp_secret", sa.LargeBinary(length=20), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("failures_since", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journalists")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_journalists_fingerprint")),
        sa.UniqueConstraint("username", name=op.f("uq_journalists_username")),
    )
    op.create_table(
        "journalist_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("journalist_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["journalist_id"], ["journalists.id"],
                                name=op.f("fk_journalist_sessions_journalist_id_journalists"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journalist_sessions")),
    )
    op.create_index(op.f("ix_journalist_sessions_expires_at"), "journalist_sessions",
                    ["expires_at"])
    op.create_index(op.f("ix_journalist_sessions_journalist_id"), "journalist_sessions",
                    ["journalist_id"])
    op.create_table(
        "sources",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("lookup_id", sa.String(length=64), nullable=False),
        sa.Column("designation", sa.String(length=64), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("last_activity_on", sa.Date(), nullable=False),
        sa.Column("starred", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("designation", name=op.f("uq_sources_designation")),
        sa.UniqueConstraint("lookup_id", name=op.f("uq_sources_lookup_id")),
    )
    op.create_index("ix_sources_starred_activity", "sources", ["starred", "last_activity_on"])
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ciphertext_size", sa.BigInteger(), nullable=False),
        sa.Column("ciphertext_sha256", sa.String(length=64), nullable=False),
        sa.Column("part_count", sa.Integer(), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("seen", sa.Boolean(), nullable=False),
        sa.CheckConstraint("kind IN ('message', 'file')", name=op.f("ck_submissions_kind")),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"],
                                name=op.f("fk_submissions_source_id_sources"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submissions")),
    )
    op.create_index("ix_submissions_source_id_seen", "submissions", ["source_id", "seen"])
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("part_count", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"],
                                name=op.f("fk_uploads_source_id_sources"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    op.create_index(op.f("ix_uploads_expires_on"), "uploads", ["expires_on"])
    op.create_index(op.f("ix_uploads_source_id"), "uploads", ["source_id"])
    op.create_table(
        "custody_entries",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("on", sa.Date(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=True),
        sa.Column("ciphertext_sha256", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_custody_entries")),
        sa.UniqueConstraint("entry_hash", name=op.f("uq_custody_entries_entry_hash")),
    )
    op.create_index(op.f("ix_custody_entries_object_id"), "custody_entries", ["object_id"])
    if op.get_bind().dialect.name == "sqlite":
        for trigger in APPEND_ONLY_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    op.drop_index(op.f("ix_custody_entries_object_id"), table_name="custody_entries")
    op.drop_table("custody_entries")
    op.drop_index(op.f("ix_uploads_source_id"), table_name="uploads")
    op.drop_index(op.f("ix_uploads_expires_on"), table_name="uploads")
    op.drop_table("uploads")
    op.drop_index("ix_submissions_source_id_seen", table_name="submissions")
    op.drop_table("submissions")
    op.drop_index("ix_sources_starred_activity", table_name="sources")
    op.drop_table("sources")
    op.drop_index(op.f("ix_journalist_sessions_journalist_id"), table_name="journalist_sessions")
    op.drop_index(op.f("ix_journalist_sessions_expires_at"), table_name="journalist_sessions")
    op.drop_table("journalist_sessions")
    op.drop_table("journalists")
    op.drop_table("instance")
