"""The registry interface that runners, the CLI and the gate use, whatever the transport.

`Registry` is the contract for experiments, runs, checkpoints, evaluations (with their
per-example scores) and aliases; `service.local.LocalRegistry` implements it on a SQLModel
session (the embedded default) and `service.remote.RemoteRegistry` over HTTP against
`evalctl serve`, and the same tests run against both; `open_registry()` picks one from the
settings. Jobs and runners are not part of it (`service.jobs_client` speaks that protocol).
Every method takes keyword-only arguments and returns `*Public` models, never rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from service.models import (
    AliasEventPublic,
    AliasPublic,
    CheckpointCreate,
    CheckpointPublic,
    EvalExampleCreate,
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


class ExampleScores(NamedTuple):
    """One example's scores as plain data (what bulk readers such as the gate need)."""

    example_id: str
    scores: dict[str, float]
    cluster: str | None


class Registry(Protocol):
    """What a runner or the CLI may ask of the registry."""

    def get_or_create_experiment(self, *, name: str) -> ExperimentPublic:
        """Return the experiment called `name`, creating it if needed."""
        ...

    def get_experiment(self, *, name: str) -> ExperimentPublic:
        """Return the experiment called `name` (NotFoundError, with a suggestion, if none)."""
        ...

    def list_experiments(self) -> list[ExperimentPublic]:
        """List all experiments by name."""
        ...

    def create_run(self, *, run_in: RunCreate) -> RunPublic:
        """Create a run."""
        ...

    def update_run(self, *, run_id: int, run_update: RunUpdate) -> RunPublic:
        """Apply the set fields of `run_update` to a run."""
        ...

    def get_run(self, *, ref: str) -> RunPublic:
        """Return a run by id, or the newest run with that name (NotFoundError if none)."""
        ...

    def list_runs(
        self,
        *,
        experiment: str | None = None,
        status: RunStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> RunsPublic:
        """List runs, newest first."""
        ...

    def record_checkpoint(self, *, checkpoint_in: CheckpointCreate) -> CheckpointPublic:
        """Record a checkpoint; idempotent on (run, step, sha256)."""
        ...

    def get_checkpoint(self, *, checkpoint_id: int) -> CheckpointPublic:
        """Return a checkpoint (NotFoundError if none)."""
        ...

    def list_checkpoints(self, *, run_id: int) -> list[CheckpointPublic]:
        """List a run's checkpoints by step."""
        ...

    def record_evaluation(
        self, *, evaluation_in: EvaluationCreate, examples: Sequence[EvalExampleCreate] = ()
    ) -> EvaluationPublic:
        """Record an evaluation and its per-example scores in one transaction."""
        ...

    def get_evaluation(self, *, evaluation_id: int) -> EvaluationPublic:
        """Return an evaluation (NotFoundError if none)."""
        ...

    def list_evaluations(
        self, *, run_id: int | None = None, checkpoint_id: int | None = None
    ) -> list[EvaluationPublic]:
        """List evaluations of a run's checkpoints or of one checkpoint."""
        ...

    def list_examples(
        self, *, evaluation_id: int, limit: int | None = None, offset: int = 0
    ) -> EvalExamplesPublic:
        """List an evaluation's per-example scores in their original order."""
        ...

    def list_example_scores(self, *, evaluation_id: int) -> list[ExampleScores]:
        """Return every example's (example_id, scores, cluster id), fast, in recorded order."""
        ...

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
        ...

    def get_alias(self, *, experiment_id: int, name: str) -> AliasPublic:
        """Return an experiment's alias (NotFoundError if it is not set)."""
        ...

    def list_aliases(self, *, experiment_id: int | None = None) -> list[AliasPublic]:
        """List aliases of one experiment, or of all, by experiment and name."""
        ...

    def alias_history(self, *, experiment_id: int, name: str) -> list[AliasEventPublic]:
        """List an alias's moves, newest first."""
        ...


def open_registry() -> Registry:
    """Open the registry the settings name: `evalctl serve` at EVALCTL_URL (with
    EVALCTL_TOKEN) over HTTP, else the local database (EVALCTL_DATABASE_URL or SQLite)."""
    from service.errors import EvalctlError
    from service.settings import get_settings

    settings = get_settings()
    if settings.url and settings.token:
        from service.remote import RemoteRegistry

        return RemoteRegistry(settings.url, settings.token, retry_for=settings.retry_seconds)
    if settings.url:
        raise EvalctlError("EVALCTL_URL is set but EVALCTL_TOKEN is not; set both (or neither)")
    from service.local import LocalRegistry

    return LocalRegistry(settings.db_url)
