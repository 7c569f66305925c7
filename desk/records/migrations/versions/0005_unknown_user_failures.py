"""The desk counts failed journalist logins for names with no account, so that such a failure
costs the same write and commit as one counted on an account (desk/records/credentials.py).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instance") as batch:
        batch.add_column(sa.Column("unknown_user_failures", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("instance") as batch:
        batch.drop_column("unknown_user_failures")
