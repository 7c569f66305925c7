"""Custody version 2: items and replies get a random custody key, and custody entries carry
keyed commitments (`subject`, `digest`) instead of ids and digests in clear, so that deleting
an item leaves nothing in the log that names it. Entries already written stay version 1.

On SQLite the log is copied row for row into a table of the new shape (SQLite cannot change
a column's type in place) and its append-only triggers are put back as they were.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

def upgrade() -> None:
    for table in ("submissions", "replies"):
        op.add_column(table, sa.Column("custody_key", sa.LargeBinary(length=32), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_custody_sqlite("version INTEGER DEFAULT '1' NOT NULL, subject VARCHAR(64), "
                                "digest VARCHAR(64)",
                                "1, object_id, ciphertext_sha256", "subject")
    else:
        op.add_column("custody_entries", sa.Column("version", sa.Integer(), nullable=False,
                                                   server_default="1"))
        op.drop_index(op.f("ix_custody_entries_object_id"), table_name="custody_entries")
        op.alter_column("custody_entries", "object_id", new_column_name="subject",
                        type_=sa.String(length=64))
        op.alter_column("custody_entries", "ciphertext_sha256", new_column_name="digest")
        op.create_index(op.f("ix_custody_entries_subject"), "custody_entries", ["subject"])


def downgrade() -> None:
    """Only a log with no version 2 entry goes back: version 1 cannot say what they say."""
    if op.get_bind().execute(sa.text(
            "SELECT 1 FROM custody_entries WHERE version <> 1 LIMIT 1")).first():
        raise RuntimeError("the custody log holds version 2 entries; it cannot go back")
    _rebuild_custody_sqlite("object_id VARCHAR(32), ciphertext_sha256 VARCHAR(64)",
                            "subject, digest", "object_id")
    for table in ("submissions", "replies"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("custody_key")


def _rebuild_custody_sqlite(columns: str, values: str, indexed: str) -> None:
    """Copy the log into a table with the new columns, row for row, and put back its
    append-only triggers exactly as they were: SQLite cannot change a column's type in place,
    and its triggers refuse UPDATE and DELETE, not a copy. One transaction, like every
    migration."""
    bind = op.get_bind()
    triggers = [row[0] for row in bind.execute(sa.text(
        "SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'custody_entries' "
        "ORDER BY name"))]
    op.execute(f"""CREATE TABLE custody_entries_new (
        seq INTEGER NOT NULL, "on" DATE NOT NULL, event VARCHAR(16) NOT NULL, {columns},
        actor VARCHAR(64), prev_hash VARCHAR(64) NOT NULL, entry_hash VARCHAR(64) NOT NULL,
        signature VARCHAR(128) NOT NULL,
        CONSTRAINT pk_custody_entries PRIMARY KEY (seq),
        CONSTRAINT uq_custody_entries_entry_hash UNIQUE (entry_hash))""")
    # The column lists are this module's own constants, not input.
    op.execute(f"""INSERT INTO custody_entries_new
        SELECT seq, "on", event, {values}, actor, prev_hash, entry_hash, signature
        FROM custody_entries ORDER BY seq""")  # noqa: S608
    op.execute("DROP TABLE custody_entries")
    op.execute("ALTER TABLE custody_entries_new RENAME TO custody_entries")
    op.create_index(op.f(f"ix_custody_entries_{indexed}"), "custody_entries", [indexed])
    for trigger in triggers:
        op.execute(trigger)
