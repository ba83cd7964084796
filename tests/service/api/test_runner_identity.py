"""Runners are bound to the token that registered them, and leases are capped.

Two runner tokens on one real server: the second tries to act as the first token's runner
on every route of the runner protocol (heartbeats, logs, run link, finish, claim), to
claim as a runner that does not exist, and to take over the first runner's name and
labels. Each is refused; the first runner's job and labels are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from tests.helpers import LiveServer
from tests.service.api.conftest import JOB_SPEC_TEXT


def register(client: httpx.Client, name: str, labels: list[str]) -> httpx.Response:
    return client.post("/api/v1/runners", json={"name": name, "labels": labels, "gpus": 1})


def enqueue(admin: httpx.Client, label: str) -> int:
    body = {"kind": "train", "spec_text": JOB_SPEC_TEXT, "labels": [label], "gpus": 1}
    response = admin.post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def claim(client: httpx.Client, runner_id: int, label: str, **extra: object) -> httpx.Response:
    body = {"runner_id": runner_id, "labels": [label], "gpus": 1, **extra}
    return client.post("/api/v1/jobs/claim", json=body)


@pytest.fixture
def two_runners(server: LiveServer) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    first = server.client(server.make_token("runner", name="runner-a"))
    second = server.client(server.make_token("runner", name="runner-b"))
    yield first, second
    first.close()
    second.close()


def test_another_token_cannot_act_as_a_runner(
    admin: httpx.Client, two_runners: tuple[httpx.Client, httpx.Client], unique_name: str
) -> None:
    mine, theirs = two_runners
    label = f"pool-{unique_name}"
    runner = register(mine, unique_name, [label, "h100"]).json()
    job_id = enqueue(admin, label)
    claimed = claim(mine, runner["id"], label, lease_seconds=60)
    assert claimed.status_code == 200 and claimed.json()["id"] == job_id

    as_runner = {"runner_id": runner["id"]}
    attempts = {
        "job heartbeat": ("/api/v1/jobs/{job}/heartbeat", as_runner),
        "logs": ("/api/v1/jobs/{job}/logs", as_runner | {"lines": ["forged"]}),
        "run link": ("/api/v1/jobs/{job}/run", as_runner | {"run_id": 1}),
        "finish": ("/api/v1/jobs/{job}/finish", as_runner | {"status": "succeeded"}),
        "runner heartbeat": ("/api/v1/runners/{runner}/heartbeat", {"current_job_id": None}),
        "claim": ("/api/v1/jobs/claim", as_runner | {"labels": [label], "gpus": 1}),
    }
    for what, (path, body) in attempts.items():
        url = path.format(job=job_id, runner=runner["id"])
        response = theirs.post(url, json=body)
        assert response.status_code == 403, (what, response.text)
        assert response.json()["detail"] == f"runner {runner['id']} belongs to another token"

    job = admin.get(f"/api/v1/jobs/{job_id}").json()
    assert (job["status"], job["lease_owner"]) == ("running", runner["id"])
    assert admin.get(f"/api/v1/jobs/{job_id}/logs").json()["count"] == 0
    # The owner still holds its job.
    beat = mine.post(f"/api/v1/jobs/{job_id}/heartbeat", json=as_runner | {"lease_seconds": 60})
    assert beat.status_code == 200


def test_claims_for_a_runner_that_does_not_exist_are_refused(
    admin: httpx.Client, two_runners: tuple[httpx.Client, httpx.Client], unique_name: str
) -> None:
    _, theirs = two_runners
    label = f"pool-{unique_name}"
    job_id = enqueue(admin, label)
    ghost = 2**31 - 1
    response = claim(theirs, ghost, label, lease_seconds=86_400)
    assert response.status_code == 404
    assert response.json()["detail"].startswith(f"runner {ghost} not found; register it")
    assert admin.get(f"/api/v1/jobs/{job_id}").json()["status"] == "queued"
    cancelled = admin.post(f"/api/v1/jobs/{job_id}/cancel")
    assert cancelled.json()["status"] == "cancelled"


def test_a_runner_name_cannot_be_taken_by_another_token(
    server: LiveServer,
    admin: httpx.Client,
    two_runners: tuple[httpx.Client, httpx.Client],
    unique_name: str,
) -> None:
    mine, theirs = two_runners
    runner = register(mine, unique_name, ["h100"]).json()
    taken = register(theirs, unique_name, ["h100", "stolen"])
    assert taken.status_code == 409
    assert taken.json()["detail"].startswith(
        f"runner name '{unique_name}' is registered by another token"
    )
    listed = {r["name"]: r for r in admin.get("/api/v1/runners").json()["data"]}
    assert listed[unique_name]["labels"] == ["h100"]
    assert listed[unique_name]["token_id"] == runner["token_id"]
    # The same token registering again updates its runner (an agent restarting).
    again = register(mine, unique_name, ["h100", "a100"])
    assert again.status_code == 200 and again.json()["id"] == runner["id"]

    # Once the binding token is revoked, a new token may take the name over.
    assert admin.delete(f"/api/v1/tokens/{runner['token_id']}").status_code == 200
    moved = register(theirs, unique_name, ["h100"])
    assert moved.status_code == 200, moved.text
    assert moved.json()["id"] == runner["id"] and moved.json()["token_id"] != runner["token_id"]


def test_a_lease_longer_than_the_servers_cap_is_shortened(
    admin: httpx.Client, two_runners: tuple[httpx.Client, httpx.Client], unique_name: str
) -> None:
    mine, _ = two_runners
    label = f"pool-{unique_name}"
    runner_id = register(mine, unique_name, [label]).json()["id"]
    job_id = enqueue(admin, label)
    job = claim(mine, runner_id, label, lease_seconds=86_400).json()
    assert job["id"] == job_id

    def lease(job: dict) -> float:
        expires = datetime.fromisoformat(job["lease_expires_at"])
        return (expires - datetime.fromisoformat(job["started_at"])).total_seconds()

    assert lease(job) == 600  # EVALCTL_SERVER__MAX_LEASE_SECONDS' default
    beat = mine.post(
        f"/api/v1/jobs/{job_id}/heartbeat", json={"runner_id": runner_id, "lease_seconds": 86_400}
    )
    assert beat.status_code == 200
    # Renewed from now for at most the cap (not a day): well under an hour past the claim.
    assert 600 <= lease(job | {"lease_expires_at": beat.json()["lease_expires_at"]}) < 3600
