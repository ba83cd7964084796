"""Benchmark: `evalctl --help` wall time next to `python -c pass` and `mlflow --help`.

Goal: evalctl --help under 0.5 s (it must not import torch, transformers or mlflow).
Each command runs --repeat times after one warm-up; the median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import append_result, machine_info

BIN = Path(sys.executable).parent


def median_wall(cmd: list[str], repeat: int) -> float:
    """Return the median wall time of `cmd` over `repeat` runs (after one warm-up)."""
    subprocess.run(cmd, capture_output=True, check=False)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Time the three commands and record the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    rows = {
        "python -c pass": median_wall([sys.executable, "-c", "pass"], args.repeat),
        "evalctl --help": median_wall([str(BIN / "evalctl"), "--help"], args.repeat),
        "mlflow --help": median_wall([str(BIN / "mlflow"), "--help"], args.repeat),
    }
    for name, seconds in rows.items():
        print(f"{name:<16} {seconds * 1000:8.1f} ms")
    evalctl_s = rows["evalctl --help"]
    ratio = rows["mlflow --help"] / evalctl_s
    print(f"mlflow --help / evalctl --help = {ratio:.1f}x; goal evalctl < 0.5 s: {evalctl_s < 0.5}")
    append_result(
        {
            "bench": "cli_help",
            "python_pass_s": round(rows["python -c pass"], 4),
            "evalctl_help_s": round(evalctl_s, 4),
            "mlflow_help_s": round(rows["mlflow --help"], 4),
            "mlflow_over_evalctl": round(ratio, 2),
            "goal_s": 0.5,
            "goal_met": evalctl_s < 0.5,
            "repeat": args.repeat,
            "machine": machine_info(),
        }
    )


if __name__ == "__main__":
    main()
