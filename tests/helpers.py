"""Test helpers: run the real CLI in a subprocess and write small specs and data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def evalctl(
    *args: str, home: Path, cwd: Path | None = None, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m evalctl ARGS` with EVALCTL_HOME=home and return the finished process."""
    inherited = {k: v for k, v in os.environ.items() if k != "EVALCTL_DATABASE_URL"}
    full_env = {**inherited, "EVALCTL_HOME": str(home), "COLUMNS": "200", **env}
    return subprocess.run(
        [sys.executable, "-m", "evalctl", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as JSONL."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def order_rows(n: int, offset: int = 0) -> list[dict[str, str]]:
    """Return n distinct vertex rows: an order message and its JSON."""
    rows = []
    for i in range(offset, offset + n):
        order = {"customer": f"Customer {i}", "qty": i % 9 + 1}
        rows.append(
            {
                "input_text": f"Order {i}: {order['qty']} lamps for {order['customer']}.",
                "output_text": json.dumps(order),
            }
        )
    return rows


def write_tiny_spec(folder: Path, model_dir: Path, **training: Any) -> Path:
    """Write a small vertex-format spec (tiny model, both evaluators) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", order_rows(24))
    write_jsonl(folder / "eval.jsonl", order_rows(6, offset=100))
    prompts = [
        {"id": f"p{i}", "input_text": r["input_text"], "reference": json.loads(r["output_text"])}
        for i, r in enumerate(order_rows(5, offset=200))
    ]
    write_jsonl(folder / "prompts.jsonl", prompts)
    schema = {
        "type": "object",
        "properties": {"customer": {"type": "string"}, "qty": {"type": "integer"}},
        "required": ["customer", "qty"],
    }
    (folder / "schema.json").write_text(json.dumps(schema))
    spec = {
        "name": "tiny-orders",
        "base_model": {"path": str(model_dir)},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl", "format": "vertex"},
        "training": {
            "method": "lora",
            "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "max_steps": 4,
            "batch_size": 4,
            "max_seq_len": 96,
            "learning_rate": 1e-3,
            "save_every_steps": 2,
            **training,
        },
        "evaluators": [
            {"perplexity": {"data": "eval.jsonl"}},
            {
                "json_schema": {
                    "prompts": "prompts.jsonl",
                    "schema": "schema.json",
                    "max_new_tokens": 12,
                }
            },
        ],
        "best_checkpoint": {"metric": "perplexity.ppl", "mode": "min"},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
