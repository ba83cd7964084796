"""`evalctl compare`: runs or checkpoints side by side.

Owns the command: resolving the refs (`service.gate.refs`), and printing what
`service.compare` finds (params from the specs, metrics with deltas and paired
significance, shared with the dashboard's compare page) as tables (`evalctl.cli.render`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from evalctl.cli._common import ExperimentOption, JsonFlag, SpecOption, dump, experiment_name, fail
from evalctl.cli._common import console as _console
from evalctl.cli._common import registry as _registry


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
    from evalctl.cli.render import compare_tables
    from service.compare import compare_metrics, compare_params
    from service.gate.refs import resolve_ref

    if len(refs) < 2:
        fail("compare needs at least two refs, e.g. evalctl compare 1 2")
    registry = _registry()
    exp_name = experiment_name(spec, experiment)
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
        dump({"refs": heads, "params": params, "metrics": metrics, "all_params": all_params})
        return
    for table in compare_tables(heads, params, metrics, all_params=all_params):
        _console().print(table)
