"""The job queue over HTTP: enqueue, long-poll claim, leases, logs, finish, cancel."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.helpers import LiveServer
from tests.service.api.conftest import JOB_SPEC_TEXT


@pytest.fixture
def runner_client(server: LiveServer) -> httpx.Client:
    with server.client(server.make_token("runner", name="runner")) as client:
        yield client


def register(client: httpx.Client, name: str, labels: list[str], gpus: int = 1) -> int:
    response = client.post("/api/v1/runners", json={"name": name, "labels": labels, "gpus": gpus})
    assert response.status_code == 200, response.text
    return int(response.json()["id"])


def enqueue(admin: httpx.Client, label: str, **extra) -> dict:
    body = {"kind": "train", "spec_text": JOB_SPEC_TEXT, "labels": [label], "gpus": 1, **extra}
    response = admin.post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_job_lifecycle(admin: httpx.Client, runner_client: httpx.Client, unique_name: str) -> None:
    label = f"pool-{unique_name}"
    job = enqueue(admin, label)
    assert job["status"] == "queued"
    assert job["created_by_token_id"] is not None
    wrong = register(runner_client, f"{unique_name}-cpu", ["other-label"])
    right = register(runner_client, f"{unique_name}-gpu", [label, "extra"])

    nothing = runner_client.post(
        "/api/v1/jobs/claim", json={"runner_id": wrong, "labels": ["other-label"], "gpus": 8}
    )
    assert nothing.status_code == 204
    assert admin.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "queued"

    claim = {"runner_id": right, "labels": [label, "extra"], "gpus": 1, "lease_seconds": 30}
    claimed = runner_client.post("/api/v1/jobs/claim", json=claim)
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["id"] == job["id"]
    assert claimed.json()["lease_owner"] == right

    stolen = runner_client.post(
        f"/api/v1/jobs/{job['id']}/heartbeat", json={"runner_id": wrong, "lease_seconds": 30}
    )
    assert stolen.status_code == 409
    assert "does not hold the lease" in stolen.json()["detail"]
    beat = runner_client.post(
        f"/api/v1/jobs/{job['id']}/heartbeat", json={"runner_id": right, "lease_seconds": 60}
    )
    assert beat.status_code == 200
    assert beat.json()["lease_expires_at"] > claimed.json()["lease_expires_at"]

    lines = {"runner_id": right, "lines": ["step 1 loss 2.0", "step 2 loss 1.5"]}
    assert runner_client.post(f"/api/v1/jobs/{job['id']}/logs", json=lines).status_code == 204
    foreign = {"runner_id": wrong, "lines": ["nope"]}
    assert runner_client.post(f"/api/v1/jobs/{job['id']}/logs", json=foreign).status_code == 409
    logs = admin.get(f"/api/v1/jobs/{job['id']}/logs").json()
    assert [entry["line"] for entry in logs["data"]] == lines["lines"]
    after = admin.get(
        f"/api/v1/jobs/{job['id']}/logs", params={"after_id": logs["data"][0]["id"]}
    ).json()
    assert [entry["line"] for entry in after["data"]] == ["step 2 loss 1.5"]

    runner = runner_client.post(
        f"/api/v1/runners/{right}/heartbeat", json={"current_job_id": job["id"]}
    )
    assert runner.json()["status"] == "busy"
    listed = {r["name"]: r for r in admin.get("/api/v1/runners").json()["data"]}
    assert listed[f"{unique_name}-gpu"]["current_job_id"] == job["id"]

    done = runner_client.post(
        f"/api/v1/jobs/{job['id']}/finish", json={"runner_id": right, "status": "succeeded"}
    )
    assert done.status_code == 200
    assert done.json()["status"] == "succeeded"
    assert done.json()["lease_owner"] is None
    again = runner_client.post(
        f"/api/v1/jobs/{job['id']}/finish", json={"runner_id": right, "status": "failed"}
    )
    assert again.status_code == 409
    succeeded = admin.get("/api/v1/jobs", params={"status": "succeeded", "limit": 1000}).json()
    assert job["id"] in [j["id"] for j in succeeded["data"]]


def test_claim_long_polls_until_a_job_arrives(
    admin: httpx.Client, runner_client: httpx.Client, unique_name: str
) -> None:
    label = f"late-{unique_name}"
    runner_id = register(runner_client, unique_name, [label])
    timer = threading.Timer(1.0, enqueue, args=(admin, label))
    started = time.monotonic()
    timer.start()
    try:
        claimed = runner_client.post(
            "/api/v1/jobs/claim",
            json={"runner_id": runner_id, "labels": [label], "gpus": 1, "wait": 10},
        )
    finally:
        timer.join()
    elapsed = time.monotonic() - started
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["labels"] == [label]
    assert 0.9 <= elapsed < 5, elapsed


def test_claim_with_nothing_to_do_waits_then_204(
    runner_client: httpx.Client, unique_name: str
) -> None:
    runner_id = register(runner_client, unique_name, [f"never-{unique_name}"])
    started = time.monotonic()
    response = runner_client.post(
        "/api/v1/jobs/claim",
        json={"runner_id": runner_id, "labels": [f"never-{unique_name}"], "gpus": 0, "wait": 1.2},
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 204
    assert 1.1 <= elapsed < 4, elapsed


def test_cancel_a_queued_job(admin: httpx.Client, unique_name: str) -> None:
    job = enqueue(admin, f"cancel-{unique_name}")
    cancelled = admin.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert admin.post("/api/v1/jobs/999999/cancel").status_code == 404


def test_enqueue_rejects_unknown_kind_and_run(admin: httpx.Client) -> None:
    bad_kind = admin.post("/api/v1/jobs", json={"kind": "dance", "spec_text": JOB_SPEC_TEXT})
    assert bad_kind.status_code == 422
    no_run = admin.post(
        "/api/v1/jobs", json={"kind": "eval", "spec_text": JOB_SPEC_TEXT, "run_id": 999999}
    )
    assert no_run.status_code == 404
