"""Data access for the run page: one run, its checkpoints' scores, its jobs and job log.

Owns every database read behind `/runs/{id}`: the run with its experiment's name, each
checkpoint with the evaluation shown per evaluator (the newest succeeded one, else the
newest failed one so its error is visible), the jobs that trained or evaluated the run
with the name of the runner holding them, and the tail of a job's log. Per-example rows
are never read here (the evaluation page does that). Reading MLflow curves and the local
run log file is the page's job; this module never writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from service import crud
from service.models import (
    Checkpoint,
    Evaluation,
    EvaluationStatus,
    Experiment,
    Job,
    JobLog,
    Run,
    Runner,
)

#: How many log lines the page shows.
LOG_LINES = 200


@dataclass
class CheckpointRow:
    """A checkpoint and the evaluation shown for each evaluator that scored it."""

    checkpoint: Checkpoint
    evaluations: dict[str, Evaluation] = field(default_factory=dict)

    def metric(self, name: str) -> float | None:
        """Return `evaluator.key` of this checkpoint's succeeded evaluation, if any."""
        evaluator, _, key = name.partition(".")
        evaluation = self.evaluations.get(evaluator)
        if evaluation is None or evaluation.status != EvaluationStatus.succeeded:
            return None
        return evaluation.metrics.get(key)


@dataclass
class JobRow:
    """A job of the run and the name of the runner holding it (None once released)."""

    job: Job
    runner_name: str | None


def get_run(*, session: Session, run_id: int) -> tuple[Run, str]:
    """Return a run and its experiment's name; raise NotFoundError for an unknown id."""
    run = crud.get_run(session=session, run_id=run_id)
    experiment = session.get(Experiment, run.experiment_id)
    return run, experiment.name if experiment is not None else f"#{run.experiment_id}"


def list_checkpoints(*, session: Session, run_id: int) -> list[CheckpointRow]:
    """Return the run's checkpoints by step, each with its evaluation per evaluator."""
    checkpoints = session.exec(
        select(Checkpoint)
        .where(Checkpoint.run_id == run_id)
        .order_by(col(Checkpoint.step), col(Checkpoint.id))
    ).all()
    rows = {ckpt.id: CheckpointRow(checkpoint=ckpt) for ckpt in checkpoints}
    evaluations = session.exec(
        select(Evaluation)
        .join(Checkpoint, col(Checkpoint.id) == Evaluation.checkpoint_id)
        .where(Checkpoint.run_id == run_id)
        .order_by(col(Evaluation.id))
    ).all()
    for evaluation in evaluations:  # oldest first, so newer ones replace older ones
        shown = rows[evaluation.checkpoint_id].evaluations
        previous = shown.get(evaluation.evaluator)
        succeeded = evaluation.status == EvaluationStatus.succeeded
        if previous is None or succeeded or previous.status != EvaluationStatus.succeeded:
            shown[evaluation.evaluator] = evaluation
    return list(rows.values())


def metric_columns(rows: list[CheckpointRow]) -> list[str]:
    """Return every `evaluator.key` the shown succeeded evaluations report, sorted."""
    names = {
        f"{evaluator}.{key}"
        for row in rows
        for evaluator, evaluation in row.evaluations.items()
        if evaluation.status == EvaluationStatus.succeeded
        for key in evaluation.metrics
    }
    return sorted(names)


def list_jobs(*, session: Session, run_id: int) -> list[JobRow]:
    """Return the jobs linked to the run, newest first, with their runner's name."""
    query = (
        select(Job, Runner.name)
        .outerjoin(Runner, col(Runner.id) == Job.runner_id)
        .where(Job.run_id == run_id)
        .order_by(col(Job.created_at).desc(), col(Job.id).desc())
    )
    return [JobRow(job=job, runner_name=name) for job, name in session.exec(query).all()]


def job_log_tail(*, session: Session, job_id: int, limit: int = LOG_LINES) -> list[str]:
    """Return the last `limit` lines a job logged, oldest first."""
    query = (
        select(JobLog.line)
        .where(JobLog.job_id == job_id)
        .order_by(col(JobLog.id).desc())
        .limit(limit)
    )
    return list(reversed(session.exec(query).all()))
