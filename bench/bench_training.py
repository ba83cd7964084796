"""Benchmark: training tokens/s through evalctl's training path vs a plain PyTorch loop.

Both train the same LoRA adapter (spec defaults of the json-extraction example) on the same
tokenized batches of that example's data for the same number of optimizer steps; tokens
are non-padding tokens. The ratio shows what the Trainer + evalctl plumbing costs (goal:
within 10% of the plain loop). Runs on CUDA when available (`--device cuda`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import ROOT, add_model_args, append_result, load, machine_info

sys.path.insert(0, str(ROOT))


def tokenized(tokenizer: Any, n_rows: int, max_seq_len: int) -> list[dict[str, Any]]:
    """Return the example's training rows tokenized exactly as `evalctl run` does."""
    from runners.data import build_examples, read_jsonl
    from service.prompting import PromptRenderer
    from service.spec import DataSpec

    data = DataSpec(train=ROOT / "examples/json-extraction/train.jsonl", format="vertex")
    renderer = PromptRenderer(data, tokenizer)
    rows = read_jsonl(data.train, "vertex")
    return build_examples(rows, renderer, tokenizer, max_seq_len=max_seq_len).rows[:n_rows]


def lora(model: Any) -> Any:
    from runners.train import wrap_model
    from service.spec import TrainingSpec

    return wrap_model(model, TrainingSpec(method="lora"))


def plain_loop(model: Any, rows: list[dict], collator: Any, steps: int, bs: int) -> float:
    """Return tokens/s of a hand-written forward/backward/AdamW loop."""
    import torch

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=2e-4)
    device = next(model.parameters()).device
    tokens, start = 0, time.perf_counter()
    for step in range(steps):
        batch = collator(rows[step * bs : (step + 1) * bs])
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        optim.zero_grad()
        tokens += int(batch["attention_mask"].sum())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - start)


def trainer_loop(
    model: Any, tokenizer: Any, rows: list[dict], collator: Any, steps: int, bs: int, device: str
) -> float:
    """Return tokens/s of evalctl's Trainer path (same arguments as `evalctl run`)."""
    import tempfile

    from transformers import Trainer

    from runners.train import _ListDataset, plan_steps, training_arguments
    from service.spec import Spec

    spec = Spec.model_validate(
        {
            "name": "bench",
            "base_model": {"path": "."},
            "data": {
                "train": str(ROOT / "examples/json-extraction/train.jsonl"),
                "format": "vertex",
            },
            "training": {"max_steps": steps, "batch_size": bs, "save_every_steps": 10**6},
        },
        context={"check_files": False},
    )
    plan = plan_steps(spec.training, len(rows), has_eval=False)
    args = training_arguments(spec, plan, Path(tempfile.mkdtemp()), device)
    args.save_strategy = "no"
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_ListDataset(rows),
        data_collator=collator,
        processing_class=tokenizer,
    )
    start = time.perf_counter()
    out = trainer.train()
    elapsed = time.perf_counter() - start
    return trainer.state.num_input_tokens_seen / elapsed if out else 0.0


def main() -> None:
    """Run both loops on fresh LoRA models and record tokens/s."""
    from runners.data import CausalLMCollator

    parser = argparse.ArgumentParser(description=__doc__)
    add_model_args(parser)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    import torch

    results = {}
    for name in ("plain", "evalctl"):
        model, tokenizer, label = load(args)
        torch.manual_seed(0)
        model = lora(model)
        rows = tokenized(tokenizer, args.steps * args.batch_size, 160)
        collator = CausalLMCollator(tokenizer)
        device = str(next(model.parameters()).device.type)
        if name == "plain":
            results[name] = plain_loop(model, rows, collator, args.steps, args.batch_size)
        else:
            results[name] = trainer_loop(
                model, tokenizer, rows, collator, args.steps, args.batch_size, device
            )
        print(f"{name:<8} {results[name]:8.1f} tokens/s ({label}, {device})")
    ratio = results["evalctl"] / results["plain"]
    print(f"evalctl / plain = {ratio:.2f} (goal >= 0.9)")
    append_result(
        {
            "bench": "training",
            "model": label,
            "device": device,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "plain_tokens_per_s": round(results["plain"], 1),
            "evalctl_tokens_per_s": round(results["evalctl"], 1),
            "ratio": round(ratio, 3),
            "goal": 0.9,
            "goal_met": ratio >= 0.9,
            "machine": machine_info(),
        }
    )


if __name__ == "__main__":
    main()
