"""Aliases: movable names (e.g. production) on checkpoints, and their history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Generated with autogenerate against a Postgres database at 0001, then hand-checked:
sqlmodel's AutoString/UTCDateTime are written as the plain types they wrap, the gate
summary is JSONB on Postgres, and `alias_event.action` is a plain string (no enum type),
so a new action needs no migration.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "alias",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["checkpoint_id"], ["checkpoint.id"]),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiment.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("experiment_id", "name", name="uq_alias_name"),
    )
    op.create_index("ix_alias_experiment_id", "alias", ["experiment_id"])

    op.create_table(
        "alias_event",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("previous_checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("gate", JSONType, nullable=True),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["checkpoint_id"], ["checkpoint.id"]),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiment.id"]),
        sa.ForeignKeyConstraint(["previous_checkpoint_id"], ["checkpoint.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alias_event_created_at", "alias_event", ["created_at"])
    op.create_index("ix_alias_event_experiment_id", "alias_event", ["experiment_id"])


def downgrade() -> None:
    op.drop_index("ix_alias_event_experiment_id", table_name="alias_event")
    op.drop_index("ix_alias_event_created_at", table_name="alias_event")
    op.drop_table("alias_event")
    op.drop_index("ix_alias_experiment_id", table_name="alias")
    op.drop_table("alias")
