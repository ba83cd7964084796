"""The CLI's tables: runs, checkpoints, evaluations, comparisons, aliases, jobs and tokens.

Owns presentation only: which columns a table has, how numbers are printed, and which
direction is better for a metric when the user did not say. No registry access here;
what `evalctl compare` compares is `service.compare`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from service.gate.rule_spec import lower_is_better
from service.models import CheckpointPublic, EvaluationPublic, RunPublic


def fmt(value: Any) -> str:
    """Format a number compactly for a table cell; blanks for missing values."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def checkpoint_metrics(
    checkpoints: list[CheckpointPublic], evaluations: list[EvaluationPublic]
) -> dict[int, dict[str, float]]:
    """Return checkpoint id -> {'evaluator.metric': value, 'eval_loss': ...}."""
    table: dict[int, dict[str, float]] = {c.id: {} for c in checkpoints}
    for c in checkpoints:
        for name in ("train_loss", "eval_loss"):
            value = getattr(c, name)
            if value is not None:
                table[c.id][name] = float(value)
    for e in evaluations:
        if e.checkpoint_id in table:
            for key, value in e.metrics.items():
                table[e.checkpoint_id][f"{e.evaluator}.{key}"] = float(value)
    return table


def best_per_metric(
    checkpoints: list[CheckpointPublic], evaluations: list[EvaluationPublic]
) -> dict[str, dict[str, Any]]:
    """Return, per metric, the trained checkpoint with the best value and that value."""
    values = checkpoint_metrics(checkpoints, evaluations)
    by_id = {c.id: c for c in checkpoints}
    best: dict[str, dict[str, Any]] = {}
    for cid, metrics in values.items():
        if by_id[cid].step == 0:
            continue
        for metric, value in metrics.items():
            current = best.get(metric)
            if current is None:
                better = True
            elif lower_is_better(metric):
                better = value < current["value"]
            else:
                better = value > current["value"]
            if better:
                best[metric] = {"checkpoint_id": cid, "step": by_id[cid].step, "value": value}
    return dict(sorted(best.items()))


def runs_table(runs: list[RunPublic], experiments: dict[int, str]) -> Table:
    """Return the `evalctl runs list` table."""
    table = Table(title=None, show_lines=False)
    for column in ("id", "name", "experiment", "status", "created", "duration", "best ckpt"):
        table.add_column(column)
    for run in runs:
        duration = (
            f"{(run.finished_at - run.started_at).total_seconds():.0f}s"
            if run.finished_at and run.started_at
            else "-"
        )
        status = run.status.value
        if run.status.value == "failed":
            status = "[red]failed[/]"
        table.add_row(
            str(run.id),
            run.name,
            experiments.get(run.experiment_id, str(run.experiment_id)),
            status,
            run.created_at.strftime("%Y-%m-%d %H:%M"),
            duration,
            fmt(run.best_checkpoint_id),
        )
    return table


def checkpoints_table(
    checkpoints: list[CheckpointPublic], evaluations: list[EvaluationPublic], best_id: int | None
) -> Table:
    """Return one row per checkpoint with every metric as a column."""
    values = checkpoint_metrics(checkpoints, evaluations)
    metrics = sorted({m for row in values.values() for m in row})
    failed = {(e.checkpoint_id, e.evaluator): e.error for e in evaluations if e.error}
    table = Table()
    for column in ("id", "step", "sha256", *metrics):
        table.add_column(column, justify="right" if column != "sha256" else "left")
    for c in sorted(checkpoints, key=lambda c: c.step):
        mark = " *" if c.id == best_id else ""
        cells = [fmt(values[c.id].get(m)) for m in metrics]
        table.add_row(f"{c.id}{mark}", str(c.step), c.sha256[:12], *cells)
    if failed:
        table.caption = "failed evaluators: " + "; ".join(
            f"ckpt {cid} {name}: {err}" for (cid, name), err in failed.items()
        )
    return table


def base_vs_best_table(
    base: CheckpointPublic, best: CheckpointPublic, evaluations: list[EvaluationPublic]
) -> Table:
    """Return the base-model-vs-best-checkpoint comparison printed after a run."""
    values = checkpoint_metrics([base, best], evaluations)
    metrics = sorted(set(values[base.id]) | set(values[best.id]))
    table = Table(title=f"base model vs best checkpoint (step {best.step})")
    for column in ("metric", "base", f"step {best.step}", "delta", ""):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric in metrics:
        b, n = values[base.id].get(metric), values[best.id].get(metric)
        delta = n - b if b is not None and n is not None else None
        verdict = ""
        if delta is not None and delta != 0:
            improved = (delta < 0) == lower_is_better(metric)
            verdict = "[green]better[/]" if improved else "[red]worse[/]"
        table.add_row(metric, fmt(b), fmt(n), fmt(delta), verdict)
    return table


def short(text: Any, width: int = 60) -> str:
    """Return `text` on one line, cut to `width` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def evaluations_table(
    evaluations: list[EvaluationPublic], steps: dict[int, int], title: str | None = None
) -> Table:
    """Return one row per evaluation: checkpoint, step, evaluator, status and metrics."""
    table = Table(title=title)
    for column in ("id", "ckpt", "step", "evaluator", "status", "metrics", "seconds"):
        table.add_column(column, justify="right" if column in ("id", "ckpt", "step") else "left")
    for e in evaluations:
        status = e.status.value if not e.error else f"[red]failed[/]: {escape(short(e.error, 50))}"
        metrics = ", ".join(f"{k}={fmt(float(v))}" for k, v in sorted(e.metrics.items()))
        table.add_row(
            str(e.id),
            str(e.checkpoint_id),
            fmt(steps.get(e.checkpoint_id)),
            e.evaluator,
            status,
            metrics or "-",
            f"{e.duration_s:.2f}",
        )
    return table


def metrics_table(evaluation: EvaluationPublic) -> Table:
    """Return an evaluation's metrics, one per row."""
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(evaluation.metrics.items()):
        table.add_row(f"{evaluation.evaluator}.{key}", fmt(float(value)))
    return table


def example_text(details: dict[str, Any]) -> str:
    """Return the text worth showing for one example: its output, else its text or error."""
    for key in ("output", "text", "error"):
        if details.get(key) not in (None, ""):
            return str(details[key])
    return ""


def examples_table(examples: list[Any], width: int = 60) -> Table:
    """Return per-example rows: id, scores and the (truncated) output."""
    table = Table()
    for column in ("#", "example", "scores", "output"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for ex in examples:
        scores = ", ".join(f"{k}={fmt(float(v))}" for k, v in sorted(ex.scores.items()))
        output = escape(short(example_text(ex.details), width))
        table.add_row(str(ex.position), escape(ex.example_id), scores or "-", output)
    return table


def schema_type(prop: dict[str, Any]) -> str:
    """Return a short type name for one JSON Schema property (e.g. 'integer | None')."""
    if "anyOf" in prop:
        parts = [schema_type(p) for p in prop["anyOf"]]
        named = [p for p in parts if p != "null"]
        return " | ".join(named) + (" | None" if "null" in parts else "")
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    if "enum" in prop:
        return " | ".join(repr(v) for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list[{schema_type(prop.get('items', {}))}]"
    if kind == "string" and prop.get("format") == "path":
        return "path"
    return str(kind)


def config_fields(schema: dict[str, Any]) -> list[str]:
    """Return 'name: type = default — description' per field of a Config JSON Schema."""
    required = set(schema.get("required", []))
    lines = []
    for name, prop in schema.get("properties", {}).items():
        line = f"{name}: {schema_type(prop)}"
        if name in required:
            line += " (required)"
        elif "default" in prop:
            line += f" = {prop['default']!r}"
        if prop.get("description"):
            line += f" — {prop['description']}"
        lines.append(line)
    return lines


def evaluators_table(rows: list[dict[str, Any]]) -> Table:
    """Return the `evalctl evaluators list` table: name, module and config fields."""
    table = Table(show_lines=True)
    for column in ("name", "module", "config fields"):
        table.add_column(column, overflow="fold")
    for row in rows:
        if row.get("error"):
            fields = f"[red]cannot load:[/] {escape(row['error'])}"
        else:
            fields = escape("\n".join(config_fields(row["config_schema"])) or "(no options)")
        table.add_row(row["name"], row["module"], fields)
    return table


def compare_tables(
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


def aliases_table(rows: list[dict[str, Any]]) -> Table:
    """Return the table of `evalctl aliases list` (rows as its --json prints them)."""
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
    return table


def alias_history_table(events: list[Any]) -> Table:
    """Return the table of `evalctl aliases history`: one row per move, newest first."""
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
    return table


def _gate_cell(gate: dict[str, Any] | None) -> str:
    if gate is None:
        return "-"
    passed = gate.get("passed")
    return "passed" if passed is True else "failed" if passed is False else "attached"


def jobs_table(jobs: list[Any]) -> Table:
    """Return the table of `evalctl jobs list`."""
    table = Table("id", "kind", "status", "run", "attempts", "labels", "gpus", "created", "reason")
    for j in jobs:
        table.add_row(
            str(j.id),
            j.kind,
            j.status + (" (cancel requested)" if j.cancel_requested else ""),
            str(j.run_id or "-"),
            f"{j.attempts}/{j.max_attempts}",
            ",".join(j.labels) or "-",
            str(j.gpus),
            f"{j.created_at:%Y-%m-%d %H:%M:%S}",
            j.failure_reason or "",
        )
    return table


def tokens_table(tokens: list[Any]) -> Table:
    """Return the table of `evalctl tokens list` (never the secrets)."""
    table = Table("id", "name", "scopes", "prefix", "created", "expires", "last used", "revoked")
    for r in tokens:
        table.add_row(
            str(r.id),
            r.name,
            ",".join(r.scopes),
            r.prefix,
            when(r.created_at),
            when(r.expires_at),
            when(r.last_used_at),
            when(r.revoked_at),
        )
    return table


def when(value: datetime | None) -> str:
    """Format a timestamp to the second; '-' when there is none."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"
