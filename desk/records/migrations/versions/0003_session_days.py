"""Session rows keep the day they expire on, not the instant: the idle deadline moves into the
sealed session data. Every session ends (its data's format changes too).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("journalist_sessions", "source_sessions")


def upgrade() -> None:
    for table in TABLES:
        op.execute(sa.table(table).delete())
        op.drop_index(op.f(f"ix_{table}_expires_at"), table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("expires_at")
            batch.add_column(sa.Column("expires_on", sa.Date(), nullable=False))
        op.create_index(op.f(f"ix_{table}_expires_on"), table, ["expires_on"])


def downgrade() -> None:
    for table in TABLES:
        op.execute(sa.table(table).delete())
        op.drop_index(op.f(f"ix_{table}_expires_on"), table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("expires_on")
            batch.add_column(sa.Column("expires_at", sa.DateTime(), nullable=False))
        op.create_index(op.f(f"ix_{table}_expires_at"), table, ["expires_at"])
