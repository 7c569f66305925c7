"""Initial schema: instance, journalists, sources, submissions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lookup_salt", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance")),
    )
    op.create_table(
        "journalists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=40), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journalists")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_journalists_fingerprint")),
        sa.UniqueConstraint("username", name=op.f("uq_journalists_username")),
    )
    op.create_table(
        "sources",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("lookup_id", sa.String(length=64), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("last_activity_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("lookup_id", name=op.f("uq_sources_lookup_id")),
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ciphertext_size", sa.BigInteger(), nullable=False),
        sa.Column("part_count", sa.Integer(), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.CheckConstraint("kind IN ('message', 'file')", name=op.f("ck_submissions_kind")),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"],
                                name=op.f("fk_submissions_source_id_sources"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submissions")),
    )
    op.create_index(op.f("ix_submissions_source_id"), "submissions", ["source_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_submissions_source_id"), table_name="submissions")
    op.drop_table("submissions")
    op.drop_table("sources")
    op.drop_table("journalists")
    op.drop_table("instance")
