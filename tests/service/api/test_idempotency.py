"""Retried writes leave one effect: a real server behind a proxy that loses answers.

Every write goes through `tests.faultproxy.FaultProxy`, which forwards the request (the
service commits it) and then drops the connection or answers 504/500 instead of the
service's answer, for the first few matching requests. The real clients (`evalctl
submit`, `RemoteRegistry`, `JobsClient`) retry as they would against a flaky network;
afterwards the registry holds exactly one row per logical write, and the client got the
answer the first try produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.crud import LeaseError
from service.jobs_client import JobsClient
from service.models import CheckpointCreate, EvaluationCreate, JobCreate, RunCreate, RunnerPublic
from service.remote import ApiClient, RemoteRegistry, ServiceUnavailableError
from tests.faultproxy import FaultProxy, fault_proxy
from tests.helpers import LiveServer, evalctl, write_tiny_spec
from tests.service.api.conftest import JOB_SPEC_TEXT


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[FaultProxy]:
    with fault_proxy(server.url) as running:
        yield running


@pytest.fixture
def remote(server: LiveServer, proxy: FaultProxy) -> RemoteRegistry:
    """The registry as a runner sees it, through the proxy (write + runner scopes)."""
    return RemoteRegistry(proxy.url, server.make_token("write", "runner"), retry_for=30)


def jobs_with_label(admin: httpx.Client, label: str) -> list[dict]:
    page = admin.get("/api/v1/jobs", params={"limit": 1000}).json()
    return [job for job in page["data"] if job["labels"] == [label]]


def new_run(registry: RemoteRegistry, experiment: str) -> int:
    experiment_id = registry.get_or_create_experiment(name=experiment).id
    run_in = RunCreate(name="r", experiment_id=experiment_id, spec_text="x", spec_hash="a" * 64)
    return registry.create_run(run_in=run_in).id


def test_submit_whose_answers_are_dropped_queues_one_job(
    server: LiveServer, proxy: FaultProxy, admin: httpx.Client, tmp_path: Path, tiny_model_dir: Path
) -> None:
    label = f"pool-{tmp_path.name}"
    spec = write_tiny_spec(tmp_path / "exp", tiny_model_dir)
    lost = proxy.fail("POST", "/api/v1/jobs", times=2)
    env = {"EVALCTL_URL": proxy.url, "EVALCTL_TOKEN": server.admin_token}
    done = evalctl("submit", str(spec), "--labels", label, home=tmp_path / "cli", **env)
    assert done.returncode == 0, done.stderr
    assert lost.hits == 2 and proxy.count("POST", "/api/v1/jobs") == 3
    queued = jobs_with_label(admin, label)
    assert [job["id"] for job in queued] == [int(done.stdout)]


def test_create_run_answered_504_makes_one_run(
    remote: RemoteRegistry, proxy: FaultProxy, unique_name: str
) -> None:
    lost = proxy.fail("POST", "/api/v1/runs", times=2, answer=504)
    run_id = new_run(remote, unique_name)
    assert lost.hits == 2
    runs = remote.list_runs(experiment=unique_name)
    assert [run.id for run in runs.data] == [run_id]


def test_a_500_after_the_write_is_retried_and_makes_one_run(
    remote: RemoteRegistry, proxy: FaultProxy, unique_name: str
) -> None:
    lost = proxy.fail("POST", "/api/v1/runs", answer=500)
    run_id = new_run(remote, unique_name)
    assert lost.hits == 1
    assert [run.id for run in remote.list_runs(experiment=unique_name).data] == [run_id]


def test_record_evaluation_whose_answer_is_dropped_records_one(
    server: LiveServer, remote: RemoteRegistry, proxy: FaultProxy, unique_name: str
) -> None:
    run_id = new_run(remote, unique_name)
    path = str(server.home / "runs" / str(run_id) / "ckpt-2")
    checkpoint = remote.record_checkpoint(
        checkpoint_in=CheckpointCreate(run_id=run_id, step=2, path=path, sha256="b" * 64)
    )
    lost = proxy.fail("POST", "/api/v1/evaluations", times=2)
    evaluation_in = EvaluationCreate(
        checkpoint_id=checkpoint.id, evaluator="perplexity", config_hash="h", metrics={"ppl": 3.0}
    )
    recorded = remote.record_evaluation(evaluation_in=evaluation_in, examples=[])
    assert lost.hits == 2
    listed = remote.list_evaluations(checkpoint_id=checkpoint.id)
    assert [e.id for e in listed] == [recorded.id]


def test_alias_move_whose_answer_is_dropped_records_one_event(
    server: LiveServer, proxy: FaultProxy, unique_name: str
) -> None:
    writer = RemoteRegistry(proxy.url, server.make_token("write"), retry_for=30)
    run_id = new_run(writer, unique_name)
    path = str(server.home / "runs" / str(run_id) / "ckpt-4")
    checkpoint = writer.record_checkpoint(
        checkpoint_in=CheckpointCreate(run_id=run_id, step=4, path=path, sha256="d" * 64)
    )
    experiment_id = writer.get_experiment(name=unique_name).id
    lost = proxy.fail("PUT", r"/api/v1/aliases/\d+/production", times=2)
    alias = writer.set_alias(
        experiment_id=experiment_id, name="production", checkpoint_id=checkpoint.id, actor="ci"
    )
    assert lost.hits == 2 and alias.checkpoint_id == checkpoint.id
    history = writer.alias_history(experiment_id=experiment_id, name="production")
    assert [(e.checkpoint_id, e.previous_checkpoint_id) for e in history] == [(checkpoint.id, None)]


def runner_and_job(
    server: LiveServer, proxy: FaultProxy, admin: httpx.Client, name: str, *, retry_for: float
) -> tuple[JobsClient, RunnerPublic, dict]:
    """A runner that talks through the proxy, and a job only it can take."""
    jobs = JobsClient(ApiClient(proxy.url, server.make_token("runner"), retry_for=retry_for))
    runner = jobs.register_runner(name=name, labels=[f"pool-{name}"], gpus=1)
    body = {"kind": "train", "spec_text": JOB_SPEC_TEXT, "labels": [f"pool-{name}"], "gpus": 1}
    return jobs, runner, admin.post("/api/v1/jobs", json=body).json()


def test_lost_claim_answer_gives_the_runner_its_job_on_retry(
    server: LiveServer, proxy: FaultProxy, admin: httpx.Client, unique_name: str
) -> None:
    label = f"pool-{unique_name}"
    jobs, runner, queued = runner_and_job(server, proxy, admin, unique_name, retry_for=30)
    lost = proxy.fail("POST", "/api/v1/jobs/claim")
    job = jobs.claim(runner_id=runner.id, labels=[label], gpus=1, lease_seconds=60, wait=0)
    assert lost.hits == 1 and proxy.count("POST", "/api/v1/jobs/claim") == 2
    assert job is not None and job.id == queued["id"]
    assert (job.status, job.lease_owner, job.attempts) == ("running", runner.id, 1)
    # The runner that got the answer holds the lease: it heartbeats and finishes it.
    beat = jobs.heartbeat(job_id=job.id, runner_id=runner.id, lease_seconds=60)
    assert beat.lease_owner == runner.id
    done = jobs.finish(job_id=job.id, runner_id=runner.id, status="succeeded")
    assert (done.status, done.attempts) == ("succeeded", 1)
    assert jobs.claim(runner_id=runner.id, labels=[label], gpus=1, lease_seconds=60, wait=0) is None


def test_a_claim_the_client_gave_up_on_is_handed_back_by_its_next_claim(
    server: LiveServer, proxy: FaultProxy, admin: httpx.Client, unique_name: str
) -> None:
    label = f"pool-{unique_name}"
    jobs, runner, queued = runner_and_job(server, proxy, admin, unique_name, retry_for=1)
    lost = proxy.fail("POST", "/api/v1/jobs/claim", times=10**6)
    with pytest.raises(ServiceUnavailableError):  # every answer lost: the client gives up
        jobs.claim(runner_id=runner.id, labels=[label], gpus=1, lease_seconds=60, wait=0)
    assert lost.hits >= 2
    lost.stop()
    # Its next claim (a new key) gets the job the lost claims took, as the same attempt.
    job = jobs.claim(runner_id=runner.id, labels=[label], gpus=1, lease_seconds=60, wait=0)
    assert job is not None and job.id == queued["id"]
    assert (job.status, job.lease_owner, job.attempts) == ("running", runner.id, 1)


def test_retried_logs_and_finish_have_one_effect(
    server: LiveServer, proxy: FaultProxy, admin: httpx.Client, unique_name: str
) -> None:
    label = f"pool-{unique_name}"
    token = server.make_token("runner")
    jobs = JobsClient(ApiClient(proxy.url, token, retry_for=30))
    runner = jobs.register_runner(name=unique_name, labels=[label], gpus=1)
    job_in = JobCreate(kind="train", spec_text=JOB_SPEC_TEXT, labels=[label])
    queued = JobsClient(ApiClient(server.url, server.admin_token)).enqueue(job_in=job_in)
    job = jobs.claim(runner_id=runner.id, labels=[label], gpus=1, lease_seconds=60, wait=0)
    assert job is not None and job.id == queued.id

    logs_lost = proxy.fail("POST", rf"/api/v1/jobs/{job.id}/logs", times=2)
    jobs.append_logs(job_id=job.id, runner_id=runner.id, lines=["step 1", "step 2"])
    jobs.append_logs(job_id=job.id, runner_id=runner.id, lines=["step 3"])
    assert logs_lost.hits == 2
    assert [line.line for line in jobs.logs(job_id=job.id)] == ["step 1", "step 2", "step 3"]

    finish_lost = proxy.fail("POST", rf"/api/v1/jobs/{job.id}/finish", answer=504)
    done = jobs.finish(job_id=job.id, runner_id=runner.id, status="succeeded", run_id=None)
    assert finish_lost.hits == 1
    assert (done.status, done.runner_id, done.lease_owner) == ("succeeded", runner.id, None)
    # Another finish (a new key) is still refused: the lease is over.
    with server.client(token) as direct:
        again = direct.post(
            f"/api/v1/jobs/{job.id}/finish", json={"runner_id": runner.id, "status": "failed"}
        )
    assert again.status_code == 409 and "does not hold the lease" in again.json()["detail"]
    assert admin.get(f"/api/v1/jobs/{job.id}").json()["status"] == "succeeded"


def test_a_finish_retried_after_another_runner_took_the_job_is_a_lease_error(
    server: LiveServer, proxy: FaultProxy, admin: httpx.Client, unique_name: str
) -> None:
    """Runner 1 reports a retryable failure; the job is re-queued and runner 2 takes it
    before runner 1's retry (the answer was lost) arrives. The retry is told it lost the
    lease (409: what the agent expects), not refused as a reused key (422)."""
    label = f"pool-{unique_name}"
    token = server.make_token("runner")
    first = JobsClient(ApiClient(proxy.url, token, retry_for=30))
    second = JobsClient(ApiClient(server.url, token))
    one = first.register_runner(name=f"{unique_name}-1", labels=[label], gpus=1)
    two = second.register_runner(name=f"{unique_name}-2", labels=[label], gpus=1)
    body = {"kind": "train", "spec_text": JOB_SPEC_TEXT, "labels": [label], "max_attempts": 3}
    queued = admin.post("/api/v1/jobs", json=body).json()
    job = first.claim(runner_id=one.id, labels=[label], gpus=1, lease_seconds=60, wait=0)
    assert job is not None and job.id == queued["id"]
    taken: list[int] = []

    def second_runner_claims() -> None:
        claimed = second.claim(runner_id=two.id, labels=[label], gpus=1, lease_seconds=60, wait=0)
        taken.append(claimed.id if claimed is not None else 0)

    lost = proxy.fail("POST", rf"/api/v1/jobs/{job.id}/finish", after=second_runner_claims)
    with pytest.raises(LeaseError, match=f"leased to runner {two.id}"):
        first.finish(job_id=job.id, runner_id=one.id, status="failed", retryable=True)
    assert lost.hits == 1 and taken == [job.id]
    now = admin.get(f"/api/v1/jobs/{job.id}").json()
    assert (now["status"], now["lease_owner"], now["attempts"]) == ("running", two.id, 2)


def test_a_key_reused_for_another_request_is_refused(
    server: LiveServer, admin: httpx.Client, unique_name: str
) -> None:
    experiment = admin.post("/api/v1/experiments", json={"name": unique_name}).json()
    body = {"name": "a", "experiment_id": experiment["id"], "spec_text": "x", "spec_hash": "a" * 64}
    headers = {"Idempotency-Key": f"key-{unique_name}"}
    first = admin.post("/api/v1/runs", json=body, headers=headers)
    retry = admin.post("/api/v1/runs", json=body, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.json()["id"] == first.json()["id"]
    other = admin.post("/api/v1/runs", json=body | {"name": "b"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["detail"].startswith(f"Idempotency-Key 'key-{unique_name}' was already")
    assert "name" in other.json()["detail"]
    runs = admin.get("/api/v1/runs", params={"experiment": unique_name}).json()
    assert runs["count"] == 1
    bad = admin.post("/api/v1/runs", json=body, headers={"Idempotency-Key": "no spaces"})
    assert bad.status_code == 422
