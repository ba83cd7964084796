"""Data access for the registry page: experiments, their aliases, each alias's history.

Owns the SQL behind `GET /registry`: the experiments (all, or one), their aliases with the
checkpoint each points at (run name and step), every alias's moves newest first, and the
succeeded runs a promotion may pick from. Checkpoints are looked up once for the whole
page. It never writes: moving an alias is `service.promotion` (through `service.crud`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from service.models import Alias, AliasEvent, Checkpoint, Experiment, Run, RunStatus

#: The promote form offers the newest succeeded runs; an older one is promoted by checkpoint id.
MAX_RUN_CHOICES = 500
#: Moves shown per alias (newest first), and loaded for the whole page at most.
HISTORY_PER_ALIAS = 20
MAX_EVENTS = 2000


@dataclass(frozen=True)
class RunRow:
    """The columns of a run the promote form needs (not its spec text)."""

    id: int | None
    name: str
    experiment_id: int
    best_checkpoint_id: int | None


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint as the page names it: run name and step."""

    id: int
    run_id: int
    run_name: str
    step: int


@dataclass
class AliasView:
    """An alias, what it points at, and its moves (newest first)."""

    alias: Alias
    checkpoint: CheckpointInfo | None
    history: list[AliasEvent]

    @property
    def can_roll_back(self) -> bool:
        """Return whether the newest move has a checkpoint to go back to."""
        return bool(self.history) and self.history[0].previous_checkpoint_id is not None


@dataclass
class ExperimentView:
    """One experiment's section of the page."""

    experiment: Experiment
    aliases: list[AliasView] = field(default_factory=list)


@dataclass(frozen=True)
class RunChoice:
    """A succeeded run offered in the promote form."""

    id: int
    name: str
    experiment_id: int
    best: CheckpointInfo | None


@dataclass
class RegistryPage:
    """Everything `GET /registry` shows."""

    experiments: list[Experiment]
    sections: list[ExperimentView]
    checkpoints: dict[int, CheckpointInfo]
    runs: list[RunChoice]


def registry_page(*, session: Session, experiment_id: int | None = None) -> RegistryPage:
    """Return the experiments (one if `experiment_id`), their aliases and history, and runs."""
    experiments = list(session.exec(select(Experiment).order_by(col(Experiment.name))).all())
    shown = [e for e in experiments if experiment_id is None or e.id == experiment_id]
    ids = [e.id for e in shown if e.id is not None]
    aliases = session.exec(
        select(Alias).where(col(Alias.experiment_id).in_(ids)).order_by(col(Alias.name))
    ).all()
    events = session.exec(
        select(AliasEvent)
        .where(col(AliasEvent.experiment_id).in_(ids))
        .order_by(col(AliasEvent.created_at).desc(), col(AliasEvent.id).desc())
        .limit(MAX_EVENTS)
    ).all()
    runs = _succeeded_runs(session, ids)
    wanted = {a.checkpoint_id for a in aliases}
    wanted |= {e.checkpoint_id for e in events}
    wanted |= {e.previous_checkpoint_id for e in events if e.previous_checkpoint_id is not None}
    wanted |= {r.best_checkpoint_id for r in runs if r.best_checkpoint_id is not None}
    checkpoints = checkpoint_infos(session=session, checkpoint_ids=wanted)
    history: dict[tuple[int, str], list[AliasEvent]] = {}
    for event in events:
        moves = history.setdefault((event.experiment_id, event.name), [])
        if len(moves) < HISTORY_PER_ALIAS:
            moves.append(event)
    sections = {e.id: ExperimentView(e) for e in shown}
    for alias in aliases:
        moves = history.get((alias.experiment_id, alias.name), [])
        view = AliasView(alias, checkpoints.get(alias.checkpoint_id), moves)
        sections[alias.experiment_id].aliases.append(view)
    choices = [
        RunChoice(r.id or 0, r.name, r.experiment_id, checkpoints.get(r.best_checkpoint_id or -1))
        for r in runs
    ]
    return RegistryPage(experiments, list(sections.values()), checkpoints, choices)


_RULE_TEXT = ("source", "name", "metric", "verdict", "reason")
_RULE_NUMBERS = ("candidate", "baseline", "delta")


def gate_view(gate: Any) -> dict[str, Any] | None:
    """Return a recorded gate result in the shape the page shows, whatever was stored.

    `AliasEvent.gate` is JSON any write token may set through the API; a value of the
    wrong shape must not break the page for everyone, since history is append-only.
    """
    if gate is None:
        return None
    if not isinstance(gate, dict):
        return {"verdict": "attached", "summary": str(gate)[:200], "rules": [], "warnings": []}

    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    def number(value: Any) -> float | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else None

    rules = (
        [
            {
                **{k: text(r.get(k)) for k in _RULE_TEXT},
                **{k: number(r.get(k)) for k in _RULE_NUMBERS},
            }
            for r in gate.get("rules") or []
            if isinstance(r, dict)
        ]
        if isinstance(gate.get("rules"), list)
        else []
    )
    found = gate.get("warnings")
    warnings: list[Any] = found if isinstance(found, list) else []
    return {
        "verdict": text(gate.get("verdict")) or "attached",
        "summary": text(gate.get("summary")),
        "message": text(gate.get("message")),
        "rules": rules,
        "warnings": [w for w in warnings if isinstance(w, str)],
    }


def checkpoint_infos(
    *, session: Session, checkpoint_ids: Iterable[int]
) -> dict[int, CheckpointInfo]:
    """Return run name and step of each checkpoint id, in one query."""
    ids = sorted(set(checkpoint_ids))
    if not ids:
        return {}
    query = (
        select(col(Checkpoint.id), col(Checkpoint.run_id), col(Run.name), col(Checkpoint.step))
        .join(Run, col(Run.id) == col(Checkpoint.run_id))
        .where(col(Checkpoint.id).in_(ids))
    )
    rows = session.exec(query).all()
    return {
        cid: CheckpointInfo(cid, run_id, name, step)
        for cid, run_id, name, step in rows
        if cid is not None
    }


def _succeeded_runs(session: Session, experiment_ids: list[int]) -> list[RunRow]:
    """Return the newest succeeded runs (id, name, experiment, best checkpoint) only."""
    query = (
        select(Run.id, Run.name, Run.experiment_id, Run.best_checkpoint_id)
        .where(col(Run.experiment_id).in_(experiment_ids), Run.status == RunStatus.succeeded)
        .order_by(col(Run.created_at).desc(), col(Run.id).desc())
        .limit(MAX_RUN_CHOICES)
    )
    return [RunRow(*row) for row in session.exec(query).all()]
