"""Aliases on SQLite and Postgres: moving one, its history, and the messages when unset."""

from __future__ import annotations

import pytest

from service.errors import EvalctlError, NotFoundError
from service.local import LocalRegistry
from service.models import CheckpointPublic, ExperimentPublic
from tests.factories import make_checkpoint, make_run


def make_checkpoints(
    registry: LocalRegistry, experiment: ExperimentPublic, n: int
) -> list[CheckpointPublic]:
    run = make_run(registry, experiment=experiment)
    return [make_checkpoint(registry, run=run, step=step) for step in range(1, n + 1)]


def test_set_move_and_history_newest_first(registry: LocalRegistry, unique_name: str) -> None:
    exp = registry.get_or_create_experiment(name=unique_name)
    first, second = make_checkpoints(registry, exp, 2)
    set_first = registry.set_alias(
        experiment_id=exp.id, name="production", checkpoint_id=first.id, actor="alice", version=1
    )
    gate = {"passed": True, "rules": [{"metric": "json_schema.valid_rate", "p": 0.01}]}
    moved = registry.set_alias(
        experiment_id=exp.id,
        name="production",
        checkpoint_id=second.id,
        actor="bob",
        gate=gate,
        version=2,
    )
    assert moved.id == set_first.id
    assert moved.checkpoint_id == second.id and moved.version == 2
    assert moved.updated_at >= set_first.updated_at
    assert registry.get_alias(experiment_id=exp.id, name="production").checkpoint_id == second.id

    history = registry.alias_history(experiment_id=exp.id, name="production")
    assert [(e.checkpoint_id, e.previous_checkpoint_id, e.actor) for e in history] == [
        (second.id, first.id, "bob"),
        (first.id, None, "alice"),
    ]
    assert history[0].gate == gate and history[1].gate is None
    assert {e.action for e in history} == {"promote"}

    registry.set_alias(
        experiment_id=exp.id,
        name="production",
        checkpoint_id=first.id,
        actor="carol",
        action="rollback",
    )
    latest = registry.alias_history(experiment_id=exp.id, name="production")[0]
    assert (latest.action, latest.checkpoint_id, latest.previous_checkpoint_id) == (
        "rollback",
        first.id,
        second.id,
    )


def test_aliases_are_per_experiment_and_name(registry: LocalRegistry, unique_name: str) -> None:
    exp = registry.get_or_create_experiment(name=unique_name)
    other = registry.get_or_create_experiment(name=unique_name + "-other")
    (mine,) = make_checkpoints(registry, exp, 1)
    (theirs,) = make_checkpoints(registry, other, 1)
    registry.set_alias(experiment_id=exp.id, name="production", checkpoint_id=mine.id, actor="a")
    registry.set_alias(experiment_id=exp.id, name="staging", checkpoint_id=mine.id, actor="a")
    registry.set_alias(
        experiment_id=other.id, name="production", checkpoint_id=theirs.id, actor="a"
    )
    listed = registry.list_aliases(experiment_id=exp.id)
    assert [(a.name, a.checkpoint_id) for a in listed] == [
        ("production", mine.id),
        ("staging", mine.id),
    ]
    everywhere = {(a.experiment_id, a.name) for a in registry.list_aliases()}
    assert {(exp.id, "production"), (other.id, "production")} <= everywhere
    assert registry.alias_history(experiment_id=exp.id, name="staging")[0].actor == "a"


def test_alias_errors_say_what_is_wrong(registry: LocalRegistry, unique_name: str) -> None:
    exp = registry.get_or_create_experiment(name=unique_name)
    other = registry.get_or_create_experiment(name=unique_name + "-x")
    (theirs,) = make_checkpoints(registry, other, 1)
    with pytest.raises(NotFoundError) as err:
        registry.get_alias(experiment_id=exp.id, name="production")
    assert str(err.value) == f"alias '@production' not set for experiment '{unique_name}'"
    with pytest.raises(EvalctlError, match=f"belongs to experiment '{unique_name}-x'"):
        registry.set_alias(
            experiment_id=exp.id, name="production", checkpoint_id=theirs.id, actor="a"
        )
    with pytest.raises(NotFoundError, match="checkpoint 987654 not found"):
        registry.set_alias(experiment_id=exp.id, name="production", checkpoint_id=987654, actor="a")
    with pytest.raises(ValueError, match="promote, rollback"):
        registry.set_alias(
            experiment_id=other.id,
            name="production",
            checkpoint_id=theirs.id,
            actor="a",
            action="demote",
        )
    assert registry.list_aliases(experiment_id=exp.id) == []
    assert registry.alias_history(experiment_id=other.id, name="production") == []


def test_get_experiment_by_name_suggests_a_close_one(
    registry: LocalRegistry, unique_name: str
) -> None:
    exp = registry.get_or_create_experiment(name=unique_name + "-orders")
    assert registry.get_experiment(name=unique_name + "-orders").id == exp.id
    with pytest.raises(NotFoundError, match=f"Did you mean '{unique_name}-orders'"):
        registry.get_experiment(name=unique_name + "-order")
