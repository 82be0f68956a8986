"""api keys: a tool scope (null = every tool, a list = only those, [] = none)

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
    op.add_column("api_keys", sa.Column("tools", sa.JSON(), nullable=True))  # null: existing keys keep every tool


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("tools")
