"""Idempotency keys on the rows remote writes create, and runners bound to their token.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

A retried request (the answer was lost; the client sends the same `Idempotency-Key`)
must find the row the first try wrote: `run`, `evaluation`, `alias_event` and `job` keep
the key of the request that created them (unique), `job.claim_key` the key of the claim
holding the lease (unique; cleared when the lease ends), `job.finish_key` the key of the
finish that ended it, and `job_log.batch_key` the key of a batch on its first line
(unique). `runner.token_id` is the token that registered the runner; rows from before
this revision have none, so their runners must register again (the agent does at start).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, column) pairs holding a unique key, each with a unique index ix_<table>_<column>.
UNIQUE_KEYS = (
    ("run", "idempotency_key"),
    ("evaluation", "idempotency_key"),
    ("alias_event", "idempotency_key"),
    ("job", "idempotency_key"),
    ("job", "claim_key"),
    ("job_log", "batch_key"),
)


def upgrade() -> None:
    for table, column in UNIQUE_KEYS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(column, sa.String(length=100), nullable=True))
        op.create_index(f"ix_{table}_{column}", table, [column], unique=True)
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("finish_key", sa.String(length=100), nullable=True))
    with op.batch_alter_table("runner") as batch:
        batch.add_column(sa.Column("token_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runner") as batch:
        batch.drop_column("token_id")
    with op.batch_alter_table("job") as batch:
        batch.drop_column("finish_key")
    for table, column in reversed(UNIQUE_KEYS):
        op.drop_index(f"ix_{table}_{column}", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
