"""The embedded registry: `Registry` on a local database through `service.crud`.

`LocalRegistry` opens one short session per call (SQLite or Postgres), brings the schema to
head on construction unless told not to, and returns `*Public` models, never rows. It holds
no SQL of its own (`service.crud`) and no engine tuning (`service.db`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from service import crud
from service.db import IMMEDIATE, ensure_schema, get_engine, normalize_url
from service.models import (
    AliasEventPublic,
    AliasPublic,
    CheckpointCreate,
    CheckpointPublic,
    EvalExampleCreate,
    EvalExamplePublic,
    EvalExamplesPublic,
    EvaluationCreate,
    EvaluationPublic,
    ExperimentPublic,
    RunCreate,
    RunPublic,
    RunsPublic,
    RunStatus,
    RunUpdate,
)
from service.registry import ExampleScores


class LocalRegistry:
    """The registry on a database this process opens itself (the embedded default)."""

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        if url is None:
            from service.settings import get_settings

            url = get_settings().db_url
        self.url = normalize_url(url)
        if migrate:
            ensure_schema(self.url)
        self.engine: Engine = get_engine(self.url)
        # Writes read before they write (get-or-create, idempotent inserts); on SQLite they
        # take the write lock at BEGIN so a second process waits instead of failing.
        self._write_engine = self.engine.execution_options(**IMMEDIATE)

    def __repr__(self) -> str:
        return f"LocalRegistry({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        with Session(self._write_engine if write else self.engine) as session:
            yield session

    def get_or_create_experiment(self, *, name: str) -> ExperimentPublic:
        """Return the experiment called `name`, creating it if needed."""
        with self._session(write=True) as session:
            row = crud.get_or_create_experiment(session=session, name=name)
            return ExperimentPublic.model_validate(row)

    def get_experiment(self, *, name: str) -> ExperimentPublic:
        """Return the experiment called `name` (NotFoundError, with a suggestion, if none)."""
        with self._session() as session:
            row = crud.get_experiment_by_name(session=session, name=name)
            return ExperimentPublic.model_validate(row)

    def list_experiments(self) -> list[ExperimentPublic]:
        """List all experiments by name."""
        with self._session() as session:
            rows = crud.list_experiments(session=session)
            return [ExperimentPublic.model_validate(row) for row in rows]

    def create_run(self, *, run_in: RunCreate) -> RunPublic:
        """Create a run."""
        with self._session(write=True) as session:
            return RunPublic.model_validate(crud.create_run(session=session, run_in=run_in))

    def update_run(self, *, run_id: int, run_update: RunUpdate) -> RunPublic:
        """Apply the set fields of `run_update` to a run."""
        with self._session(write=True) as session:
            row = crud.update_run(session=session, run_id=run_id, run_update=run_update)
            return RunPublic.model_validate(row)

    def get_run(self, *, ref: str) -> RunPublic:
        """Return a run by id, or the newest run with that name (NotFoundError if none)."""
        with self._session() as session:
            return RunPublic.model_validate(crud.find_run(session=session, ref=ref))

    def list_runs(
        self,
        *,
        experiment: str | None = None,
        status: RunStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> RunsPublic:
        """List runs, newest first."""
        with self._session() as session:
            rows, count = crud.list_runs(
                session=session, experiment=experiment, status=status, limit=limit, offset=offset
            )
            return RunsPublic(data=[RunPublic.model_validate(row) for row in rows], count=count)

    def record_checkpoint(self, *, checkpoint_in: CheckpointCreate) -> CheckpointPublic:
        """Record a checkpoint; idempotent on (run, step, sha256)."""
        with self._session(write=True) as session:
            row = crud.record_checkpoint(session=session, checkpoint_in=checkpoint_in)
            return CheckpointPublic.model_validate(row)

    def get_checkpoint(self, *, checkpoint_id: int) -> CheckpointPublic:
        """Return a checkpoint (NotFoundError if none)."""
        with self._session() as session:
            row = crud.get_checkpoint(session=session, checkpoint_id=checkpoint_id)
            return CheckpointPublic.model_validate(row)

    def list_checkpoints(self, *, run_id: int) -> list[CheckpointPublic]:
        """List a run's checkpoints by step."""
        with self._session() as session:
            rows = crud.list_checkpoints(session=session, run_id=run_id)
            return [CheckpointPublic.model_validate(row) for row in rows]

    def record_evaluation(
        self, *, evaluation_in: EvaluationCreate, examples: Sequence[EvalExampleCreate] = ()
    ) -> EvaluationPublic:
        """Record an evaluation and its per-example scores in one transaction."""
        with self._session(write=True) as session:
            row = crud.record_evaluation(
                session=session, evaluation_in=evaluation_in, examples=examples
            )
            return EvaluationPublic.model_validate(row)

    def get_evaluation(self, *, evaluation_id: int) -> EvaluationPublic:
        """Return an evaluation (NotFoundError if none)."""
        with self._session() as session:
            row = crud.get_evaluation(session=session, evaluation_id=evaluation_id)
            return EvaluationPublic.model_validate(row)

    def list_evaluations(
        self, *, run_id: int | None = None, checkpoint_id: int | None = None
    ) -> list[EvaluationPublic]:
        """List evaluations of a run's checkpoints or of one checkpoint."""
        with self._session() as session:
            rows = crud.list_evaluations(
                session=session, run_id=run_id, checkpoint_id=checkpoint_id
            )
            return [EvaluationPublic.model_validate(row) for row in rows]

    def list_examples(
        self, *, evaluation_id: int, limit: int | None = None, offset: int = 0
    ) -> EvalExamplesPublic:
        """List an evaluation's per-example scores in their original order."""
        with self._session() as session:
            rows, count = crud.list_examples(
                session=session, evaluation_id=evaluation_id, limit=limit, offset=offset
            )
            data = [EvalExamplePublic.model_validate(row) for row in rows]
            return EvalExamplesPublic(data=data, count=count)

    def list_example_scores(self, *, evaluation_id: int) -> list[ExampleScores]:
        """Return every example's (example_id, scores, cluster id), fast, in recorded order."""
        with self._session() as session:
            rows = crud.example_scores(session=session, evaluation_id=evaluation_id)
        return [ExampleScores(eid, scores or {}, cluster) for eid, scores, cluster in rows]

    def set_alias(
        self,
        *,
        experiment_id: int,
        name: str,
        checkpoint_id: int,
        actor: str,
        action: str = "promote",
        gate: dict[str, Any] | None = None,
        version: int | None = None,
    ) -> AliasPublic:
        """Point an alias at a checkpoint and record the move in its history."""
        with self._session(write=True) as session:
            row = crud.set_alias(
                session=session,
                experiment_id=experiment_id,
                name=name,
                checkpoint_id=checkpoint_id,
                actor=actor,
                action=action,
                gate=gate,
                version=version,
            )
            return AliasPublic.model_validate(row)

    def get_alias(self, *, experiment_id: int, name: str) -> AliasPublic:
        """Return an experiment's alias (NotFoundError if it is not set)."""
        with self._session() as session:
            row = crud.get_alias(session=session, experiment_id=experiment_id, name=name)
            return AliasPublic.model_validate(row)

    def list_aliases(self, *, experiment_id: int | None = None) -> list[AliasPublic]:
        """List aliases of one experiment, or of all, by experiment and name."""
        with self._session() as session:
            rows = crud.list_aliases(session=session, experiment_id=experiment_id)
            return [AliasPublic.model_validate(row) for row in rows]

    def alias_history(self, *, experiment_id: int, name: str) -> list[AliasEventPublic]:
        """List an alias's moves, newest first."""
        with self._session() as session:
            rows = crud.alias_history(session=session, experiment_id=experiment_id, name=name)
            return [AliasEventPublic.model_validate(row) for row in rows]
