"""The /mlflow mount by route: each scope's reach, and storage roots on MLflow's side.

Attacks from the security probe, through a real `evalctl serve` and real tokens: a runner
token taking over the MLflow Model Registry (defect 2), a read token reading server files
through a promoted checkpoint (defect 1), a runner token pointing an experiment's artifact
location at any folder (defect 6); and read tokens using MLflow's read-only POSTs (7).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest

from service.errors import EvalctlError
from service.local import LocalRegistry
from service.models import CheckpointCreate, RunCreate
from service.remote import RemoteRegistry
from tests.helpers import evalctl
from tests.service.api.conftest import Server

M = "/mlflow/api/2.0/mlflow"


def _mlflow(server: Server, token: str, monkeypatch: pytest.MonkeyPatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    return MlflowClient(tracking_uri=f"{server.base}/mlflow")


def _store(server: Server):
    """Return an MLflow client on the server's own store (what an older server wrote)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{server.home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_runner_token_logs_telemetry_but_not_the_model_registry(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlflow.entities import Metric, Param

    token = server.make_token("runner", name="mlflow-runner")
    client = _mlflow(server, token, monkeypatch)
    # What the runner agent logs (runners/tracking.py), with a runner-only token.
    experiment_id = client.create_experiment(_name("runner-telemetry"))
    run = client.create_run(experiment_id, run_name="r", tags={"evalctl.run_id": "1"})
    run_id = run.info.run_id
    client.log_batch(run_id, metrics=[Metric("loss", 0.5, 0, 1)], params=[Param("lr", "0.1")])
    client.set_tag(run_id, "stage", "train")
    note = tmp_path / "note.txt"
    note.write_text("hello")
    client.log_artifact(run_id, str(note))
    client.set_terminated(run_id, status="FINISHED")
    assert client.get_run(run_id).data.metrics == {"loss": 0.5}
    assert [a.path for a in client.list_artifacts(run_id)] == ["note.txt"]

    model = _name("runner-model")
    _store(server).create_registered_model(model)
    source = f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
    refused = [
        ("POST", f"{M}/registered-models/create", {"name": _name("m")}),
        ("POST", f"{M}/model-versions/create", {"name": model, "source": "s3://evil/x"}),
        ("POST", f"{M}/model-versions/create", {"name": model, "source": source}),
        ("POST", f"{M}/registered-models/alias", {"name": model, "alias": "production"}),
        ("DELETE", f"{M}/registered-models/alias", {"name": model, "alias": "production"}),
        ("DELETE", f"{M}/registered-models/delete", {"name": model}),
        ("POST", f"{M}/experiments/delete", {"experiment_id": experiment_id}),
        ("POST", f"{M}/runs/delete", {"run_id": run_id}),
        ("POST", f"{M}/model-versions/transition-stage", {"name": model, "version": "1"}),
        ("POST", f"{M}/webhooks", {"name": "w", "url": "http://127.0.0.1:1/"}),
        ("POST", f"{M}/some-route-mlflow-adds-later", {}),
    ]
    with server.client(token) as runner:
        for method, path, body in refused:
            response = runner.request(method, path, json=body)
            assert response.status_code == 403, (path, response.text)
            assert response.json()["error_code"] == "PERMISSION_DENIED"
    assert _store(server).get_experiment(experiment_id).lifecycle_stage == "active"
    assert _store(server).get_run(run_id).info.lifecycle_stage == "active"
    assert _store(server).get_registered_model(model).name == model
    assert _store(server).search_model_versions(f"name = '{model}'") == []


def test_mlflow_aliases_move_only_through_evalctl(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _name("alias-model")
    _store(server).create_registered_model(model)
    body = {"name": model, "alias": "production", "version": "1"}
    with server.client(server.make_token("write", name="mlflow-writer")) as writer:
        for method in ("POST", "DELETE"):
            moved = writer.request(method, f"{M}/registered-models/alias", json=body)
            assert moved.status_code == 409, moved.text
            assert "evalctl promote" in moved.json()["detail"]
            assert "/api/v1/aliases" in moved.json()["message"]
        # The same token still manages the rest of the Model Registry.
        created = writer.post(f"{M}/registered-models/create", json={"name": _name("m")})
        assert created.status_code == 200, created.text
    with server.client(server.admin_token) as admin:  # admin may repair a drifted mirror
        repaired = admin.post(f"{M}/registered-models/alias", json=body)
        assert repaired.status_code not in (401, 403, 409), repaired.text


def test_read_token_searches_with_mlflows_own_client(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException

    writer = _mlflow(server, server.make_token("write", name="w"), monkeypatch)
    name = _name("searchable")
    experiment_id = writer.create_experiment(name)
    writer.log_metric(writer.create_run(experiment_id).info.run_id, "acc", 0.9)

    reader = _mlflow(server, server.make_token("read", name="r"), monkeypatch)
    assert [e.name for e in reader.search_experiments(filter_string=f"name = '{name}'")] == [name]
    runs = reader.search_runs([experiment_id])  # POST runs/search
    assert [r.data.metrics for r in runs] == [{"acc": 0.9}]
    with pytest.raises(MlflowException, match="write or runner"):
        reader.create_experiment(_name("read-cannot"))
    with server.client(server.make_token("read", name="r2")) as raw:
        query = (
            'mutation { mlflowSearchRuns(input: {experimentIds: ["%s"]}) '
            "{ runs { info { runId } } } }"
        )
        searched = raw.post("/mlflow/graphql", json={"query": query % experiment_id})
        assert searched.status_code == 200, searched.text
        assert len(searched.json()["data"]["mlflowSearchRuns"]["runs"]) == 1
        unknown = raw.post("/mlflow/graphql", json={"query": "mutation { deleteEverything }"})
        assert unknown.status_code == 403
        deleted = raw.post(f"{M}/runs/delete", json={"run_id": runs[0].info.run_id})
        assert deleted.status_code == 403


def test_checkpoint_paths_outside_the_storage_roots_are_refused(server: Server) -> None:
    token = server.make_token("runner", name="ckpt-runner")
    remote = RemoteRegistry(server.base, token, retry_for=5)
    experiment = remote.get_or_create_experiment(name=_name("roots"))
    run = remote.create_run(
        run_in=RunCreate(name="r", experiment_id=experiment.id, spec_text="", spec_hash="0" * 64)
    )
    escape = server.home / "runs" / f"escape-{run.id}"
    escape.parent.mkdir(parents=True, exist_ok=True)
    escape.symlink_to("/etc")
    for step, path in enumerate(
        [server.home, server.home / "runs" / ".." / "..", escape, Path("/etc"), "ckpt"], start=1
    ):
        checkpoint_in = CheckpointCreate(run_id=run.id, step=step, path=str(path), sha256="a" * 64)
        with pytest.raises(EvalctlError) as refused:
            remote.record_checkpoint(checkpoint_in=checkpoint_in)
        assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    inside = server.home / "runs" / str(run.id) / "checkpoints" / "checkpoint-5"
    ok = remote.record_checkpoint(
        checkpoint_in=CheckpointCreate(run_id=run.id, step=5, path=str(inside), sha256="b" * 64)
    )
    assert ok.path == str(inside)
    assert [c.step for c in remote.list_checkpoints(run_id=run.id)] == [5]


def test_an_old_out_of_root_checkpoint_cannot_be_promoted_or_served(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A row recorded before paths were checked: the server's whole state folder.
    local = LocalRegistry(server.db_url, migrate=False)
    experiment = local.get_or_create_experiment(name=_name("old-row"))
    run = local.create_run(
        run_in=RunCreate(name="r", experiment_id=experiment.id, spec_text="", spec_hash="0" * 64)
    )
    row = local.record_checkpoint(
        checkpoint_in=CheckpointCreate(
            run_id=run.id, step=1, path=str(server.home), sha256="c" * 64
        )
    )
    env = {"EVALCTL_DATABASE_URL": server.db_url}
    args = ("promote", f"ckpt:{row.id}", "--alias", "production", "--experiment", experiment.name)
    promoted = evalctl(*args, home=server.home, **env)
    assert promoted.returncode == 2, promoted.stdout + promoted.stderr
    assert f"checkpoint {row.id} path" in promoted.stderr
    assert "contains the server's own files" in promoted.stderr
    assert "Traceback" not in promoted.stderr
    assert _store(server).search_model_versions(f"name = '{experiment.name}'") == []

    # A model version an older server created for it: get-artifact is refused.
    store = _store(server)
    model = _name("old-version")
    store.create_registered_model(model)
    store.create_model_version(model, server.home.as_uri())
    reader = server.client(server.make_token("read", name="thief"))
    secret = server.admin_token
    for path in ("admin-token", "session-secret", "evalctl.db"):
        params = {"name": model, "version": "1", "path": path}
        stolen = reader.get("/mlflow/model-versions/get-artifact", params=params)
        assert stolen.status_code == 403, stolen.text[:200]
        assert secret not in stolen.text
    reader.close()


def test_promoted_checkpoint_files_are_served_but_not_a_symlink_out(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = server.home / "runs" / _name("served") / "checkpoint-3"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"ok": true}')
    (folder / "leak").symlink_to(server.home / "admin-token")
    store = _store(server)
    model = _name("served-model")
    store.create_registered_model(model)
    store.create_model_version(model, folder.as_uri())
    with server.client(server.make_token("read", name="served-reader")) as reader:
        got = reader.get(
            "/mlflow/model-versions/get-artifact",
            params={"name": model, "version": "1", "path": "config.json"},
        )
        assert got.status_code == 200 and got.json() == {"ok": True}
        leak = reader.get(
            "/mlflow/model-versions/get-artifact",
            params={"name": model, "version": "1", "path": "leak"},
        )
        assert leak.status_code == 403 and server.admin_token not in leak.text


def test_experiment_artifact_location_stays_in_the_artifact_root(
    server: Server, tmp_path: Path
) -> None:
    create = f"{M}/experiments/create"
    with server.client(server.make_token("runner", name="loc-runner")) as runner:
        for location in (
            "file:///etc",
            "/etc",
            str(tmp_path),
            str(server.home),
            f"{server.home}/mlartifacts/../x",
            "mlflow-artifacts://evil.example:9/x",
            "s3://anywhere/x",
        ):
            for key in ("artifact_location", "artifactLocation"):
                body = {"name": _name("loc"), key: location}
                refused = runner.post(create, json=body)
                assert refused.status_code == 403, (location, refused.text)
                assert "outside the server's artifact root" in refused.json()["message"]
        inside = str(server.home / "mlartifacts" / _name("custom"))
        made = runner.post(create, json={"name": _name("loc"), "artifact_location": inside})
        assert made.status_code == 200, made.text

    # An experiment an older server accepted with an outside location: no upload lands there.
    outside = tmp_path / "outside"
    store = _store(server)
    experiment_id = store.create_experiment(_name("old-loc"), artifact_location=outside.as_uri())
    run_id = store.create_run(experiment_id).info.run_id
    (outside / run_id / "artifacts").mkdir(parents=True)
    (outside / run_id / "artifacts" / "there.txt").write_text("x")
    with server.client(server.make_token("runner", name="upload-runner")) as runner:
        upload = runner.post(
            "/mlflow/ajax-api/2.0/mlflow/upload-artifact",
            params={"run_uuid": run_id, "path": "evil.txt"},
            content=b"payload",
        )
        assert upload.status_code == 403, upload.text
        listing = runner.get(f"{M}/artifacts/list", params={"run_id": run_id})
        assert listing.status_code == 403
        fetched = runner.get(
            "/mlflow/get-artifact", params={"run_uuid": run_id, "path": "there.txt"}
        )
        assert fetched.status_code == 403
    assert not list(outside.rglob("evil.txt"))


def test_unauthenticated_mlflow_calls_get_401_before_the_body(server: Server) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as anonymous:
        response = anonymous.post(f"{M}/runs/search", json={"experiment_ids": ["0"]})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


def test_every_route_in_the_table_is_a_route_of_the_installed_mlflow() -> None:
    from mlflow.server import app

    from service.api.mlflow_scopes import _TABLE, canonical

    served = {
        (method, canonical(rule.rule).replace("<path:artifact_path>", "<path>"))
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
    }
    served = {(m, re.sub(r"<(?!path>)[^>]+>", "<id>", p)) for m, p in served}
    for need, entries in _TABLE.items():
        for entry in entries:
            method, _, path = entry.partition(" ")
            assert (method, path) in served, f"{need}: {entry} is not an MLflow route"
