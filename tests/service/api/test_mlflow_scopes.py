"""The /mlflow mount by route: each scope's reach, and storage roots on MLflow's side.

Attacks from the security probe, through a real `evalctl serve` and real tokens: a runner
token taking over the MLflow Model Registry (defect 2), a read token reading server files
through a promoted checkpoint (defect 1), a runner token pointing an experiment's artifact
location at any folder (defect 6); and read tokens using MLflow's read-only POSTs (7).
Review follow-ups: two run ids in one request, a hard link to the admin token in a
checkpoint folder, planted `evalctl.*` tags and versions, GraphQL mutations in a GET body.
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
from tests.helpers import LiveServer, evalctl

M = "/mlflow/api/2.0/mlflow"


def _mlflow(server: LiveServer, token: str, monkeypatch: pytest.MonkeyPatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    return MlflowClient(tracking_uri=f"{server.url}/mlflow")


def _store(server: LiveServer):
    """Return an MLflow client on the server's own store (what an older server wrote)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{server.home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_runner_token_logs_telemetry_but_not_the_model_registry(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
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
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
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
    folder = server.home / "runs" / _name("repair") / "checkpoint-1"
    _store(server).create_model_version(model, folder.as_uri())
    with server.client(server.admin_token) as admin:  # admin may repair a drifted mirror
        repaired = admin.post(f"{M}/registered-models/alias", json=body)
        assert repaired.status_code == 200, repaired.text
    assert str(_store(server).get_model_version_by_alias(model, "production").version) == "1"


def test_read_token_searches_with_mlflows_own_client(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
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


def test_checkpoint_paths_outside_the_storage_roots_are_refused(server: LiveServer) -> None:
    token = server.make_token("runner", name="ckpt-runner")
    remote = RemoteRegistry(server.url, token, retry_for=5)
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
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
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
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
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
    server: LiveServer, tmp_path: Path
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


def test_unauthenticated_mlflow_calls_get_401_before_the_body(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
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


def test_run_artifact_routes_check_the_run_mlflow_reads(server: LiveServer, tmp_path: Path) -> None:
    # A run of an experiment an older server accepted with an outside location.
    outside = tmp_path / "outside-runs"
    store = _store(server)
    old = store.create_experiment(_name("old-loc"), artifact_location=outside.as_uri())
    evil = store.create_run(old).info.run_id
    (outside / evil / "artifacts").mkdir(parents=True)
    (outside / evil / "artifacts" / "x.txt").write_text("outside-secret")
    with server.client(server.make_token("runner", name="two-ids")) as runner:
        local = str(server.home / "mlartifacts" / _name("local"))  # served by evalctl itself
        body = {"name": _name("two-ids"), "artifact_location": local}
        made = runner.post(f"{M}/experiments/create", json=body)
        experiment_id = made.json()["experiment_id"]
        created = runner.post(f"{M}/runs/create", json={"experiment_id": experiment_id})
        allowed = created.json()["run"]["info"]["run_id"]
        upload = "/mlflow/ajax-api/2.0/mlflow/upload-artifact"
        put = runner.post(upload, params={"run_uuid": allowed, "path": "x.txt"}, content=b"in")
        assert put.status_code == 200, put.text
        # MLflow reads run_id before run_uuid here: the guard must check that run.
        lists = (f"{M}/artifacts/list", "/mlflow/ajax-api/2.0/mlflow/artifacts/list")
        for path in ("/mlflow/get-artifact", *lists):
            params = {"run_id": evil, "run_uuid": allowed, "path": "x.txt"}
            mixed = runner.get(path, params=params)
            assert mixed.status_code in (400, 403), (path, mixed.text)
            assert "outside-secret" not in mixed.text and "x.txt" not in mixed.text
            same = runner.get(path, params={"run_id": allowed, "run_uuid": allowed})
            assert same.status_code in (200, 400), same.text  # get-artifact wants a path
        got = runner.get("/mlflow/get-artifact", params={"run_id": allowed, "path": "x.txt"})
        assert got.status_code == 200 and got.content == b"in"
        assert got.headers["content-disposition"] == "attachment; filename=x.txt"
        # A GET without a query string: MLflow reads the run from the JSON body instead.
        listed = runner.request("GET", f"{M}/artifacts/list", json={"run_id": evil})
        assert listed.status_code == 403, listed.text
        assert "files" not in listed.json() and "x.txt" not in listed.text
        mine = runner.request("GET", f"{M}/artifacts/list", json={"run_id": allowed})
        assert [f["path"] for f in mine.json()["files"]] == ["x.txt"]
        # Uploads read run_uuid only.
        params = {"run_id": allowed, "run_uuid": evil, "path": "evil.txt"}
        assert runner.post(upload, params=params, content=b"payload").status_code in (400, 403)
    assert not list(outside.rglob("evil.txt"))


def test_model_version_files_are_served_by_evalctl_never_its_own_files(server: LiveServer) -> None:
    import os

    folder = server.home / "runs" / _name("linked") / "checkpoint-1"
    folder.mkdir(parents=True)
    weights = os.urandom(300_000)  # several chunks
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "notes.txt").write_text("plain")
    # Same filesystem as EVALCTL_HOME: a hard link passes every path check.
    os.link(server.home / "admin-token", folder / "tokenizer.json")
    os.link(server.home / "mlflow.db", folder / "optimizer.pt")
    (folder / "up").symlink_to(server.home)
    store = _store(server)
    model = _name("linked-model")
    store.create_registered_model(model)
    store.create_model_version(model, folder.as_uri())
    get = "/mlflow/model-versions/get-artifact"
    with server.client(server.make_token("read", name="link-reader")) as reader:
        for path in ("tokenizer.json", "optimizer.pt", "up/admin-token", "%74okenizer.json"):
            stolen = reader.get(get, params={"name": model, "version": "1", "path": path})
            assert stolen.status_code == 403, (path, stolen.status_code)
            assert server.admin_token not in stolen.text and "SQLite" not in stolen.text
            head = reader.head(get, params={"name": model, "version": "1", "path": path})
            assert head.status_code == 403
        got = reader.get(get, params={"name": model, "version": "1", "path": "model.safetensors"})
        assert got.status_code == 200, got.text[:200]
        assert got.content == weights
        # The same headers as MLflow's own download of the same file from a run.
        writer = server.make_token("write", name="link-writer")
        with server.client(writer) as client:
            made = client.post(f"{M}/experiments/create", json={"name": _name("shape")})
            body = {"experiment_id": made.json()["experiment_id"]}
            run_id = client.post(f"{M}/runs/create", json=body).json()["run"]["info"]["run_id"]
            for name, content in (("model.safetensors", weights[:1000]), ("notes.txt", b"plain")):
                params = {"run_uuid": run_id, "path": name}
                upload = client.post(
                    "/mlflow/ajax-api/2.0/mlflow/upload-artifact", params=params, content=content
                )
                assert upload.status_code == 200, upload.text
                theirs = client.get("/mlflow/get-artifact", params={"run_id": run_id, "path": name})
                ours = reader.get(get, params={"name": model, "version": "1", "path": name})
                assert ours.status_code == theirs.status_code == 200
                for header in ("content-type", "content-disposition", "x-content-type-options"):
                    assert ours.headers[header] == theirs.headers[header], header
        assert ours.content == b"plain"
        assert ours.headers["content-length"] == "5"
        head = reader.head(get, params={"name": model, "version": "1", "path": "notes.txt"})
        assert head.status_code == 200 and head.content == b""
        folder_itself = reader.get(get, params={"name": model, "version": "1", "path": "up"})
        assert folder_itself.status_code == 403
        missing = reader.get(get, params={"name": model, "version": "1", "path": "nothing"})
        assert missing.status_code == 404, missing.text


def test_evalctl_tags_on_the_model_registry_need_admin(server: LiveServer) -> None:
    model = _name("tagged")
    writer = server.client(server.make_token("write", name="tag-writer"))
    created = writer.post(f"{M}/registered-models/create", json={"name": model})
    assert created.status_code == 200, created.text
    made = writer.post(f"{M}/experiments/create", json={"name": _name("tagged")})
    body = {"experiment_id": made.json()["experiment_id"]}
    run_id = writer.post(f"{M}/runs/create", json=body).json()["run"]["info"]["run_id"]
    version = {"name": model, "source": f"runs:/{run_id}/model", "run_id": run_id}
    tag = {"key": "evalctl.checkpoint_id", "value": "1"}
    refused = [
        ("POST", f"{M}/registered-models/create", {"name": _name("m"), "tags": [tag]}),
        ("POST", f"{M}/registered-models/set-tag", {"name": model, **tag}),
        ("DELETE", f"{M}/registered-models/delete-tag", {"name": model, "key": tag["key"]}),
        ("POST", f"{M}/model-versions/create", {**version, "tags": [tag]}),
        ("POST", f"{M}/model-versions/create", {**version, "tags": [{**tag, "key": "Evalctl.x"}]}),
        ("POST", "/mlflow/ajax-api/2.0/mlflow/model-versions/create", {**version, "tags": [tag]}),
    ]
    for method, path, sent in refused:
        response = writer.request(method, path, json=sent)
        assert response.status_code == 403, (path, response.text)
        assert "evalctl." in response.json()["message"]
    assert _store(server).search_model_versions(f"name = '{model}'") == []
    plain = writer.post(f"{M}/model-versions/create", json={**version, "tags": [{"key": "k"}]})
    assert plain.status_code == 200, plain.text
    number = plain.json()["model_version"]["version"]
    on_version = {"name": model, "version": number, **tag}
    assert writer.post(f"{M}/model-versions/set-tag", json=on_version).status_code == 403
    drop = {"name": model, "version": number, "key": "evalctl.sha256"}
    assert writer.request("DELETE", f"{M}/model-versions/delete-tag", json=drop).status_code == 403
    assert (
        writer.post(f"{M}/model-versions/set-tag", json={**on_version, "key": "k"}).status_code
        == 200
    )
    writer.close()
    with server.client(server.admin_token) as admin:
        repaired = admin.post(f"{M}/model-versions/set-tag", json=on_version)
        assert repaired.status_code == 200, repaired.text
    assert _store(server).get_model_version(model, number).tags["evalctl.checkpoint_id"] == "1"


def test_a_promotion_never_reuses_a_version_with_another_source(server: LiveServer) -> None:
    from service.mlflow_registry import CHECKPOINT_TAG

    with server.client(server.admin_token) as admin:
        experiment = admin.post("/api/v1/experiments", json={"name": _name("reuse")}).json()
        run_in = {
            "name": "r",
            "experiment_id": experiment["id"],
            "spec_text": "",
            "spec_hash": "0" * 64,
        }
        run = admin.post("/api/v1/runs", json=run_in).json()
        path = server.home / "runs" / str(run["id"]) / "checkpoint-7"
        body = {"run_id": run["id"], "step": 7, "path": str(path), "sha256": "d" * 64}
        checkpoint = admin.post("/api/v1/checkpoints", json=body).json()
        # Versions pre-created for this checkpoint (as an older server let a write token do).
        store = _store(server)
        store.create_registered_model(experiment["name"])
        elsewhere = (server.home / "runs" / _name("planted")).as_uri()
        tags = {CHECKPOINT_TAG: str(checkpoint["id"]), "evalctl.sha256": "d" * 64}
        store.create_model_version(experiment["name"], elsewhere, tags=tags)
        wrong_hash = {**tags, "evalctl.sha256": "0" * 64}
        store.create_model_version(experiment["name"], path.as_uri(), tags=wrong_hash)
        alias = f"/api/v1/aliases/{experiment['id']}/production"
        moved = admin.put(alias, json={"checkpoint_id": checkpoint["id"], "actor": "ci"})
        assert moved.status_code == 200, moved.text
        assert moved.json()["version"] == 3
        version = store.get_model_version_by_alias(experiment["name"], "production")
        assert version.source == path.as_uri()
        assert version.tags["evalctl.sha256"] == "d" * 64
        # The version it made is the one later promotions of that checkpoint reuse.
        staging = f"/api/v1/aliases/{experiment['id']}/staging"
        again = admin.put(staging, json={"checkpoint_id": checkpoint["id"], "actor": "ci"})
        assert again.status_code == 200 and again.json()["version"] == 3


def test_graphql_over_get_is_checked_on_the_body_mlflow_reads(server: LiveServer) -> None:
    write = {"query": "mutation { deleteEverything }"}
    search = 'mlflowSearchRuns(input: {experimentIds: ["0"]}) { runs { info { runId } } }'
    read = {"query": "mutation { " + search + " }"}
    with server.client(server.make_token("read", name="graphql-get")) as reader:
        refused = reader.request("GET", "/mlflow/graphql", json=write)
        assert refused.status_code == 403, refused.text
        hidden = reader.request(
            "GET", "/mlflow/graphql", params={"query": read["query"]}, json=write
        )
        assert hidden.status_code == 403, hidden.text
        searched = reader.request("GET", "/mlflow/graphql", json=read)
        assert searched.status_code == 200, searched.text
        assert "mlflowSearchRuns" in searched.json()["data"]
