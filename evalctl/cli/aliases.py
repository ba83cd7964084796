"""`evalctl promote` and `evalctl aliases ...`: move, list and roll back aliases.

Owns the commands that point an alias (e.g. production) at a checkpoint, list aliases,
show their history and roll them back. The flow is `service.promotion` (alias-name rule,
gate, MLflow version first then the alias, rollback target); resolving references is
`service.gate.refs`. This module parses options, names the actor (EVALCTL_ACTOR, else
the OS user) and prints the outcome. Heavy libraries are imported inside the commands.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evalctl.cli._common import (
    ExperimentOption,
    JsonFlag,
    SpecOption,
    dump,
    evaluate_here,
    experiment_name,
    fail,
    stderr_console,
)
from evalctl.cli._common import console as _console
from evalctl.cli._common import registry as _registry

if TYPE_CHECKING:
    from service.gate.refs import ResolvedRef
    from service.models import AliasPublic, ExperimentPublic
    from service.registry import Registry

app = typer.Typer(help="List, inspect and roll back aliases.", no_args_is_help=True)


def current_actor() -> str:
    """Return who is acting: EVALCTL_ACTOR, else the OS user."""
    actor = os.environ.get("EVALCTL_ACTOR", "").strip()
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in a bare container
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def promote(
    ref: Annotated[str, typer.Argument(help="What to promote: run id/name, run:RUN, ckpt:ID.")],
    alias: Annotated[str, typer.Option("--alias", help="Alias to move, e.g. production.")],
    spec: SpecOption = None,
    experiment: ExperimentOption = None,
    require_gate: Annotated[
        bool, typer.Option("--require-gate", help="Run the spec's gate first; fail = no move.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Point an alias (e.g. production) at a checkpoint, here and in MLflow's model registry."""
    from service.gate.refs import resolve_ref
    from service.promotion import current_alias

    name = alias_name(alias)
    registry = _registry()
    exp_name = experiment_name(spec, experiment)
    target = resolve_ref(registry, ref, experiment=exp_name)
    exp = owning_experiment(registry, target, exp_name)
    current = current_alias(registry=registry, experiment_id=exp.id, name=name)
    if current is not None and current.checkpoint_id == target.checkpoint.id:
        print(
            f"@{name} ({exp.name}) already points at {_describe(registry, current.checkpoint_id)}"
        )
        return
    gate: dict[str, Any] | None = None
    if require_gate:
        if spec is None:
            fail("--require-gate needs --spec (the gate rules live in the spec)")
        gate = _run_gate(registry, spec, target)
        if gate["verdict"] != "pass":
            print(f"gate failed: @{name} not moved", file=sys.stderr)
            if as_json:
                dump({"moved": False, "gate": gate})
            raise typer.Exit(1)
    moved = _move(registry, exp, name, target, action="promote", gate=gate)
    _report_move(registry, exp, name, current, moved, as_json=as_json, gate=gate)


def _run_gate(registry: Registry, spec: Path, target: ResolvedRef) -> dict[str, Any]:
    """Gate `target` with the spec's rules, running missing evaluations; return its JSON."""
    from service.errors import EvalctlError
    from service.promotion import gate_for_promotion
    from service.spec_loader import load_spec

    loaded = load_spec(spec)
    evaluate = evaluate_here(loaded, registry, stderr_console())
    gate = gate_for_promotion(registry=registry, spec=loaded, candidate=target, evaluate=evaluate)
    if gate["verdict"] == "error":
        if "message" in gate:
            raise EvalctlError(gate["message"])
        first = next(r for r in gate["rules"] if r["verdict"] == "error")
        raise EvalctlError(f"gate error in {first['source']}: {first['reason']}")
    return gate


def _move(
    registry: Registry,
    exp: ExperimentPublic,
    name: str,
    target: ResolvedRef,
    *,
    action: str,
    gate: dict[str, Any] | None = None,
) -> AliasPublic:
    from service.promotion import move

    return move(
        registry=registry,
        experiment_id=exp.id,
        experiment_name=exp.name,
        name=name,
        target=target,
        actor=current_actor(),
        action=action,
        gate=gate,
    )


def _report_move(
    registry: Registry,
    exp: ExperimentPublic,
    name: str,
    before: AliasPublic | None,
    after: AliasPublic,
    *,
    as_json: bool,
    gate: dict[str, Any] | None = None,
) -> None:
    old = before.checkpoint_id if before else None
    if as_json:
        dump(
            {
                "moved": True,
                "experiment": exp.name,
                "alias": name,
                "from_checkpoint_id": old,
                "to_checkpoint_id": after.checkpoint_id,
                "mlflow_model": exp.name,
                "mlflow_version": after.version,
                "gate": gate,
            }
        )
        return
    was = _describe(registry, old) if old is not None else "(not set)"
    now = _describe(registry, after.checkpoint_id)
    print(f"@{name} ({exp.name}): {was} -> {now}")
    print(f"MLflow: model '{exp.name}' version {after.version} has alias '{name}'")


@app.command("list")
def aliases_list(
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List aliases and the checkpoints they point at."""
    from evalctl.cli.render import aliases_table

    registry = _registry()
    names = {e.id: e.name for e in registry.list_experiments()}
    exp_id = registry.get_experiment(name=experiment).id if experiment else None
    rows = []
    for alias in registry.list_aliases(experiment_id=exp_id):
        checkpoint = registry.get_checkpoint(checkpoint_id=alias.checkpoint_id)
        rows.append(
            {
                **alias.model_dump(mode="json"),
                "experiment": names.get(alias.experiment_id),
                "run_id": checkpoint.run_id,
                "step": checkpoint.step,
            }
        )
    if as_json:
        dump({"data": rows, "count": len(rows)})
        return
    _console().print(aliases_table(rows))
    print(f"{len(rows)} aliases")


@app.command("history")
def aliases_history(
    name: Annotated[str, typer.Argument(help="Alias name, e.g. production.")],
    experiment: Annotated[str, typer.Option("--experiment", help="The experiment.")],
    as_json: JsonFlag = False,
) -> None:
    """Show an alias's moves, newest first: what, when, by whom, with which gate result."""
    from evalctl.cli.render import alias_history_table

    alias = alias_name(name)
    registry = _registry()
    exp = registry.get_experiment(name=experiment)
    events = registry.alias_history(experiment_id=exp.id, name=alias)
    if as_json:
        data = [e.model_dump(mode="json") for e in events]
        dump({"data": data, "count": len(data)})
        return
    _console().print(alias_history_table(events))
    print(f"{len(events)} moves of @{alias} ({exp.name})")


@app.command("rollback")
def aliases_rollback(
    name: Annotated[str, typer.Argument(help="Alias name, e.g. production.")],
    experiment: Annotated[str, typer.Option("--experiment", help="The experiment.")],
    to: Annotated[
        int | None, typer.Option("--to", help="Checkpoint id (default: the previous one).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Move an alias back to the checkpoint it held before (or to --to CHECKPOINT_ID)."""
    from service.gate.refs import resolve_ref
    from service.promotion import rollback_target

    alias = alias_name(name)
    registry = _registry()
    exp = registry.get_experiment(name=experiment)
    current = registry.get_alias(experiment_id=exp.id, name=alias)
    if to is None:
        to = rollback_target(registry=registry, experiment_id=exp.id, name=alias)
        if to is None:
            fail(f"@{alias} ({exp.name}) has no earlier checkpoint; give --to CHECKPOINT_ID")
    if to == current.checkpoint_id:
        fail(f"@{alias} ({exp.name}) already points at checkpoint {to}")
    target = resolve_ref(registry, f"ckpt:{to}")
    owning_experiment(registry, target, exp.name)
    moved = _move(registry, exp, alias, target, action="rollback")
    _report_move(registry, exp, alias, current, moved, as_json=as_json)


def alias_name(alias: str) -> str:
    """Return the alias name of `alias` (an '@' is dropped), or fail when it cannot be one."""
    from service.promotion import alias_problem

    problem = alias_problem(alias)
    if problem:
        fail(problem)
    return alias.removeprefix("@")


def owning_experiment(
    registry: Registry, target: ResolvedRef, exp_name: str | None
) -> ExperimentPublic:
    """Return the experiment of `target`'s run; it must be `exp_name` when one is given."""
    owner = next(e for e in registry.list_experiments() if e.id == target.run.experiment_id)
    if exp_name is not None and owner.name != exp_name:
        fail(
            f"{target.label} (checkpoint {target.checkpoint.id}) belongs to experiment "
            f"'{owner.name}', not '{exp_name}'"
        )
    return owner


def _describe(registry: Registry, checkpoint_id: int) -> str:
    checkpoint = registry.get_checkpoint(checkpoint_id=checkpoint_id)
    return f"checkpoint {checkpoint.id} (run {checkpoint.run_id}, step {checkpoint.step})"
