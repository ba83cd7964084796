"""Data access for experiments: get-or-create by name, list, and look up by id or name."""

from __future__ import annotations

from sqlmodel import Session, col, select

from service.crud._common import get_or_insert, get_row
from service.errors import NotFoundError, did_you_mean
from service.models import Experiment


def get_or_create_experiment(*, session: Session, name: str) -> Experiment:
    """Return the experiment called `name`, creating it if needed (safe under a race)."""
    query = select(Experiment).where(Experiment.name == name)
    return get_or_insert(session=session, query=query, build=lambda: Experiment(name=name))


def list_experiments(*, session: Session) -> list[Experiment]:
    """List all experiments by name."""
    return list(session.exec(select(Experiment).order_by(col(Experiment.name))).all())


def get_experiment_by_name(*, session: Session, name: str) -> Experiment:
    """Return the experiment called `name` (NotFoundError, with a suggestion, if none)."""
    row = session.exec(select(Experiment).where(Experiment.name == name)).first()
    if row is None:
        names = session.exec(select(Experiment.name)).all()
        raise NotFoundError(f"experiment '{name}' not found.{did_you_mean(name, names)}")
    return row


def get_experiment(*, session: Session, experiment_id: int) -> Experiment:
    """Return an experiment by id."""
    return get_row(session, Experiment, experiment_id)
