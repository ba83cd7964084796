"""Initial schema: experiments, runs, checkpoints, evaluations and their examples.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Generated with autogenerate against an empty SQLite database, then hand-checked:
sqlmodel's AutoString/UTCDateTime are written as the plain types they wrap, JSON columns
are JSONB on Postgres, and the downgrade also drops the Postgres enum types (drop_table
does not).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "experiment",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_experiment_name", "experiment", ["name"], unique=True)

    op.create_table(
        "run",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("spec_text", sa.String(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("spec_path", sa.String(), nullable=True),
        sa.Column("git_sha", sa.String(length=64), nullable=True),
        sa.Column("base_model", sa.String(), nullable=True),
        sa.Column("base_model_hash", sa.String(length=64), nullable=True),
        sa.Column("dataset_hashes", JSONType, nullable=False),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("queued", "running", "succeeded", "failed", "cancelled", name="runstatus"),
            nullable=False,
        ),
        sa.Column("failure_reason", sa.String(), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("best_checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiment.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_created_at", "run", ["created_at"])
    op.create_index("ix_run_experiment_id", "run", ["experiment_id"])
    op.create_index("ix_run_name", "run", ["name"])
    op.create_index("ix_run_status", "run", ["status"])

    op.create_table(
        "checkpoint",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=True),
        sa.Column("eval_loss", sa.Float(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "step", "sha256", name="uq_checkpoint_identity"),
    )
    op.create_index("ix_checkpoint_run_id", "checkpoint", ["run_id"])

    op.create_table(
        "evaluation",
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("evaluator", sa.String(length=100), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "status", sa.Enum("succeeded", "failed", name="evaluationstatus"), nullable=False
        ),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("metrics", JSONType, nullable=False),
        sa.Column("n_examples", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["checkpoint_id"], ["checkpoint.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_evaluation_checkpoint_id", "evaluation", ["checkpoint_id"])
    op.create_index("ix_evaluation_evaluator", "evaluation", ["evaluator"])

    op.create_table(
        "eval_example",
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("example_id", sa.String(length=200), nullable=False),
        sa.Column("scores", JSONType, nullable=False),
        sa.Column("details", JSONType, nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["evaluation_id"], ["evaluation.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_eval_example_evaluation_id", "eval_example", ["evaluation_id"])


def downgrade() -> None:
    op.drop_index("ix_eval_example_evaluation_id", table_name="eval_example")
    op.drop_table("eval_example")
    op.drop_index("ix_evaluation_evaluator", table_name="evaluation")
    op.drop_index("ix_evaluation_checkpoint_id", table_name="evaluation")
    op.drop_table("evaluation")
    op.drop_index("ix_checkpoint_run_id", table_name="checkpoint")
    op.drop_table("checkpoint")
    op.drop_index("ix_run_status", table_name="run")
    op.drop_index("ix_run_name", table_name="run")
    op.drop_index("ix_run_experiment_id", table_name="run")
    op.drop_index("ix_run_created_at", table_name="run")
    op.drop_table("run")
    op.drop_index("ix_experiment_name", table_name="experiment")
    op.drop_table("experiment")
    # Postgres keeps enum types after their tables are gone; other databases have none.
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TYPE IF EXISTS evaluationstatus")
        op.execute("DROP TYPE IF EXISTS runstatus")
