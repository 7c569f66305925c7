"""Journalists set their own passphrase and two-factor secret through a one-time enrolment link,
and account changes are recorded under the name of whoever made them.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journalists") as batch:
        batch.add_column(sa.Column("enrolment_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("enrolment_until", sa.Date(), nullable=True))
        batch.create_unique_constraint(op.f("uq_journalists_enrolment_hash"),
                                       ["enrolment_hash"])
    op.create_table(
        "account_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("on", sa.Date(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_events")),
    )
    op.create_index(op.f("ix_account_events_account"), "account_events", ["account"])


def downgrade() -> None:
    op.drop_index(op.f("ix_account_events_account"), table_name="account_events")
    op.drop_table("account_events")
    with op.batch_alter_table("journalists") as batch:
        batch.drop_constraint(op.f("uq_journalists_enrolment_hash"), type_="unique")
        batch.drop_column("enrolment_until")
        batch.drop_column("enrolment_hash")
