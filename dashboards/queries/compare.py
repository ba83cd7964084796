"""Data access for the compare page: the runs, the checkpoint each stands for, its scores.

Owns finding 2..10 runs by id or name, picking the checkpoint a run stands for (its best,
else its last one), loading what the gate would read for that checkpoint (a
`service.gate.sides.GateSide`: the newest succeeded evaluation per evaluator and, once per
evaluation, the per-example scores only, never the details) and, for the few examples
the page shows in full, their details. It does not compare anything
(`dashboards.pages.compare` does, with the gate's statistics) and never writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from service import crud
from service.errors import EvalctlError
from service.gate.refs import ResolvedRef
from service.gate.sides import GateSide
from service.local import LocalRegistry
from service.models import Checkpoint, CheckpointPublic, EvalExample, RunPublic

MIN_RUNS = 2
MAX_RUNS = 10


@dataclass
class Compared:
    """One run on the page: the checkpoint it stands for and what the gate knows of it."""

    run: RunPublic
    role: str  # "baseline" (the first run given) or "candidate"
    checkpoint: CheckpointPublic | None
    checkpoint_note: str  # "best", "last (no best set)" or "no checkpoint"
    side: GateSide | None  # None when the run has no checkpoint


def check_refs(refs: Sequence[str]) -> list[str]:
    """Return the run references to compare; EvalctlError unless there are 2 to 10 distinct."""
    cleaned = [ref.strip() for ref in refs if ref.strip()]
    if len(cleaned) < MIN_RUNS:
        got = f"only {cleaned[0]!r}" if cleaned else "none"
        raise EvalctlError(
            f"comparing needs at least {MIN_RUNS} runs (got {got}): "
            "open /compare?run=ID&run=ID, or tick runs on the runs page"
        )
    if len(cleaned) > MAX_RUNS:
        raise EvalctlError(
            f"at most {MAX_RUNS} runs can be compared at once (got {len(cleaned)}); "
            "drop some of them"
        )
    return cleaned


def load_compared(
    *, session: Session, db_url: str, refs: Sequence[str], baseline: str | None = None
) -> list[Compared]:
    """Return the runs named by `refs` (ids or names), the baseline first, then oldest first.

    The baseline is the run `baseline` names (it must be among `refs`), else the oldest
    run: ticking runs on the runs page says nothing about order, and "what changed since
    the earlier run" is the question a comparison usually asks.
    """
    runs = [RunPublic.model_validate(crud.find_run(session=session, ref=ref)) for ref in refs]
    seen: dict[int, str] = {}
    for ref, run in zip(refs, runs, strict=True):
        if run.id in seen:
            raise EvalctlError(
                f"run {run.id} ({run.name}) is given twice ({seen[run.id]!r} and {ref!r}); "
                "compare distinct runs"
            )
        seen[run.id] = ref
    runs.sort(key=lambda r: (r.created_at, r.id))
    if baseline is not None:
        base = crud.find_run(session=session, ref=baseline)
        if base.id not in seen:
            raise EvalctlError(
                f"baseline {baseline!r} (run {base.id}) is not one of the runs compared"
            )
        runs.sort(key=lambda r: r.id != base.id)  # stable: the others stay oldest first
    # The gate's own reader, on the app's engine (get_engine caches it per URL).
    registry = LocalRegistry(db_url, migrate=False)
    out = []
    for i, run in enumerate(runs):
        role = "baseline" if i == 0 else "candidate"
        checkpoint, note = _stand_in(session=session, run=run)
        side = None
        if checkpoint is not None:
            resolved = ResolvedRef(checkpoint, run, f"run:{run.id}")
            side = GateSide.load(registry, resolved, role=role)
        out.append(Compared(run, role, checkpoint, note, side))
    return out


def _stand_in(*, session: Session, run: RunPublic) -> tuple[CheckpointPublic | None, str]:
    """Return the run's best checkpoint, else its last one (by step), and which it is."""
    if run.best_checkpoint_id is not None:
        best = session.get(Checkpoint, run.best_checkpoint_id)
        if best is not None:
            return CheckpointPublic.model_validate(best), "best"
    query = (
        select(Checkpoint)
        .where(Checkpoint.run_id == run.id)
        .order_by(col(Checkpoint.step).desc(), col(Checkpoint.id).desc())
        .limit(1)
    )
    last = session.exec(query).first()
    if last is None:
        return None, "no checkpoint"
    return CheckpointPublic.model_validate(last), "last (no best set)"


def example_details(
    *, session: Session, evaluation_id: int, example_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Return the details (input, output, reference, ...) of a few examples, by example id."""
    wanted = sorted(set(example_ids))
    if not wanted:
        return {}
    query = select(col(EvalExample.example_id), col(EvalExample.details)).where(
        EvalExample.evaluation_id == evaluation_id, col(EvalExample.example_id).in_(wanted)
    )
    return {row[0]: row[1] or {} for row in session.execute(query)}
