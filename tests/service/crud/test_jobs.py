"""The leased job queue on SQLite and Postgres: claims, leases, retries, cancels, logs, and
concurrent claimers (threads and processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from service import crud
from service.crud import IdempotencyKeyReused, LeaseError
from service.crud.jobs import _SCAN_BATCH
from service.errors import EvalctlError, NotFoundError
from service.models import Job, JobCreate, RunCreate, utcnow
from tests.service.crud.helpers import call, claim, enqueue

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_claims_are_first_in_first_out_and_lease_the_job(engine: Engine) -> None:
    jobs = [enqueue(engine, payload={"n": i}) for i in range(3)]
    first = claim(engine, runner_id=7, lease_seconds=30)
    assert first is not None and first.id == jobs[0].id
    assert (first.status, first.lease_owner, first.attempts) == ("running", 7, 1)
    assert first.started_at is not None and first.lease_expires_at is not None
    assert timedelta(seconds=25) < first.lease_expires_at - utcnow() <= timedelta(seconds=30)
    # Other runners (a runner that holds a job gets that job back: see below).
    assert [claim(engine, runner_id=8).id, claim(engine, runner_id=9).id] == [
        jobs[1].id,
        jobs[2].id,
    ]
    assert claim(engine, runner_id=10) is None


def test_runner_gets_only_jobs_its_labels_and_gpus_allow(engine: Engine) -> None:
    needs_a100 = enqueue(engine, labels=["a100"], gpus=1)
    needs_two = enqueue(engine, labels=[], gpus=2)
    anywhere = enqueue(engine, labels=[], gpus=1)
    both = enqueue(engine, labels=["a100", "nvlink"], gpus=4)

    cpu_box = {"labels": ["cpu"], "gpus": 1}
    assert claim(engine, runner_id=1, **cpu_box).id == anywhere.id
    assert claim(engine, runner_id=2, **cpu_box) is None
    big = {"labels": ["a100", "nvlink", "x"], "gpus": 2}
    assert claim(engine, runner_id=3, **big).id == needs_a100.id
    assert claim(engine, runner_id=4, **big).id == needs_two.id
    assert claim(engine, runner_id=5, **big) is None  # `both` wants 4 GPUs
    assert claim(engine, runner_id=6, labels=["nvlink", "a100"], gpus=8).id == both.id


def test_sqlite_scan_reaches_a_matching_job_behind_many_others(engine: Engine) -> None:
    with Session(engine) as session:
        for _ in range(_SCAN_BATCH + 5):
            session.add(Job(kind="eval", spec_text="", labels=["tpu"]))
        session.commit()
    target = enqueue(engine, labels=["gpu"])
    assert claim(engine, labels=["gpu"]).id == target.id


def test_expired_lease_is_requeued_and_the_next_claim_counts_an_attempt(engine: Engine) -> None:
    job = enqueue(engine)
    claim(engine, runner_id=1, lease_seconds=0.05)
    time.sleep(0.1)
    again = claim(engine, runner_id=2)
    assert again is not None and again.id == job.id
    assert (again.attempts, again.lease_owner) == (2, 2)
    with pytest.raises(LeaseError, match="does not hold the lease on job"):
        call(engine, crud.heartbeat_job, job_id=job.id, runner_id=1, lease_seconds=60)
    with pytest.raises(LeaseError):
        call(engine, crud.finish_job, job_id=job.id, runner_id=1, status="succeeded")


def test_job_out_of_attempts_fails_with_the_reason(engine: Engine) -> None:
    job = enqueue(engine, max_attempts=2)
    for runner in (1, 2):
        assert claim(engine, runner_id=runner, lease_seconds=60).id == job.id
        later = utcnow() + timedelta(minutes=5)
        assert call(engine, crud.requeue_expired, now=later) == 1
    failed = call(engine, crud.get_job, job_id=job.id)
    assert (failed.status, failed.failure_reason) == ("failed", "lease expired 2 times")
    assert failed.finished_at is not None and failed.lease_owner is None
    assert claim(engine) is None
    assert call(engine, crud.requeue_expired, now=utcnow() + timedelta(hours=1)) == 0


def test_heartbeat_renews_only_for_the_holder(engine: Engine) -> None:
    job = enqueue(engine)
    leased = claim(engine, runner_id=1, lease_seconds=1)
    beat = call(engine, crud.heartbeat_job, job_id=job.id, runner_id=1, lease_seconds=120)
    assert beat.lease_expires_at > leased.lease_expires_at + timedelta(seconds=100)
    assert beat.cancel_requested is False
    with pytest.raises(LeaseError, match=r"runner 2 does not hold .* leased to runner 1"):
        call(engine, crud.heartbeat_job, job_id=job.id, runner_id=2, lease_seconds=60)
    with pytest.raises(LeaseError):
        call(engine, crud.append_job_logs, job_id=job.id, runner_id=2, lines=["x"])
    with pytest.raises(NotFoundError, match="job 999 not found"):
        call(engine, crud.heartbeat_job, job_id=999, runner_id=1, lease_seconds=60)


def test_finish_succeeds_or_retries_a_retryable_failure(engine: Engine, unique_name: str) -> None:
    with Session(engine) as session:
        experiment = crud.get_or_create_experiment(session=session, name=unique_name)
        run_in = RunCreate(name="r", experiment_id=experiment.id, spec_text="", spec_hash="0")
        run_id = crud.create_run(session=session, run_in=run_in).id
    job = enqueue(engine, max_attempts=2)
    claim(engine, runner_id=1)
    retried = call(
        engine,
        crud.finish_job,
        job_id=job.id,
        runner_id=1,
        status="failed",
        failure_reason="CUDA OOM",
        retryable=True,
    )
    assert (retried.status, retried.failure_reason, retried.lease_owner) == (
        "queued",
        "CUDA OOM",
        None,
    )
    claim(engine, runner_id=1)
    final = call(
        engine, crud.finish_job, job_id=job.id, runner_id=1, status="failed", retryable=True
    )
    assert (final.status, final.attempts) == ("failed", 2)  # no attempts left

    other = enqueue(engine)
    claim(engine, runner_id=3)
    done = call(
        engine, crud.finish_job, job_id=other.id, runner_id=3, status="succeeded", run_id=run_id
    )
    assert (done.status, done.run_id, done.failure_reason) == ("succeeded", run_id, None)
    assert done.finished_at is not None
    with pytest.raises(LeaseError):  # finished: the lease is gone
        call(engine, crud.heartbeat_job, job_id=other.id, runner_id=3, lease_seconds=60)


def test_cancel_queued_at_once_and_running_by_request(engine: Engine) -> None:
    queued, running = enqueue(engine), enqueue(engine)
    claim(engine, runner_id=1)  # takes `queued` (the oldest)
    queued, running = running, queued
    cancelled = call(engine, crud.cancel_job, job_id=queued.id)
    assert (cancelled.status, cancelled.finished_at is not None) == ("cancelled", True)
    assert claim(engine, runner_id=2) is None

    asked = call(engine, crud.cancel_job, job_id=running.id)
    assert (asked.status, asked.cancel_requested) == ("running", True)
    beat = call(engine, crud.heartbeat_job, job_id=running.id, runner_id=1, lease_seconds=60)
    assert beat.cancel_requested is True
    stopped = call(engine, crud.finish_job, job_id=running.id, runner_id=1, status="cancelled")
    assert stopped.status == "cancelled"
    assert call(engine, crud.cancel_job, job_id=running.id).status == "cancelled"  # idempotent

    done = enqueue(engine)
    claim(engine, runner_id=1)
    call(engine, crud.finish_job, job_id=done.id, runner_id=1, status="succeeded")
    with pytest.raises(EvalctlError, match=f"job {done.id} already succeeded"):
        call(engine, crud.cancel_job, job_id=done.id)


def test_cancel_requested_job_whose_lease_expires_is_cancelled_not_requeued(
    engine: Engine,
) -> None:
    job = enqueue(engine)
    claim(engine, runner_id=1)
    call(engine, crud.cancel_job, job_id=job.id)
    assert call(engine, crud.requeue_expired, now=utcnow() + timedelta(hours=1)) == 1
    assert call(engine, crud.get_job, job_id=job.id).status == "cancelled"


def test_logs_come_back_in_order_and_page_by_id(engine: Engine) -> None:
    job = enqueue(engine)
    claim(engine, runner_id=1)
    call(engine, crud.append_job_logs, job_id=job.id, runner_id=1, lines=["a", "b", "ü 🚀"])
    call(engine, crud.append_job_logs, job_id=job.id, runner_id=1, lines=["d"])
    logs = call(engine, crud.job_logs, job_id=job.id)
    assert [log.line for log in logs] == ["a", "b", "ü 🚀", "d"]
    rest = call(engine, crud.job_logs, job_id=job.id, after_id=logs[1].id, limit=1)
    assert [log.line for log in rest] == ["ü 🚀"]


def test_list_jobs_filters_by_status_and_counts(engine: Engine) -> None:
    for _ in range(3):
        enqueue(engine)
    claim(engine)
    rows, count = call(engine, crud.list_jobs, status="queued", limit=1)
    assert count == 2 and len(rows) == 1
    assert call(engine, crud.list_jobs, limit=10)[1] == 3
    with pytest.raises(EvalctlError, match="Did you mean 'queued'"):
        call(engine, crud.list_jobs, status="queud")


def test_enqueue_with_a_key_twice_queues_one_job_and_refuses_another_body(engine: Engine) -> None:
    job_in = JobCreate(kind="train", spec_text="name: x\n", labels=["a"])
    first = call(engine, crud.enqueue_job, job_in=job_in, idempotency_key="k-enqueue")
    again = call(engine, crud.enqueue_job, job_in=job_in, idempotency_key="k-enqueue")
    assert again.id == first.id
    other = job_in.model_copy(update={"labels": ["b"]})
    with pytest.raises(IdempotencyKeyReused, match=r"'k-enqueue' was already used for job"):
        call(engine, crud.enqueue_job, job_in=other, idempotency_key="k-enqueue")
    assert call(engine, crud.list_jobs)[1] == 1


def test_a_retried_claim_returns_the_job_it_took_without_a_new_attempt(engine: Engine) -> None:
    job, spare = enqueue(engine), enqueue(engine)
    first = claim(engine, runner_id=1, lease_seconds=30, claim_key="k-claim")
    retried = claim(engine, runner_id=1, lease_seconds=60, claim_key="k-claim")
    assert first.id == retried.id == job.id
    assert (retried.attempts, retried.lease_owner) == (1, 1)
    assert retried.lease_expires_at > first.lease_expires_at  # renewed, as a heartbeat
    assert call(engine, crud.get_job, job_id=spare.id).status == "queued"
    with pytest.raises(IdempotencyKeyReused, match="for runner 1, not runner 2"):
        claim(engine, runner_id=2, claim_key="k-claim")
    # Once the lease ends the key is free: a new claim with it takes a new job.
    call(engine, crud.finish_job, job_id=job.id, runner_id=1, status="succeeded")
    assert claim(engine, runner_id=1, claim_key="k-claim").id == spare.id


def test_a_claim_retried_after_its_lease_expired_gets_the_job_back(engine: Engine) -> None:
    job = enqueue(engine, labels=["a"])
    claim(engine, runner_id=1, labels=["a"], lease_seconds=0.05, claim_key="k-late")
    time.sleep(0.1)  # the lease expired, but nobody re-queued the job yet: still runner 1's
    again = claim(engine, runner_id=1, labels=["a"], claim_key="k-late")
    assert (again.id, again.attempts, again.lease_owner) == (job.id, 1, 1)
    assert again.lease_expires_at > utcnow() + timedelta(seconds=50)  # renewed
    # Once another claim re-queued the expired job, the lease really ended: a retry of the
    # claim that took it is a new claim, and taking the job again counts an attempt.
    claim(engine, runner_id=1, labels=["a"], lease_seconds=0.05, claim_key="k-late")
    time.sleep(0.1)
    assert claim(engine, runner_id=2, labels=["b"]) is None  # re-queues it, cannot take it
    assert call(engine, crud.get_job, job_id=job.id).status == "queued"
    last = claim(engine, runner_id=1, labels=["a"], claim_key="k-late")
    assert (last.id, last.attempts) == (job.id, 2)


def test_a_runner_that_claims_again_gets_the_job_it_holds(engine: Engine) -> None:
    """A claim whose answer was lost for good (the client gave up; its next claim has a
    new key) must not strand the job until its lease expires, nor cost an attempt."""
    job, spare = enqueue(engine), enqueue(engine)
    first = claim(engine, runner_id=1, lease_seconds=30, claim_key="k-lost")
    again = claim(engine, runner_id=1, lease_seconds=60, claim_key="k-next")
    assert (again.id, again.attempts, again.lease_owner) == (job.id, 1, 1)
    assert again.lease_expires_at > first.lease_expires_at
    assert claim(engine, runner_id=1).id == job.id  # no key at all: the same
    assert call(engine, crud.get_job, job_id=spare.id).status == "queued"
    # Expired but not yet re-queued: still this runner's job, no attempt counted.
    claim(engine, runner_id=1, lease_seconds=0.05)
    time.sleep(0.1)
    late = claim(engine, runner_id=1)
    assert (late.id, late.attempts) == (job.id, 1)
    # Another runner still gets the next job.
    assert claim(engine, runner_id=2).id == spare.id
    # Once it is finished, the runner's next claim takes a new job.
    call(engine, crud.finish_job, job_id=job.id, runner_id=1, status="succeeded")
    assert claim(engine, runner_id=1) is None


def test_a_held_job_whose_cancel_was_asked_is_cancelled_not_handed_back(engine: Engine) -> None:
    job, spare = enqueue(engine), enqueue(engine)
    claim(engine, runner_id=1, claim_key="k-cancel")
    call(engine, crud.cancel_job, job_id=job.id)
    assert claim(engine, runner_id=1, claim_key="k-cancel").id == spare.id  # a retry: the same
    cancelled = call(engine, crud.get_job, job_id=job.id)
    assert (cancelled.status, cancelled.lease_owner) == ("cancelled", None)


def test_a_retried_finish_returns_the_finished_job(engine: Engine) -> None:
    job = enqueue(engine)
    claim(engine, runner_id=1)
    finish = partial(call, engine, crud.finish_job, job_id=job.id)
    done = finish(runner_id=1, status="succeeded", finish_key="k-finish")
    again = finish(runner_id=1, status="succeeded", finish_key="k-finish")
    assert (again.status, again.finished_at) == ("succeeded", done.finished_at)
    with pytest.raises(LeaseError):  # a new finish of an ended lease is still refused
        finish(runner_id=1, status="failed")
    with pytest.raises(IdempotencyKeyReused, match="for runner 1, not runner 2"):
        finish(runner_id=2, status="succeeded", finish_key="k-finish")


def test_a_finish_retried_after_another_runner_took_the_job_is_a_lease_error(
    engine: Engine,
) -> None:
    """Runner 1's retryable failure committed but its answer was lost; runner 2 took the
    job again before runner 1's retry (same key) arrived. The retry must not finish
    runner 2's lease nor be blamed on runner 2: it is told it no longer holds the lease."""
    job = enqueue(engine, max_attempts=3)
    claim(engine, runner_id=1)
    finish = partial(call, engine, crud.finish_job, job_id=job.id)
    first = finish(runner_id=1, status="failed", retryable=True, finish_key="fA")
    assert first.status == "queued"
    assert finish(runner_id=1, status="failed", retryable=True, finish_key="fA") == first
    assert claim(engine, runner_id=2).id == job.id
    with pytest.raises(LeaseError, match=r"runner 1 does not hold .*leased to runner 2"):
        finish(runner_id=1, status="failed", retryable=True, finish_key="fA")
    running = call(engine, crud.get_job, job_id=job.id)
    assert (running.status, running.lease_owner, running.attempts) == ("running", 2, 2)
    done = finish(runner_id=2, status="succeeded", finish_key="fB")
    assert finish(runner_id=2, status="succeeded", finish_key="fB") == done
    with pytest.raises(IdempotencyKeyReused, match=r"finished job \d+ for runner 2, not runner 1"):
        finish(runner_id=1, status="succeeded", finish_key="fB")


def test_a_retried_log_batch_is_appended_once(engine: Engine) -> None:
    job = enqueue(engine)
    claim(engine, runner_id=1)
    append = partial(call, engine, crud.append_job_logs, job_id=job.id, runner_id=1)
    append(lines=["a", "b"], batch_key="k-logs")
    append(lines=["a", "b"], batch_key="k-logs")
    append(lines=["c"], batch_key="k2")
    lines = [row.line for row in call(engine, crud.job_logs, job_id=job.id)]
    assert lines == ["a", "b", "c"]


def test_eight_threads_claim_every_job_exactly_once(engine: Engine) -> None:
    ids = {enqueue(engine, payload={"i": i}).id for i in range(50)}
    claimed: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(runner_id: int) -> None:
        try:
            while (job := claim(engine, runner_id=runner_id)) is not None:
                with lock:
                    claimed.append(job.id)
                # A runner runs one job at a time: it finishes it before claiming again.
                call(engine, crud.finish_job, job_id=job.id, runner_id=runner_id,
                     status="succeeded")  # fmt: skip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sorted(claimed) == sorted(ids)
    rows, _ = call(engine, crud.list_jobs, limit=None)
    assert {(r.status, r.attempts) for r in rows} == {("succeeded", 1)}


WORKER = """
import json, sys
from sqlmodel import Session
from service import crud
from service.db import make_engine
engine = make_engine(sys.argv[1])
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
got = []
while True:
    with Session(engine) as session:
        job = crud.claim_job(session=session, runner_id=int(sys.argv[2]), labels=[], gpus=1,
                              lease_seconds=60)
        if job is None:
            break
        got.append(job.id)
        crud.finish_job(session=session, job_id=job.id, runner_id=int(sys.argv[2]),
                         status="succeeded")
print(json.dumps(got))
"""


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_four_processes_claim_every_job_exactly_once(engine: Engine, db_url: str) -> None:
    ids = {enqueue(engine).id for _ in range(50)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db_url, str(n)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for worker in workers:  # imports done in all of them, then start together
        assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    claimed: list[int] = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        claimed += json.loads(out)
    assert sorted(claimed) == sorted(ids)
