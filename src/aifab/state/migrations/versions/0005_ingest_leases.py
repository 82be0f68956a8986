"""ingest jobs: the owner's lease (host, token, expiry), the request to resume, the recovery taken

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None



def _columns() -> list[sa.Column]:
    return [
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("instance", sa.String(32), nullable=True),
        sa.Column("lease_expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("request", sa.JSON(), nullable=True),
        sa.Column("recovery", sa.JSON(), nullable=True),
    ]


def upgrade() -> None:
    for column in _columns():  # nullable columns: a plain ALTER TABLE ADD on SQLite and PostgreSQL
        op.add_column("ingest_jobs", column)


def downgrade() -> None:
    with op.batch_alter_table("ingest_jobs") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
