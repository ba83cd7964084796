"""Runs, checkpoints and evaluations over HTTP: the `Registry` routes and their errors."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.helpers import LiveServer

SPEC = {"spec_text": "name: x\n", "spec_hash": "a" * 64}


@pytest.fixture
def experiment(admin: httpx.Client, unique_name: str) -> dict:
    response = admin.post("/api/v1/experiments", json={"name": unique_name})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def run(admin: httpx.Client, experiment: dict) -> dict:
    body = {"name": "r", "experiment_id": experiment["id"], **SPEC}
    response = admin.post("/api/v1/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def checkpoint(server: LiveServer, admin: httpx.Client, run: dict) -> dict:
    path = str(server.home / "runs" / str(run["id"]) / "ckpt-10")  # inside the storage roots
    body = {"run_id": run["id"], "step": 10, "path": path, "sha256": "c" * 64}
    response = admin.post("/api/v1/checkpoints", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_experiments_get_or_create_and_get_by_name(admin: httpx.Client, experiment: dict) -> None:
    again = admin.post("/api/v1/experiments", json={"name": experiment["name"]}).json()
    assert again["id"] == experiment["id"]
    assert admin.get(f"/api/v1/experiments/{experiment['name']}").json() == experiment
    names = [e["name"] for e in admin.get("/api/v1/experiments").json()["data"]]
    assert experiment["name"] in names
    missing = admin.get(f"/api/v1/experiments/{experiment['name']}x")
    assert missing.status_code == 404
    assert "Did you mean" in missing.json()["detail"]


def test_runs_create_get_update_and_list_with_filters_and_paging(
    admin: httpx.Client, experiment: dict
) -> None:
    ids = []
    for i in range(3):
        body = {"name": f"r{i}", "experiment_id": experiment["id"], "tags": {"i": str(i)}, **SPEC}
        ids.append(admin.post("/api/v1/runs", json=body).json()["id"])
    assert admin.get(f"/api/v1/runs/{ids[0]}").json()["tags"] == {"i": "0"}
    assert admin.get("/api/v1/runs/r1").json()["id"] == ids[1]  # by name
    updated = admin.patch(f"/api/v1/runs/{ids[2]}", json={"status": "running"}).json()
    assert updated["status"] == "running"
    assert updated["tags"] == {"i": "2"}  # untouched fields stay
    page = admin.get(
        "/api/v1/runs", params={"experiment": experiment["name"], "limit": 2, "offset": 0}
    ).json()
    assert page["count"] == 3
    assert [r["id"] for r in page["data"]] == [ids[2], ids[1]]  # newest first
    rest = admin.get(
        "/api/v1/runs", params={"experiment": experiment["name"], "limit": 2, "offset": 2}
    ).json()
    assert [r["id"] for r in rest["data"]] == [ids[0]]
    running = admin.get(
        "/api/v1/runs", params={"experiment": experiment["name"], "status": "running"}
    ).json()
    assert [r["id"] for r in running["data"]] == [ids[2]]


def test_checkpoint_record_is_idempotent(
    server: LiveServer, admin: httpx.Client, run: dict, checkpoint: dict
) -> None:
    elsewhere = str(server.home / "runs" / "elsewhere")
    body = {"run_id": run["id"], "step": 10, "path": elsewhere, "sha256": "c" * 64}
    again = admin.post("/api/v1/checkpoints", json=body).json()
    assert again["id"] == checkpoint["id"]
    listing = admin.get(f"/api/v1/runs/{run['id']}/checkpoints").json()
    assert [c["id"] for c in listing["data"]] == [checkpoint["id"]]
    assert admin.get(f"/api/v1/checkpoints/{checkpoint['id']}").json() == checkpoint


def test_evaluation_with_10000_examples_in_one_request(
    admin: httpx.Client, run: dict, checkpoint: dict
) -> None:
    examples = [
        {
            "position": i,
            "example_id": f"ex-{i}",
            "scores": {"exact_match": float(i % 2)},
            "details": {"cluster": f"doc-{i % 7}"},
        }
        for i in range(10_000)
    ]
    evaluation = {
        "checkpoint_id": checkpoint["id"],
        "evaluator": "json_schema",
        "config_hash": "f" * 64,
        "metrics": {"exact_match": 0.5},
    }
    started = time.monotonic()
    response = admin.post(
        "/api/v1/evaluations", json={"evaluation": evaluation, "examples": examples}
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 201, response.text
    recorded = response.json()
    assert recorded["n_examples"] == 10_000
    assert elapsed < 30, elapsed
    page = admin.get(
        f"/api/v1/evaluations/{recorded['id']}/examples", params={"limit": 100, "offset": 9_950}
    ).json()
    assert page["count"] == 10_000
    assert [e["example_id"] for e in page["data"]] == [f"ex-{i}" for i in range(9_950, 10_000)]
    scores = admin.get(f"/api/v1/evaluations/{recorded['id']}/scores").json()
    assert scores["count"] == 10_000
    assert scores["data"][3] == {
        "example_id": "ex-3",
        "scores": {"exact_match": 1.0},
        "cluster": "doc-3",
    }
    by_run = admin.get("/api/v1/evaluations", params={"run_id": run["id"]}).json()
    by_checkpoint = admin.get(
        "/api/v1/evaluations", params={"checkpoint_id": checkpoint["id"]}
    ).json()
    assert [e["id"] for e in by_run["data"]] == [recorded["id"]]
    assert by_checkpoint["data"] == by_run["data"]
    assert admin.get(f"/api/v1/evaluations/{recorded['id']}").json() == recorded


def test_aliases_move_and_keep_history_with_the_token(
    admin: httpx.Client, experiment: dict, checkpoint: dict
) -> None:
    path = f"/api/v1/aliases/{experiment['id']}/production"
    moved = admin.put(path, json={"checkpoint_id": checkpoint["id"], "actor": "ci"})
    assert moved.status_code == 200, moved.text
    assert admin.get(path).json()["checkpoint_id"] == checkpoint["id"]
    history = admin.get(f"{path}/history").json()["data"]
    assert history[0]["actor"] == "ci"
    assert history[0]["token_id"] is not None
    listed = admin.get("/api/v1/aliases", params={"experiment_id": experiment["id"]}).json()
    assert [a["name"] for a in listed["data"]] == ["production"]


def test_an_alias_move_is_mirrored_in_the_services_own_mlflow_registry(
    server: LiveServer, admin: httpx.Client, experiment: dict, run: dict, checkpoint: dict
) -> None:
    from mlflow.tracking import MlflowClient

    path = f"/api/v1/aliases/{experiment['id']}/production"
    # The client's `version` is ignored: the service registers the version itself.
    body = {"checkpoint_id": checkpoint["id"], "actor": "ci", "version": 999}
    key = {"Idempotency-Key": f"mirror-{checkpoint['id']}"}
    moved = admin.put(path, json=body, headers=key)
    assert moved.status_code == 200, moved.text
    mlflow = MlflowClient(tracking_uri=f"sqlite:///{server.home / 'mlflow.db'}")
    version = mlflow.get_model_version_by_alias(experiment["name"], "production")
    assert version.tags["evalctl.checkpoint_id"] == str(checkpoint["id"])
    assert moved.json()["version"] == int(version.version) != 999

    # Move on to another checkpoint; a late replay of the first move moves neither registry.
    other = {"run_id": run["id"], "step": 20, "path": checkpoint["path"] + "-20"}
    second = admin.post("/api/v1/checkpoints", json={**other, "sha256": "e" * 64}).json()
    assert admin.put(path, json={"checkpoint_id": second["id"], "actor": "ci"}).status_code == 200
    assert admin.put(path, json=body, headers=key).status_code == 200
    assert admin.get(path).json()["checkpoint_id"] == second["id"]
    now = mlflow.get_model_version_by_alias(experiment["name"], "production")
    assert now.tags["evalctl.checkpoint_id"] == str(second["id"])


def test_concurrent_alias_moves_leave_both_registries_on_one_checkpoint(
    server: LiveServer, admin: httpx.Client, experiment: dict, run: dict, checkpoint: dict
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.tracking import MlflowClient

    other = {"run_id": run["id"], "step": 40, "path": checkpoint["path"] + "-40"}
    second = admin.post("/api/v1/checkpoints", json={**other, "sha256": "a" * 64}).json()
    path = f"/api/v1/aliases/{experiment['id']}/production"
    targets = [checkpoint["id"], second["id"]] * 3

    def move(checkpoint_id: int) -> int:
        with server.client(server.admin_token) as client:
            return client.put(
                path, json={"checkpoint_id": checkpoint_id, "actor": "ci"}
            ).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(move, targets)) == {200}
    ours = admin.get(path).json()["checkpoint_id"]
    mlflow = MlflowClient(tracking_uri=f"sqlite:///{server.home / 'mlflow.db'}")
    theirs = mlflow.get_model_version_by_alias(experiment["name"], "production")
    assert theirs.tags["evalctl.checkpoint_id"] == str(ours)


def test_an_alias_cannot_point_at_a_checkpoint_outside_the_storage_roots(
    server: LiveServer, admin: httpx.Client, experiment: dict, run: dict
) -> None:
    from sqlmodel import Session, create_engine

    from service.models import Checkpoint

    # A row from before paths were checked: forced in below the API.
    engine = create_engine(server.db_url)
    with Session(engine) as session:
        row = Checkpoint(run_id=run["id"], step=30, path=str(server.home), sha256="f" * 64)
        session.add(row)
        session.commit()
        checkpoint_id = row.id
    engine.dispose()
    path = f"/api/v1/aliases/{experiment['id']}/production"
    refused = admin.put(path, json={"checkpoint_id": checkpoint_id, "actor": "ci"})
    assert refused.status_code == 409
    assert "server's own files" in refused.json()["detail"]
    assert admin.get(path).status_code == 404  # nothing moved


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/runs/999999",
        "/api/v1/runs/no-such-run-name",
        "/api/v1/checkpoints/999999",
        "/api/v1/evaluations/999999",
        "/api/v1/evaluations/999999/examples",
        "/api/v1/evaluations/999999/scores",
        "/api/v1/runs/999999/checkpoints",
        "/api/v1/jobs/999999",
        "/api/v1/jobs/999999/logs",
        "/api/v1/experiments/no-such-experiment",
    ],
)
def test_unknown_ids_are_404_json(admin: httpx.Client, path: str) -> None:
    response = admin.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "not found" in response.json()["detail"]


def test_patch_of_unknown_run_is_404(admin: httpx.Client) -> None:
    response = admin.patch("/api/v1/runs/999999", json={"status": "failed"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/runs", {"name": "missing fields"}),
        ("GET", "/api/v1/runs?limit=0", None),
        ("GET", "/api/v1/runs?status=sleeping", None),
        ("GET", "/api/v1/checkpoints/not-a-number", None),
        ("GET", "/api/v1/checkpoints/99999999999999999999", None),
        ("POST", "/api/v1/checkpoints", {"run_id": 1, "step": -1, "path": "p", "sha256": "x"}),
        ("POST", "/api/v1/tokens", {"name": "n", "scopes": ["root"]}),
        ("POST", "/api/v1/tokens", {"name": "n", "scopes": []}),
        (
            "POST",
            "/api/v1/tokens",
            {"name": "n", "scopes": ["read"], "expires_at": "2030-01-01T00:00:00"},
        ),
    ],
)
def test_invalid_input_is_422_json(admin: httpx.Client, method: str, path: str, body) -> None:
    response = admin.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_non_finite_metrics_are_422(admin: httpx.Client, checkpoint: dict) -> None:
    # Python's JSON parser accepts NaN; the registry must refuse it, not crash.
    evaluation = (
        f'{{"evaluation": {{"checkpoint_id": {checkpoint["id"]}, "evaluator": "e", '
        '"config_hash": "h", "metrics": {"acc": NaN}}}'
    )
    response = admin.post(
        "/api/v1/evaluations", content=evaluation, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "not finite" in response.json()["detail"]


def test_malformed_json_is_422(admin: httpx.Client) -> None:
    response = admin.post(
        "/api/v1/runs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_body_over_the_limit_is_413(server: LiveServer) -> None:
    big = b"x" * (32 * 1024 * 1024 + 1)
    with server.client(server.admin_token) as client:
        response = client.post(
            "/api/v1/runs", content=big, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


def test_chunked_body_over_the_limit_is_413(server: LiveServer) -> None:
    def chunks():
        block = b"x" * (1024 * 1024)
        for _ in range(40):
            yield block

    with server.client(server.admin_token) as client:
        response = client.post(
            "/api/v1/runs", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


def test_chunked_body_under_the_limit_is_accepted(admin: httpx.Client, experiment: dict) -> None:
    import json

    payload = json.dumps({"name": "chunked", "experiment_id": experiment["id"], **SPEC}).encode()
    response = admin.post(
        "/api/v1/runs",
        content=iter([payload[:10], payload[10:]]),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 201, response.text
