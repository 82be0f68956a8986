"""audit log: the tools each answer called (names; arguments only where the key's policy keeps content)

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
    op.add_column("audit_log", sa.Column("tool_calls", sa.JSON(), nullable=True))  # nullable: a plain ADD


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("tool_calls")
