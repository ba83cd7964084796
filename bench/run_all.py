"""Run every benchmark in this folder on the default model (SmolLM2-135M) and the CLI.

`make bench` calls this. Each script appends one JSON line to bench/results.jsonl;
bench/RESULTS.md summarises the numbers committed with the code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "bench_cli_help.py",
    "bench_perplexity.py",
    "bench_generation.py",
    "bench_training.py",
    "bench_shared_eval.py",
    "bench_lm_eval.py",
]


def main() -> int:
    """Run the benchmarks one after another; return non-zero if one failed to run."""
    failed = 0
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        extra = [] if script == "bench_cli_help.py" else sys.argv[1:]
        done = subprocess.run([sys.executable, str(HERE / script), *extra], check=False)
        failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
