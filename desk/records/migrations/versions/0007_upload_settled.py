"""An upload row says whether a settle has seen it, so that `desk purge` can drop uploads that
are still empty after one settle (desk/intake/tus.py, "purge_expired_uploads").

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("settled", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("settled")
