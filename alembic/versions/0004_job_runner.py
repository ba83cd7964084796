"""Jobs remember the runner that last claimed them (`job.runner_id`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

`lease_owner` is cleared when a job ends, so nothing said which runner ran a finished job;
the dashboard's run and jobs pages show it. Existing running jobs get their lease owner.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("runner_id", sa.Integer(), nullable=True))
    op.execute("UPDATE job SET runner_id = lease_owner WHERE lease_owner IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.drop_column("runner_id")
