"""The agent's lease thread and its reports while the service fails, against a real server.

A real `evalctl serve` behind the loopback fault proxy (`tests.faultproxy`); the agent's
own `Lease` and `_finish` run in this process (no training: the job is only held). Log
shipping that keeps failing must neither starve the heartbeat (another runner would take
the job) nor lose lines (they are sent again, under the same batch key, once the service
answers); a finish the service refuses or never answers must not kill the runner.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.agent import Agent, AgentConfig
from runners.lease import Lease, LogShipper
from service.jobs_client import JobsClient
from service.models import JobCreate, JobPublic
from service.remote import ApiClient
from tests.faultproxy import FaultProxy, fault_proxy
from tests.helpers import LiveServer, start_server
from tests.runners.test_agent import wait_for

#: Only held here, never run: its files are not checked when it is queued.
SPEC_TEXT = "name: job\nbase_model: ./model\ndata: {train: train.jsonl, format: vertex}\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    running = start_server(tmp_path_factory.mktemp("lease-server"))
    yield running
    running.stop()


@pytest.fixture
def proxy(server: LiveServer) -> Iterator[FaultProxy]:
    with fault_proxy(server.url) as running:
        yield running


def held_job(
    server: LiveServer, proxy: FaultProxy, name: str, *, lease: float, retry_for: float = 30
) -> tuple[Agent, JobPublic]:
    """Register an agent (talking through the proxy) and let it claim a fresh job."""
    label = f"pool-{name}"
    config = AgentConfig(name=name, labels=[label], lease_seconds=lease, work_dir=Path("unused"))
    agent = Agent(config, url=proxy.url, token=server.make_token("runner"), retry_for=retry_for)
    agent.runner_id = agent.jobs.register_runner(name=name, labels=[label], gpus=0).id
    admin = JobsClient(ApiClient(server.url, server.admin_token))
    queued = admin.enqueue(
        job_in=JobCreate(kind="train", spec_text=SPEC_TEXT, labels=[label], gpus=0)
    )
    job = agent.jobs.claim(
        runner_id=agent.runner_id, labels=[label], gpus=0, lease_seconds=lease, wait=0
    )
    assert job is not None and job.id == queued.id
    return agent, job


def test_failing_log_shipping_keeps_the_lease_and_every_line(
    server: LiveServer, proxy: FaultProxy, unique_name: str
) -> None:
    agent, job = held_job(server, proxy, unique_name, lease=6)
    logs = rf"/api/v1/jobs/{job.id}/logs"
    beats = rf"/api/v1/jobs/{job.id}/heartbeat"
    # The first batch reaches the service, which stores it, but its answer is lost; then
    # the service is away for log batches (a gateway answers 503) for longer than a lease.
    proxy.fail("POST", logs, answer=503)
    away = proxy.fail("POST", logs, times=10**6, answer=503, forward=False)
    shipper = LogShipper()
    with Lease(agent, job, shipper):
        shipper.add("line 1\nline 2")
        wait_for("a failed batch", lambda: away.hits >= 1, timeout=30)
        shipper.add("line 3")
        # Heartbeats keep going while batches fail: 4 of them span more than the 6 s lease.
        before = proxy.count("POST", beats)
        wait_for("heartbeats", lambda: proxy.count("POST", beats) >= before + 4, timeout=40)
        other = JobsClient(ApiClient(server.url, server.make_token("runner")))
        rival = other.register_runner(name=f"{unique_name}-b", labels=job.labels, gpus=0)
        # Its claim re-queues expired leases first: this one is alive, so it gets nothing.
        assert other.claim(runner_id=rival.id, labels=job.labels, gpus=0,
                           lease_seconds=6, wait=0) is None  # fmt: skip
        away.stop()
        shipper.add("line 4")
    admin = JobsClient(ApiClient(server.url, server.admin_token))
    held = admin.get(job_id=job.id)
    assert (held.status, held.lease_owner, held.attempts) == ("running", agent.runner_id, 1)
    # Every line once: the stored first batch was sent again under its key (not twice).
    assert [line.line for line in admin.logs(job_id=job.id)] == [
        "line 1",
        "line 2",
        "line 3",
        "line 4",
    ]


def test_a_finish_the_service_did_not_answer_is_sent_again_under_its_key(
    server: LiveServer, proxy: FaultProxy, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    agent, job = held_job(server, proxy, unique_name, lease=60, retry_for=1)
    finish = rf"/api/v1/jobs/{job.id}/finish"
    # The service commits the finish, then its answers are lost for the whole retry budget.
    proxy.fail("POST", finish, answer=503)
    away = proxy.fail("POST", finish, times=10**6, answer=503, forward=False)
    with caplog.at_level(logging.INFO, logger="evalctl.runner"):
        agent._finish(Lease(agent, job, LogShipper()), "succeeded", None, retryable=False)
        assert agent.unreported is not None and away.hits >= 1
        away.stop()
        agent.report_unreported()  # what the agent does before its next claim
    assert agent.unreported is None
    admin = JobsClient(ApiClient(server.url, server.admin_token))
    done = admin.get(job_id=job.id)
    assert (done.status, done.runner_id) == ("succeeded", agent.runner_id)
    # The same key: the service answered the stored finish (a new key: 409, lease over).
    assert not [r for r in caplog.records if "could not report" in r.getMessage()]


@pytest.mark.parametrize("answer", [422, 409, 404])
def test_a_refused_finish_is_logged_and_the_runner_keeps_going(
    server: LiveServer, proxy: FaultProxy, unique_name: str, answer: int,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    agent, job = held_job(server, proxy, f"{unique_name}-{answer}", lease=60)
    proxy.fail("POST", rf"/api/v1/jobs/{job.id}/finish", answer=answer, forward=False)
    with caplog.at_level(logging.WARNING, logger="evalctl.runner"):
        agent._finish(Lease(agent, job, LogShipper()), "failed", "boom", retryable=True)
    assert agent.unreported is None  # refused, not unanswered: not sent again
    assert any("could not report failed" in r.getMessage() for r in caplog.records)
