"""Benchmark: the dashboard's runs and compare pages on Postgres, next to MLflow's own reads.

Issue 6's requirement: with 10,000 runs and 1,000,000 metric points in Postgres, the server
time of the runs page (p95, goal under 150 ms) and of the compare page for 2 runs with
50,000 points each (payload at most 2,000 points per series), next to `mlflow.search_runs`
over the same 10,000 runs, all in one run of this script. This module owns the command line
and the order of the steps; the data plan is in `dashboard_plan.py`, seeding both databases
in `dashboard_seed.py`, the server, timings and report in `dashboard_measure.py`. `--quick`
(500 runs, 100,000 points, fewer requests) is a smoke run and appends nothing; `--keep`
leaves both databases for `--reuse`, which skips seeding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dashboard_measure import measure_mlflow, measure_pages, report
from dashboard_plan import make_plan
from dashboard_seed import DASH_DB, MLFLOW_DB, PG, databases_exist, drop_databases, seed_all

from tests.helpers import start_server


def parse_args() -> argparse.Namespace:
    """Read the command line (--quick shrinks everything for a smoke run)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=1_000_000, help="metric points in all")
    parser.add_argument(
        "--big-points", type=int, default=50_000, help="loss points of each compared run"
    )
    parser.add_argument("--requests", type=int, default=200, help="GETs of the default runs view")
    parser.add_argument("--other-requests", type=int, default=50, help="GETs of each other view")
    parser.add_argument("--compare-requests", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5, help="calls per MLflow baseline")
    parser.add_argument("--quick", action="store_true", help="500 runs, 100k points, fewer GETs")
    parser.add_argument("--keep", action="store_true", help="keep both databases afterwards")
    parser.add_argument("--reuse", action="store_true", help="skip seeding if --keep left them")
    parser.add_argument("--no-record", action="store_true", help="do not append to results.jsonl")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.points, args.big_points = 500, 100_000, 20_000
        args.requests, args.other_requests, args.compare_requests, args.repeat = 40, 10, 10, 3
    return args


def main() -> None:
    """Seed, start the server, time the pages and MLflow's reads, print and append."""
    args = parse_args()
    plan = make_plan(args.runs, args.points, args.big_points)
    dash_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DASH_DB}"
    mlflow_uri = f"{PG}/{MLFLOW_DB}"
    record: dict[str, Any] = {
        "bench": "dashboard",
        "runs": args.runs,
        "points": args.points,
        "big_points": args.big_points,
    }
    with tempfile.TemporaryDirectory(prefix="evalctl-bench-dash-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            if args.reuse and databases_exist(DASH_DB, MLFLOW_DB):
                print("reusing the databases of an earlier --keep run", flush=True)
                record["seeding"] = "reused"
            else:
                record["seeding"] = seed_all(plan, dash_url, mlflow_uri, tmp)
            server = start_server(tmp / "home", dash_url, mlflow_uri=mlflow_uri, timeout=90)
            try:
                record |= measure_pages(server, dash_url, plan, args)
            finally:
                server.stop()
            record["mlflow"] = measure_mlflow(mlflow_uri, plan, args.repeat)
        finally:
            from service.db import dispose_engines

            dispose_engines()
            if not args.keep:
                drop_databases(DASH_DB, MLFLOW_DB)
    report(record, save=not (args.quick or args.no_record))


if __name__ == "__main__":
    main()
