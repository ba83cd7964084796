"""Benchmark: job claims per second on Postgres with 8 runners (threads, then processes).

Two workloads, each with 8 runner threads in one process and with 8 runner processes:
polling an empty queue for `--seconds` (what idle runners cost the database: every poll
re-queues expired leases and runs the `FOR UPDATE SKIP LOCKED` pick), and draining a
queue of `--jobs` jobs (every job claimed exactly once, checked, and finished before the
runner claims again, as a runner does). Each runner opens one
session per claim, as the API does per request. The database is a temporary one on
127.0.0.1:5432, dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _shared import append_result, machine_info, print_table

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def runner_loop(url: str, runner_id: int, deadline: float | None) -> list[int]:
    """Claim until the queue is empty (deadline None) or until `deadline`; return the ids
    claimed (polls that found nothing count as -1)."""
    from sqlmodel import Session

    from service import crud
    from service.db import get_engine

    engine = get_engine(url)
    got: list[int] = []
    while True:
        with Session(engine) as session:
            job = crud.claim_job(
                session=session, runner_id=runner_id, labels=["bench"], gpus=1, lease_seconds=600
            )
            got.append(-1 if job is None else int(job.id or 0))
            if job is not None:  # as a runner does: a claim hands back a job it still holds
                crud.finish_job(
                    session=session,
                    job_id=int(job.id or 0),
                    runner_id=runner_id,
                    status="succeeded",
                )
        if deadline is None and job is None:
            return got
        if deadline is not None and time.perf_counter() >= deadline:
            return got


def _process_main(url: str, runner_id: int, seconds: float | None, start: Any, out: Any) -> None:
    from service.db import get_engine

    get_engine(url).connect().close()  # connect before the start line, like a warm runner
    start.wait()
    deadline = None if seconds is None else time.perf_counter() + seconds
    out.put(runner_loop(url, runner_id, deadline))


def with_threads(url: str, n: int, seconds: float | None) -> tuple[list[int], float]:
    """Run n runner threads; return every claim result and the wall time."""
    results: list[list[int]] = [[] for _ in range(n)]
    start = time.perf_counter()
    deadline = None if seconds is None else start + seconds

    def work(i: int) -> None:
        results[i] = runner_loop(url, i + 1, deadline)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [x for r in results for x in r], time.perf_counter() - start


def with_processes(url: str, n: int, seconds: float | None) -> tuple[list[int], float]:
    """Run n runner processes (spawned, connected, then started together)."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(n + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_process_main, args=(url, i + 1, seconds, start, out)) for i in range(n)
    ]
    for proc in procs:
        proc.start()
    start.wait()
    t0 = time.perf_counter()
    results = [out.get(timeout=600) for _ in procs]
    wall = time.perf_counter() - t0
    for proc in procs:
        proc.join()
    return [x for r in results for x in r], wall


def fill(url: str, jobs: int) -> set[int]:
    """Queue `jobs` jobs in one transaction; return their ids."""
    from sqlalchemy import insert
    from sqlmodel import Session, col, select

    from service.db import get_engine
    from service.models import Job, JobCreate

    row = Job.model_validate(JobCreate(kind="eval", spec_text="x", labels=["bench"])).model_dump()
    row.pop("id")
    with Session(get_engine(url)) as session:
        session.exec(insert(Job), params=[dict(row) for _ in range(jobs)])
        session.commit()
        queued = select(col(Job.id)).where(Job.status == "queued")
        return {int(i) for i in session.exec(queued).all() if i is not None}


def main() -> None:
    """Create a temp database, run the four measurements, print and append the result."""
    import psycopg

    from service.db import dispose_engines, upgrade

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runners", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0, help="empty-queue polling time")
    args = parser.parse_args()
    name = f"evalctl_bench_{uuid.uuid4().hex[:10]}"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    admin = psycopg.connect(ADMIN_URL, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    rows: list[list[Any]] = []
    record: dict[str, Any] = {"bench": "claims", "runners": args.runners, "jobs": args.jobs}
    try:
        upgrade(url)
        modes: dict[str, Callable[[str, int, float | None], tuple[list[int], float]]] = {
            "threads": with_threads,
            "processes": with_processes,
        }
        for mode, run in modes.items():
            polls, wall = run(url, args.runners, args.seconds)
            assert all(x == -1 for x in polls), "the queue was meant to be empty"
            record[f"empty_poll_per_s_{mode}"] = round(len(polls) / wall, 1)
            rows.append([f"empty queue, {mode}", len(polls), wall, len(polls) / wall])

            ids = fill(url, args.jobs)
            claims, wall = run(url, args.runners, None)
            taken = [x for x in claims if x != -1]
            assert sorted(taken) == sorted(ids), "every job must be claimed exactly once"
            record[f"drain_claims_per_s_{mode}"] = round(len(taken) / wall, 1)
            record[f"drain_s_{mode}"] = round(wall, 3)
            rows.append([f"drain {args.jobs} jobs, {mode}", len(taken), wall, len(taken) / wall])
    finally:
        dispose_engines(url)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    print_table(["workload (8 runners)", "claims", "wall s", "per s"], rows)
    with psycopg.connect(ADMIN_URL) as conn:
        server = conn.execute("SHOW server_version").fetchone()
    record["postgres"] = server[0] if server else None
    record["machine"] = machine_info()
    append_result(record)


if __name__ == "__main__":
    main()
