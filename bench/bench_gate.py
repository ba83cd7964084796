"""Benchmark: `evalctl gate` with 10 rules over 10,000 examples already in the registry.

Goal: the whole CLI call under 2 s. Two checkpoints with four evaluations each (10,000
examples per evaluation: binary, continuous with clusters, perplexity parts) are recorded
through `LocalRegistry` with the test factories (`tests/factories.py`) in a temporary
EVALCTL_HOME; then three timings are taken: the `evalctl gate` subprocess end to end (median
of --repeat), `evaluate_gate` in-process (registry reads + statistics), and the statistics
alone on ready arrays.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _shared import append_result, machine_info

RULES: list[dict[str, Any]] = [
    {"metric": "classification.correct", "no_significant_drop": {"alpha": 0.05}},
    {"metric": "text_metrics.rouge1", "no_significant_drop": {"alpha": 0.05}},
    {"metric": "text_metrics.chrf", "no_significant_drop": {"alpha": 0.05, "margin": 0.5}},
    {"metric": "perplexity.ppl", "no_significant_drop": {"alpha": 0.05}},
    {"metric": "json_schema.valid", "no_significant_drop": {"alpha": 0.05}},
    {"metric": "json_schema.parsed", "no_significant_drop": {"alpha": 0.05}},
    {"metric": "json_schema.valid_rate", "min": 0.5},
    {"metric": "perplexity.ppl", "max_increase": "5%"},
    {"metric": "classification.accuracy", "threshold": 0.6, "greater_is_better": True},
    {"metric": "text_metrics.rouge1", "max_decrease": 0.02},
]


def record(registry: Any, n: int, *, seed: int, shift: float) -> int:
    """Record a run -> checkpoint -> four evaluations of n examples; return the checkpoint id."""
    import numpy as np

    from tests.factories import (
        make_checkpoint,
        make_evaluation,
        make_examples,
        make_experiment,
        make_run,
    )

    rng = np.random.default_rng(seed)
    base_rng = np.random.default_rng(0)  # the same examples on both sides, then a shift
    experiment = make_experiment(registry, name="bench-gate")
    run = make_run(registry, experiment=experiment, name=f"bench-{seed}", spec_text="")
    checkpoint = make_checkpoint(registry, run=run, step=1)
    ids = [f"ex{i}" for i in range(n)]
    correct = (base_rng.random(n) < 0.8).astype(float)
    flip = rng.random(n) < 0.02
    correct = np.where(flip, 1.0 - correct, correct)
    rouge = np.clip(base_rng.uniform(0.3, 0.9, n) + shift + rng.normal(0, 0.02, n), 0, 1)
    chrf = rouge * 100
    tokens = base_rng.integers(5, 80, n)
    nll = base_rng.normal(2.0, 0.3, n) + rng.normal(0, 0.02, n) - shift
    valid = (base_rng.random(n) < 0.9).astype(float)
    sets = {
        "classification": (
            {"accuracy": float(correct.mean())},
            [{"correct": float(v)} for v in correct],
            [{} for _ in range(n)],
        ),
        "text_metrics": (
            {"rouge1": float(rouge.mean()), "chrf": float(chrf.mean())},
            [{"rouge1": float(a), "chrf": float(b)} for a, b in zip(rouge, chrf, strict=True)],
            [{"cluster": f"doc{i // 10}"} for i in range(n)],
        ),
        "perplexity": (
            {"ppl": float(np.exp((nll * tokens).sum() / tokens.sum()))},
            [{"nll": float(a), "tokens": float(t)} for a, t in zip(nll, tokens, strict=True)],
            [{} for _ in range(n)],
        ),
        "json_schema": (
            {"valid_rate": float(valid.mean()), "parse_rate": float(valid.mean())},
            [{"valid": float(v), "parsed": float(v)} for v in valid],
            [{} for _ in range(n)],
        ),
    }
    for evaluator, (metrics, scores, details) in sets.items():
        make_evaluation(
            registry,
            checkpoint=checkpoint,
            evaluator=evaluator,
            metrics=metrics,
            examples=make_examples(scores, ids=ids, details=details),
        )
    return int(checkpoint.id)


def write_spec(folder: Path) -> Path:
    """Write a spec whose gate section holds the 10 rules (model and data are stubs)."""
    import yaml

    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text("{}")
    (folder / "train.jsonl").write_text('{"text": "x"}\n')
    spec = {
        "name": "bench-gate",
        "base_model": "model",
        "data": {"train": "train.jsonl", "format": "completion"},
        "gate": {"rules": RULES},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def time_statistics(registry: Any, base_id: int, cand_id: int) -> float:
    """Time the ten rules' statistics on arrays already in memory (no registry reads)."""
    from service.gate import statistical
    from service.gate.refs import resolve_ref
    from service.gate.rule_spec import GateSpec, StatisticalRule
    from service.gate.sides import GateSide

    rules = [r for r in GateSpec.model_validate({"rules": RULES}).rules]
    cand = GateSide.load(registry, resolve_ref(registry, f"ckpt:{cand_id}"))
    base = GateSide.load(registry, resolve_ref(registry, f"ckpt:{base_id}"), role="baseline")
    for evaluator in cand.evaluations:  # load every example once, outside the timing
        cand.examples(evaluator), base.examples(evaluator)
    start = time.perf_counter()
    for rule in rules:
        if isinstance(rule, StatisticalRule):
            statistical.run_rule(rule, cand, base)
    return time.perf_counter() - start


def main() -> None:
    """Record the data, time the gate three ways, print and append the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="evalctl-bench-gate-"))
    os.environ["EVALCTL_HOME"] = str(home / "home")
    os.environ.pop("EVALCTL_DATABASE_URL", None)
    from service.gate.refs import resolve_ref
    from service.gate.rule_spec import GateSpec
    from service.gate.rules import evaluate_gate
    from service.local import LocalRegistry
    from service.settings import get_settings

    registry = LocalRegistry(get_settings().db_url)
    started = time.perf_counter()
    base_id = record(registry, args.examples, seed=1, shift=0.0)
    cand_id = record(registry, args.examples, seed=2, shift=-0.002)
    record_s = time.perf_counter() - started
    spec = write_spec(home)
    cmd = [sys.executable, "-m", "evalctl", "gate", "--spec", str(spec), "--no-eval",
           "--baseline", f"ckpt:{base_id}", "--candidate", f"ckpt:{cand_id}",
           "--junit", str(home / "gate.xml")]  # fmt: skip
    env = {**os.environ, "COLUMNS": "160"}
    walls, code, output = [], None, ""
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        walls.append(time.perf_counter() - t0)
        code, output = done.returncode, done.stdout + done.stderr
    print(output)
    if code not in (0, 1):
        raise SystemExit(f"evalctl gate exited {code}")
    rules = GateSpec.model_validate({"rules": RULES}).rules
    t0 = time.perf_counter()
    evaluate_gate(
        registry=registry,
        rules=rules,
        candidate=resolve_ref(registry, f"ckpt:{cand_id}"),
        baseline=resolve_ref(registry, f"ckpt:{base_id}"),
    )
    in_process_s = time.perf_counter() - t0
    stats_s = time_statistics(registry, base_id, cand_id)
    cli_s = statistics.median(walls)
    print(f"recording 2 x 4 evaluations x {args.examples} examples: {record_s:.2f} s")
    print(f"evalctl gate (subprocess, median of {args.repeat}): {cli_s:.3f} s; goal < 2 s: "
          f"{cli_s < 2}")  # fmt: skip
    print(f"evaluate_gate in-process (reads + statistics): {in_process_s:.3f} s")
    print(f"statistics alone (6 statistical rules): {stats_s:.3f} s")
    append_result(
        {
            "bench": "gate",
            "examples": args.examples,
            "rules": len(RULES),
            "exit_code": code,
            "cli_s": round(cli_s, 4),
            "in_process_s": round(in_process_s, 4),
            "statistics_s": round(stats_s, 4),
            "record_s": round(record_s, 3),
            "goal_s": 2.0,
            "goal_met": cli_s < 2.0,
            "repeat": args.repeat,
            "machine": machine_info(),
        }
    )


if __name__ == "__main__":
    main()
