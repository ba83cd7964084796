"""The run page against a live server: lineage, curves, checkpoints, spec, jobs and log."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from service import crud
from service.local import LocalRegistry
from service.models import EvaluationStatus, JobCreate, RunPublic, RunUpdate
from tests.dashboards.seed import Seeded
from tests.factories import make_checkpoint, make_evaluation, make_experiment, make_run, unique
from tests.helpers import LiveServer


def charts(html: str) -> dict[str, dict]:  # type: ignore[type-arg]
    """Return the chart specs embedded in the page, by script id."""
    found = re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', html, re.S)
    return {chart_id: json.loads(body) for chart_id, body in found}


def section(html: str, title: str) -> str:
    """Return the HTML of one <section> by its h2 text."""
    found = re.search(rf"<h2 id=\"\w+\">{title}</h2>(.*?)</section>", html, re.S)
    assert found, f"no section {title!r}"
    return found.group(1)


def new_run(registry: LocalRegistry, seeded: Seeded) -> RunPublic:
    experiment = make_experiment(registry, name=seeded.experiment)
    return make_run(
        registry, experiment=experiment, name=unique("extra"), spec_text="name: extra\n"
    )


def test_lineage(reader: httpx.Client, seeded: Seeded) -> None:
    good = seeded.runs["good"]
    response = reader.get(f"/runs/{good.id}")
    assert response.status_code == 200
    html = response.text
    assert f"<h1>{good.name}</h1>" in html
    for title in ("Lineage", "Training curves", "Checkpoints", "Spec", "Job", "Log"):
        assert f">{title}</h2>" in html
    lineage = section(html, "Lineage")
    for text in ("ab" * 32, "cd" * 32, "ef" * 32, "3f2c1ab9d0e4", "models/tiny"):
        assert text in lineage
    assert str(good.mlflow_run_id) in lineage
    assert seeded.experiment in lineage
    assert '<span class="tag">arm=good</span>' in lineage
    assert 'status status-succeeded">succeeded<' in lineage


def test_failed_run_shows_reason_and_no_checkpoints(reader: httpx.Client, seeded: Seeded) -> None:
    html = reader.get(f"/runs/{seeded.runs['broken'].id}").text
    assert "CUDA out of memory at step 3" in section(html, "Lineage")
    assert "No checkpoints recorded." in html
    assert "No training curves were logged." in html
    job = section(html, "Job")
    assert 'status status-failed">failed<' in job and "CUDA out of memory" in job
    assert "No log recorded." in section(html, "Log")


def test_training_curves(reader: httpx.Client, seeded: Seeded) -> None:
    html = reader.get(f"/runs/{seeded.runs['good'].id}").text
    found = charts(html)
    assert set(found) == {"curve-loss", "curve-eval_loss", "curve-learning_rate"}
    for chart_id, chart in found.items():
        assert f'data-chart="{chart_id}"' in html
        (series,) = chart["series"]
        assert len(series["x"]) == len(series["y"]) <= 2000
    assert found["curve-loss"]["series"][0]["label"] == "loss (300 points)"
    assert found["curve-eval_loss"]["series"][0]["label"] == "eval_loss (30 points)"


def test_long_curves_are_downsampled(
    server: LiveServer, reader: httpx.Client, registry: LocalRegistry, seeded: Seeded
) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{server.home / 'mlflow.db'}")
    mlrun = client.create_run(client.get_experiment_by_name(seeded.experiment).experiment_id)
    points = [Metric("loss", 1.0 / step, 0, step) for step in range(1, 5001)]
    points += [Metric("grad_norm", 0.5, 0, step) for step in range(1, 11)]
    for i in range(0, len(points), 1000):
        client.log_batch(mlrun.info.run_id, metrics=points[i : i + 1000])
    run_id = new_run(registry, seeded).id
    registry.update_run(run_id=run_id, run_update=RunUpdate(mlflow_run_id=mlrun.info.run_id))
    found = charts(reader.get(f"/runs/{run_id}").text)
    assert set(found) == {"curve-loss", "curve-grad_norm"}
    loss = found["curve-loss"]["series"][0]
    assert loss["label"] == "loss (2000 of 5000 points)"
    assert len(loss["x"]) == 2000 and loss["x"][0] == 1 and loss["x"][-1] == 5000


def test_checkpoints_with_metrics_best_marker_and_links(
    reader: httpx.Client, seeded: Seeded
) -> None:
    good = seeded.runs["good"]
    table = section(reader.get(f"/runs/{good.id}").text, "Checkpoints")
    rows = dict(re.findall(r'<tr data-checkpoint="(\d+)"([^>]*>.*?)</tr>', table, re.S))
    assert [int(i) for i in rows] == good.checkpoint_ids
    best = rows[str(good.best_checkpoint_id)]
    assert best.startswith(' class="best"') and '<span class="best">best</span>' in best
    assert sum('<span class="best">best</span>' in row for row in rows.values()) == 1
    metrics = dict(re.findall(r'data-metric="([^"]+)">([^<]*)</td>', best))
    assert metrics["json_schema.valid_rate"] == "1"
    assert metrics["classification.accuracy"] == "1"
    assert "perplexity.ppl" in metrics and "llama_guard.response_unsafe_rate" in metrics
    first = dict(
        re.findall(r'data-metric="([^"]+)">([^<]*)</td>', rows[str(good.checkpoint_ids[0])])
    )
    assert first["json_schema.valid_rate"] == "0"  # step 0: the base model
    for evaluator, evaluation_id in good.evaluation_ids.items():
        link = (
            f'<a href="/evaluations/{evaluation_id}" '
            f'aria-label="Examples of {evaluator} at step 20">'
        )
        assert link in best
    assert "0001002000" in best  # short sha256 of step 20
    assert '<td class="num">1.4</td>' in best  # eval_loss at step 20: 2.2 - 20 * 0.04


def test_failed_evaluation_shows_its_error(
    reader: httpx.Client, registry: LocalRegistry, seeded: Seeded
) -> None:
    run = new_run(registry, seeded)
    run_id = run.id
    ckpt = make_checkpoint(registry, run=run, step=5)
    for status, error, metrics in (
        (EvaluationStatus.succeeded, None, {"valid_rate": 0.25}),
        (EvaluationStatus.failed, "schema.json: no such file", {}),
    ):
        make_evaluation(
            registry,
            checkpoint=ckpt,
            evaluator="json_schema",
            config_hash="c" * 16,
            status=status,
            error=error,
            metrics=metrics,
        )
    make_evaluation(
        registry,
        checkpoint=ckpt,
        evaluator="llama_guard",
        config_hash="c" * 16,
        status=EvaluationStatus.failed,
        error="CUDA out of memory",
    )
    table = section(reader.get(f"/runs/{run_id}").text, "Checkpoints")
    # A later failure does not hide the succeeded scores; a lone failure shows its error.
    assert 'data-metric="json_schema.valid_rate">0.25<' in table
    assert "CUDA out of memory" in table
    assert 'aria-label="Examples of llama_guard at step 5"' in table


def test_spec_is_highlighted(reader: httpx.Client, seeded: Seeded) -> None:
    spec = section(reader.get(f"/runs/{seeded.runs['good'].id}").text, "Spec")
    assert '<pre class="hl" tabindex="0"><code>' in spec
    assert '<span class="nt">best_checkpoint</span>' in spec
    assert "json_schema.valid_rate" in spec


def test_job_runner_and_log(
    server: LiveServer, reader: httpx.Client, registry: LocalRegistry, seeded: Seeded
) -> None:
    good = reader.get(f"/runs/{seeded.runs['good'].id}").text
    job = section(good, "Job")
    assert f'<a href="/jobs/{seeded.job_ids[0]}">' in job and "train" in job
    assert 'status status-succeeded">succeeded<' in job
    assert seeded.runner_name in job  # the runner that ran it, though the job has ended
    assert '<a href="/jobs">' in job
    log = section(good, "Log")
    assert "step 20 loss 1.21" in log and f"job #{seeded.job_ids[0]}" in log
    # A job still running shows the runner holding it, and only the last 200 lines.
    run_id = new_run(registry, seeded).id
    label = f"lbl-{uuid.uuid4().hex[:6]}"
    with Session(registry.engine) as session:
        runner = crud.register_runner(session=session, name=f"box-{label}", labels=[label], gpus=0)
        job_in = JobCreate(kind="train", spec_text="name: r", gpus=0, labels=[label])
        job_id = crud.enqueue_job(session=session, job_in=job_in).id
        claimed = crud.claim_job(
            session=session, runner_id=runner.id, labels=[label], gpus=0, lease_seconds=300
        )
        assert claimed is not None and claimed.id == job_id
        crud.set_job_run(session=session, job_id=job_id, run_id=run_id, runner_id=runner.id)
        lines = [f"log line {i:04d}" for i in range(250)]
        crud.append_job_logs(session=session, job_id=job_id, runner_id=runner.id, lines=lines)
    html = reader.get(f"/runs/{run_id}").text
    assert f"box-{label}" in section(html, "Job")
    log = section(html, "Log")
    assert "log line 0249" in log and "log line 0050" in log and "log line 0049" not in log


def test_local_run_log_when_no_job(
    server: LiveServer, reader: httpx.Client, registry: LocalRegistry, seeded: Seeded
) -> None:
    run_id = new_run(registry, seeded).id
    assert "No log recorded." in reader.get(f"/runs/{run_id}").text
    folder: Path = server.home / "runs" / str(run_id)
    folder.mkdir(parents=True)
    (folder / "run.log").write_text("".join(f"local line {i:04d}\n" for i in range(300)))
    log = section(reader.get(f"/runs/{run_id}").text, "Log")
    assert "local line 0299" in log and "local line 0100" in log
    assert "local line 0099" not in log and "run.log" in log


@pytest.mark.parametrize("ref", ["999999", "abc"])
def test_unknown_run_is_a_404_page(reader: httpx.Client, ref: str) -> None:
    response = reader.get(f"/runs/{ref}")
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in response.text and "<html" in response.text


def test_needs_login(server: LiveServer, seeded: Seeded) -> None:
    run_id = seeded.runs["good"].id
    response = httpx.get(f"{server.url}/runs/{run_id}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=%2Fruns%2F{run_id}"
