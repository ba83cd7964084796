"""MLflow through the service: one URL and one token for runners' telemetry."""

from __future__ import annotations

import pytest

from tests.helpers import LiveServer


def test_mlflow_client_logs_through_the_service(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.make_token("write", name="mlflow"))
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    client = MlflowClient(tracking_uri=f"{server.url}/mlflow")
    experiment_id = client.create_experiment(f"through-service-{tmp_path.name}")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "loss", 0.25, step=3)
    client.log_param(run.info.run_id, "lr", "0.001")
    note = tmp_path / "note.txt"
    note.write_text("hello")
    client.log_artifact(run.info.run_id, str(note))
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(3, 0.25)]
    assert client.get_run(run.info.run_id).data.params == {"lr": "0.001"}
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["note.txt"]
    # Stored in the server's own MLflow store and artifact folder, not the client's.
    assert (server.home / "mlflow.db").exists()
    assert list((server.home / "mlartifacts").rglob("note.txt"))


def test_mlflow_mount_checks_tokens_and_scopes(server: LiveServer) -> None:
    search = "/mlflow/api/2.0/mlflow/experiments/search?max_results=1"
    create = "/mlflow/api/2.0/mlflow/experiments/create"
    with server.client() as anonymous:
        response = anonymous.get(search)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    with server.client(server.make_token("read", name="mlflow-read")) as reader:
        assert reader.get(search).status_code == 200
        denied = reader.post(create, json={"name": "read-only-cannot"})
        assert denied.status_code == 403
        assert "write" in denied.json()["detail"]
