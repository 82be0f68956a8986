"""eval runs: every run of an eval suite, its inputs' hashes, metrics and verdicts

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("suite", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("baseline", sa.String(4096), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("hashes", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("verdicts", sa.JSON(), nullable=False),
        sa.Column("seconds", sa.JSON(), nullable=False),
    )
    op.create_index("ix_eval_runs_suite", "eval_runs", ["suite"])


def downgrade() -> None:
    op.drop_index("ix_eval_runs_suite", "eval_runs")
    op.drop_table("eval_runs")
