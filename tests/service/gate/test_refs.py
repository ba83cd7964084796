"""References (`@production`, `ckpt:12`, `run:3`, a run name) resolve to a checkpoint."""

from __future__ import annotations

import pytest

from service.errors import EvalctlError, NotFoundError
from service.gate.refs import resolve_ref
from service.local import LocalRegistry
from service.models import CheckpointPublic, RunPublic, RunUpdate
from tests.factories import make_checkpoint, make_experiment, make_run


@pytest.fixture
def setup(registry: LocalRegistry, unique_name: str) -> dict:
    exp = make_experiment(registry, name=unique_name)

    def run(name: str | None = None) -> RunPublic:
        return make_run(registry, experiment=exp, name=name)

    def ckpt(run: RunPublic, step: int) -> CheckpointPublic:
        return make_checkpoint(registry, run=run, step=step)

    best_run, plain_run, base_only = run(unique_name + "-best"), run(unique_name), run()
    base, best, last = ckpt(best_run, 0), ckpt(best_run, 2), ckpt(best_run, 4)
    registry.update_run(run_id=best_run.id, run_update=RunUpdate(best_checkpoint_id=best.id))
    plain_last = [ckpt(plain_run, s) for s in (0, 2, 6)][-1]
    ckpt(base_only, 0)
    return locals()


def test_a_run_stands_for_its_best_else_its_last_trained_checkpoint(
    registry: LocalRegistry, setup: dict
) -> None:
    best_run, plain_run = setup["best_run"], setup["plain_run"]
    by_id = resolve_ref(registry, str(best_run.id))
    assert by_id.checkpoint.id == setup["best"].id and by_id.run.id == best_run.id
    assert by_id.label == f"run:{best_run.id}"
    assert resolve_ref(registry, f"run:{best_run.name}").checkpoint.id == setup["best"].id
    assert resolve_ref(registry, plain_run.name).checkpoint.id == setup["plain_last"].id
    with pytest.raises(NotFoundError, match=f"^run {setup['base_only'].id} has no trained"):
        resolve_ref(registry, f"run:{setup['base_only'].id}")


def test_checkpoint_refs(registry: LocalRegistry, setup: dict) -> None:
    base = setup["base"]
    for ref in (f"ckpt:{base.id}", f"checkpoint:{base.id}"):
        resolved = resolve_ref(registry, ref)
        assert (resolved.checkpoint.step, resolved.run.id) == (0, setup["best_run"].id)
        assert resolved.label == f"ckpt:{base.id}"
    with pytest.raises(NotFoundError, match=r"^checkpoint 99999999 not found$"):
        resolve_ref(registry, "ckpt:99999999")
    with pytest.raises(EvalctlError, match="is a number"):
        resolve_ref(registry, "ckpt:abc")


def test_alias_refs(registry: LocalRegistry, setup: dict, unique_name: str) -> None:
    exp, last = setup["exp"], setup["last"]
    with pytest.raises(EvalctlError, match=r"^@production needs an experiment \(give --spec"):
        resolve_ref(registry, "@production")
    with pytest.raises(NotFoundError, match="alias '@production' not set for experiment"):
        resolve_ref(registry, "@production", experiment=unique_name)
    registry.set_alias(experiment_id=exp.id, name="production", checkpoint_id=last.id, actor="a")
    resolved = resolve_ref(registry, "@production", experiment=unique_name)
    assert (resolved.checkpoint.id, resolved.label) == (last.id, "@production")
    with pytest.raises(NotFoundError, match="experiment 'nope-x' not found"):
        resolve_ref(registry, "@production", experiment="nope-x")


def test_unknown_refs_are_one_line_errors(registry: LocalRegistry) -> None:
    for ref, message in [
        ("run:no-such-run-x", "run 'no-such-run-x' not found"),
        ("99999999", "run 99999999 not found"),
        ("foo:1", "reference 'foo:1' not understood"),
    ]:
        with pytest.raises(EvalctlError) as err:
            resolve_ref(registry, ref)
        assert str(err.value).startswith(message) and "\n" not in str(err.value)
