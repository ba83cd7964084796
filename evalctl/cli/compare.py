"""How `evalctl compare` shows a comparison: the params table and the metrics table.

What is compared (params, metrics, deltas, paired tests) is `service.compare`, shared with
the dashboard's compare page; this module only renders it with rich.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from evalctl.render import fmt


def render_compare(
    heads: list[dict[str, Any]],
    params: dict[str, list[Any]],
    metrics: list[dict[str, Any]],
    *,
    all_params: bool,
) -> list[Table]:
    """Return the params table and the metrics table of `evalctl compare`."""
    labels = [f"{h['ref']}\nrun {h['run_id']} ckpt {h['checkpoint_id']}" for h in heads]
    title = "params" if all_params else "params that differ"
    param_table = Table(title=title if params else f"{title}: none")
    param_table.add_column("param")
    for label in labels:
        param_table.add_column(label)
    for key, param_values in params.items():
        param_table.add_row(key, *[_cell(v) for v in param_values])
    metric_table = Table(title="metrics (delta vs the first; p: paired, two-sided)")
    metric_table.add_column("metric")
    for label in labels:
        metric_table.add_column(label, justify="right")
    for row in metrics:
        cells = [fmt(row["values"][0])]
        for value, delta, test in zip(
            row["values"][1:], row["deltas"][1:], row["tests"][1:], strict=True
        ):
            cell = fmt(value)
            if delta is not None:
                cell += f" ({delta:+.4g}"
                if test is not None and test["p_value"] is not None:
                    cell += f", p={test['p_value']:.3g} {test['method']}"
                cell += ")"
            cells.append(cell)
        arrow = "↑" if row["higher_is_better"] else "↓"
        metric_table.add_row(f"{row['metric']} {arrow}", *cells)
    return [param_table, metric_table]


def _cell(value: Any) -> str:
    return "-" if value is None else fmt(value)
