"""Job queue, runners and API tokens: the control plane of `evalctl serve`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Generated with autogenerate against a Postgres database at 0002, then hand-checked:
sqlmodel's AutoString/UTCDateTime are written as the plain types they wrap, JSON columns
are JSONB on Postgres, and job kind/status, runner status and token scopes are plain
strings (no enum types), so a new value needs no migration. Only the token's sha256 is
stored (`api_token.token_hash`, unique).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", JSONType, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=8), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_token_token_hash", "api_token", ["token_hash"], unique=True)

    op.create_table(
        "job",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("spec_text", sa.String(), nullable=False),
        sa.Column("spec_path", sa.String(), nullable=True),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("created_by_token_id", sa.Integer(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.Integer(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("failure_reason", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_created_at", "job", ["created_at"])
    op.create_index("ix_job_run_id", "job", ["run_id"])
    op.create_index("ix_job_status_created_at", "job", ["status", "created_at"])

    op.create_table(
        "job_log",
        sa.Column("line", sa.String(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_log_job_id", "job_log", ["job_id"])

    op.create_table(
        "runner",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current_job_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["current_job_id"], ["job.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runner_name", "runner", ["name"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_runner_name", table_name="runner")
    op.drop_table("runner")
    op.drop_index("ix_job_log_job_id", table_name="job_log")
    op.drop_table("job_log")
    op.drop_index("ix_job_status_created_at", table_name="job")
    op.drop_index("ix_job_run_id", table_name="job")
    op.drop_index("ix_job_created_at", table_name="job")
    op.drop_table("job")
    op.drop_index("ix_api_token_token_hash", table_name="api_token")
    op.drop_table("api_token")
