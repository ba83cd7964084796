"""`evalctl promote`, `evalctl aliases ...` and `evalctl compare`: aliases and side-by-side runs.

Owns the commands that move an alias (e.g. production) to a checkpoint, in the registry DB
and in the MLflow Model Registry, list and roll back aliases, and compare runs or
checkpoints (params from their specs, metrics with paired significance). Resolving
references is `service.gate.refs`; the statistics are `service.gate.stats`; the MLflow
side is `service.mlflow_registry`. Heavy libraries are imported inside the commands.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from service.gate.refs import ResolvedRef
    from service.models import AliasPublic, ExperimentPublic
    from service.registry import Registry

aliases_app = typer.Typer(help="List, inspect and roll back aliases.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SpecOption = Annotated[
    Path | None, typer.Option("--spec", help="The spec whose experiment the refs belong to.")
]
ExperimentOption = Annotated[
    str | None, typer.Option("--experiment", help="The experiment (instead of --spec).")
]
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `evalctl` app."""
    app.command("promote")(promote)
    app.command("compare")(compare)
    app.add_typer(aliases_app, name="aliases")


def current_actor() -> str:
    """Return who is acting: EVALCTL_ACTOR, else the OS user."""
    actor = os.environ.get("EVALCTL_ACTOR", "").strip()
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in a bare container
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


# --- promote ---------------------------------------------------------------------------


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
    from evalctl.cli import _dump, _registry, fail
    from service.errors import NotFoundError
    from service.gate.refs import resolve_ref

    name = _alias_name(alias)
    registry = _registry()
    exp_name = _experiment_name(spec, experiment)
    target = resolve_ref(registry, ref, experiment=exp_name)
    exp = _owning_experiment(registry, target, exp_name)
    try:
        current: AliasPublic | None = registry.get_alias(experiment_id=exp.id, name=name)
    except NotFoundError:
        current = None
    if current is not None and current.checkpoint_id == target.checkpoint.id:
        print(
            f"@{name} ({exp.name}) already points at {_describe(registry, current.checkpoint_id)}"
        )
        return
    gate: dict[str, Any] | None = None
    if require_gate:
        if spec is None:
            fail("--require-gate needs --spec (the gate rules live in the spec)")
        passed, gate = _run_gate(spec, ref)
        if not passed:
            print(f"gate failed: @{name} not moved", file=sys.stderr)
            if as_json:
                _dump({"moved": False, "gate": gate})
            raise typer.Exit(1)
    moved = _move(registry, exp, name, target, action="promote", gate=gate)
    _report_move(registry, exp, name, current, moved, as_json=as_json, gate=gate)


def _run_gate(spec: Path, candidate: str) -> tuple[bool, dict[str, Any]]:
    """Run the gate through `evalctl.cli_gate.run_gate_for_promotion`."""
    import importlib

    from evalctl.cli import fail

    try:
        cli_gate = importlib.import_module("evalctl.cli_gate")
    except ModuleNotFoundError as exc:
        if exc.name != "evalctl.cli_gate":
            raise
        fail("--require-gate: the gate is not available (evalctl.cli_gate is missing)")
    run_gate = getattr(cli_gate, "run_gate_for_promotion", None)
    if run_gate is None:
        fail("--require-gate: evalctl.cli_gate has no run_gate_for_promotion")
    passed, summary = run_gate(spec_path=spec, candidate=candidate)
    return bool(passed), dict(summary)


def _move(
    registry: Registry,
    exp: ExperimentPublic,
    name: str,
    target: ResolvedRef,
    *,
    action: str,
    gate: dict[str, Any] | None = None,
) -> AliasPublic:
    """Move the MLflow alias, then record the move (and its history) in the registry."""
    from service.mlflow_registry import register_promotion
    from service.remote import RemoteRegistry
    from service.settings import get_settings

    version = None
    # A service moves its own MLflow alias with the move (checked against its storage
    # roots); only the embedded registry has its MLflow store here.
    if not isinstance(registry, RemoteRegistry):
        version = register_promotion(
            tracking_uri=get_settings().tracking_uri,
            experiment=exp.name,
            checkpoint=target.checkpoint,
            run=target.run,
            alias=name,
        )
    return registry.set_alias(
        experiment_id=exp.id,
        name=name,
        checkpoint_id=target.checkpoint.id,
        actor=current_actor(),
        action=action,
        gate=gate,
        version=version,
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
    from evalctl.cli import _dump

    old = before.checkpoint_id if before else None
    if as_json:
        _dump(
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


# --- aliases ---------------------------------------------------------------------------


@aliases_app.command("list")
def aliases_list(
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List aliases and the checkpoints they point at."""
    from rich.table import Table

    from evalctl.cli import _console, _dump, _registry

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
        _dump({"data": rows, "count": len(rows)})
        return
    table = Table()
    for column in ("experiment", "alias", "checkpoint", "run", "step", "mlflow version", "since"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["experiment"]),
            f"@{row['name']}",
            str(row["checkpoint_id"]),
            str(row["run_id"]),
            str(row["step"]),
            str(row["version"] or "-"),
            str(row["updated_at"])[:19].replace("T", " "),
        )
    _console().print(table)
    print(f"{len(rows)} aliases")


@aliases_app.command("history")
def aliases_history(
    name: Annotated[str, typer.Argument(help="Alias name, e.g. production.")],
    experiment: Annotated[str, typer.Option("--experiment", help="The experiment.")],
    as_json: JsonFlag = False,
) -> None:
    """Show an alias's moves, newest first: what, when, by whom, with which gate result."""
    from rich.table import Table

    from evalctl.cli import _console, _dump, _registry

    alias = _alias_name(name)
    registry = _registry()
    exp = registry.get_experiment(name=experiment)
    events = registry.alias_history(experiment_id=exp.id, name=alias)
    if as_json:
        data = [e.model_dump(mode="json") for e in events]
        _dump({"data": data, "count": len(data)})
        return
    table = Table()
    for column in ("when", "action", "checkpoint", "previous", "mlflow version", "actor", "gate"):
        table.add_column(column)
    for e in events:
        table.add_row(
            f"{e.created_at:%Y-%m-%d %H:%M:%S}",
            e.action,
            str(e.checkpoint_id),
            str(e.previous_checkpoint_id or "-"),
            str(e.version or "-"),
            e.actor,
            _gate_cell(e.gate),
        )
    _console().print(table)
    print(f"{len(events)} moves of @{alias} ({exp.name})")


@aliases_app.command("rollback")
def aliases_rollback(
    name: Annotated[str, typer.Argument(help="Alias name, e.g. production.")],
    experiment: Annotated[str, typer.Option("--experiment", help="The experiment.")],
    to: Annotated[
        int | None, typer.Option("--to", help="Checkpoint id (default: the previous one).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Move an alias back to the checkpoint it held before (or to --to CHECKPOINT_ID)."""
    from evalctl.cli import _registry, fail
    from service.gate.refs import resolve_ref

    alias = _alias_name(name)
    registry = _registry()
    exp = registry.get_experiment(name=experiment)
    current = registry.get_alias(experiment_id=exp.id, name=alias)
    if to is None:
        history = registry.alias_history(experiment_id=exp.id, name=alias)
        to = history[0].previous_checkpoint_id if history else None
        if to is None:
            fail(f"@{alias} ({exp.name}) has no earlier checkpoint; give --to CHECKPOINT_ID")
    if to == current.checkpoint_id:
        fail(f"@{alias} ({exp.name}) already points at checkpoint {to}")
    target = resolve_ref(registry, f"ckpt:{to}")
    _owning_experiment(registry, target, exp.name)
    moved = _move(registry, exp, alias, target, action="rollback")
    _report_move(registry, exp, alias, current, moved, as_json=as_json)


# --- compare ---------------------------------------------------------------------------


def compare(
    refs: Annotated[
        list[str], typer.Argument(help="Two or more refs: run id/name, run:RUN, ckpt:ID, @alias.")
    ],
    spec: SpecOption = None,
    experiment: ExperimentOption = None,
    all_params: Annotated[
        bool, typer.Option("--all-params", help="Show every param, not only differences.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Compare runs or checkpoints: spec params side by side, metrics with deltas and p-values.

    Deltas are against the first REF. Metrics with per-example scores on shared examples
    get a paired test (exact McNemar for 0/1 scores, else a paired t-test) with a
    two-sided p-value.
    """
    from evalctl.cli import _console, _dump, _registry, fail
    from evalctl.compare import render_compare
    from service.compare import compare_metrics, compare_params
    from service.gate.refs import resolve_ref

    if len(refs) < 2:
        fail("compare needs at least two refs, e.g. evalctl compare 1 2")
    registry = _registry()
    exp_name = _experiment_name(spec, experiment)
    resolved = [resolve_ref(registry, ref, experiment=exp_name) for ref in refs]
    params = compare_params(
        [r.run.spec_text for r in resolved],
        all_params=all_params,
        sources=[f"run {r.run.id} ({r.run.name}) spec" for r in resolved],
    )
    metrics = compare_metrics(registry, [r.checkpoint for r in resolved])
    heads = [
        {
            "ref": ref,
            "label": r.label,
            "run_id": r.run.id,
            "run_name": r.run.name,
            "checkpoint_id": r.checkpoint.id,
            "step": r.checkpoint.step,
        }
        for ref, r in zip(refs, resolved, strict=True)
    ]
    if as_json:
        _dump({"refs": heads, "params": params, "metrics": metrics, "all_params": all_params})
        return
    for table in render_compare(heads, params, metrics, all_params=all_params):
        _console().print(table)


# --- helpers ---------------------------------------------------------------------------


def _alias_name(alias: str) -> str:
    from evalctl.cli import fail

    name = alias.removeprefix("@")
    # MLflow reserves 'latest' and version-like names ('v3') for its own lookups.
    if not ALIAS_PATTERN.match(name) or name == "latest" or re.fullmatch(r"[vV]\d+", name):
        fail(
            f"alias '{alias}': use a letter then letters, digits, '-' or '_' "
            "(not 'latest' or v<number>)"
        )
    return name


def _experiment_name(spec: Path | None, experiment: str | None) -> str | None:
    from evalctl.cli import fail

    if spec is not None and experiment is not None:
        fail("give --spec or --experiment, not both")
    if spec is None:
        return experiment
    from service.spec_loader import SpecError, load_spec

    try:
        return load_spec(spec).experiment_name
    except SpecError as err:
        print(str(err), file=sys.stderr)
        raise typer.Exit(2) from None


def _owning_experiment(
    registry: Registry, target: ResolvedRef, exp_name: str | None
) -> ExperimentPublic:
    """Return the experiment of `target`'s run; it must be `exp_name` when one is given."""
    from evalctl.cli import fail

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


def _gate_cell(gate: dict[str, Any] | None) -> str:
    if gate is None:
        return "-"
    passed = gate.get("passed")
    return "passed" if passed is True else "failed" if passed is False else "attached"
