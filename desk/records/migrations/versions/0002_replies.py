"""Replies: the desk's reply salt, sources' reply public keys, source sessions, replies.

Revision ID: 0002
Revises: 0001
"""

import os

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instance") as batch:
        batch.add_column(sa.Column("reply_salt", sa.LargeBinary(length=32), nullable=True))
    op.get_bind().execute(sa.text("UPDATE instance SET reply_salt = :salt"),
                          {"salt": os.urandom(32)})
    with op.batch_alter_table("instance") as batch:
        batch.alter_column("reply_salt", existing_type=sa.LargeBinary(length=32),
                           nullable=False)
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("reply_public_key", sa.LargeBinary(length=1216),
                                   nullable=True))
    op.create_table(
        "source_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=32), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="CASCADE",
                                name=op.f("fk_source_sessions_source_id_sources")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_sessions")),
    )
    op.create_index(op.f("ix_source_sessions_source_id"), "source_sessions", ["source_id"])
    op.create_index(op.f("ix_source_sessions_expires_at"), "source_sessions", ["expires_at"])
    op.create_table(
        "replies",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=True),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("ciphertext_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_deleted", sa.Boolean(), nullable=False),
        sa.CheckConstraint("via IN ('console', 'web')", name=op.f("ck_replies_via")),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="CASCADE",
                                name=op.f("fk_replies_source_id_sources")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replies")),
    )
    op.create_index(op.f("ix_replies_source_id"), "replies", ["source_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_replies_source_id"), table_name="replies")
    op.drop_table("replies")
    op.drop_index(op.f("ix_source_sessions_expires_at"), table_name="source_sessions")
    op.drop_index(op.f("ix_source_sessions_source_id"), table_name="source_sessions")
    op.drop_table("source_sessions")
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("reply_public_key")
    with op.batch_alter_table("instance") as batch:
        batch.drop_column("reply_salt")
