"""A small, realistic registry for dashboard tests, built with `tests/factories.py`.

One experiment with three runs: `good` and `worse` succeeded (checkpoints at steps 0, 10
and 20, each scored by json_schema, perplexity, classification and llama_guard, with
per-example rows), `broken` failed with a reason. Training curves go to MLflow. A runner
ran `good`'s job; a second job failed. `@production` points at `good`'s best checkpoint.
`worse` gets 4 examples wrong that `good` got right, so the compare page has something
to show and the gate has something to find.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from service import crud
from service.local import LocalRegistry
from service.models import CheckpointPublic, EvalExampleCreate, JobCreate, RunStatus, RunUpdate
from tests.factories import (
    CHECKPOINT_ROOT,
    make_alias,
    make_checkpoint,
    make_evaluation,
    make_experiment,
    make_run,
)

N_EXAMPLES = 20
SPEC = """\
name: {name}
base_model: {{path: models/tiny}}
data: {{train: train.jsonl, eval: eval.jsonl, format: vertex}}
training:
  method: lora
  lora: {{r: {r}, alpha: 32}}
  max_steps: 20
  learning_rate: {lr}
  save_every_steps: 10
evaluators:
  - perplexity: {{data: eval.jsonl}}
  - json_schema: {{prompts: prompts.jsonl, schema: schema.json}}
best_checkpoint: {{metric: json_schema.valid_rate, mode: max}}
gate:
  baseline: "@production"
  rules:
    - {{metric: json_schema.valid_rate, min: 0.9}}
    - {{metric: json_schema.valid, no_significant_drop: {{alpha: 0.05}}}}
tracking:
  experiment: {experiment}
"""


@dataclass
class SeededRun:
    id: int
    name: str
    checkpoint_ids: list[int] = field(default_factory=list)
    best_checkpoint_id: int | None = None
    evaluation_ids: dict[str, int] = field(default_factory=dict)  # best ckpt, by evaluator
    mlflow_run_id: str | None = None


@dataclass
class Seeded:
    experiment: str
    experiment_id: int
    runs: dict[str, SeededRun]
    job_ids: list[int]
    runner_name: str


def _examples(quality: int, step: int, wrong: set[int]) -> dict[str, list[EvalExampleCreate]]:
    """Per-example rows of each evaluator; `wrong` examples fail at the last step."""
    out: dict[str, list[EvalExampleCreate]] = {
        k: [] for k in ("json_schema", "perplexity", "classification", "llama_guard")
    }
    for i in range(N_EXAMPLES):
        ok = step > 0 and (i not in wrong or step < 20) and (i % 10) < quality
        output = f'{{"customer": "c{i}", "qty": {i}}}' if ok else f"Sure! The order is c{i}"
        out["json_schema"].append(
            EvalExampleCreate(
                position=i,
                example_id=f"ex-{i:02d}",
                scores={"parsed": float(ok), "valid": float(ok), "exact_match": float(ok)},
                details={
                    "input": f"Order {i}: customer c{i} wants {i} items",
                    "output": output,
                    "reference": {"customer": f"c{i}", "qty": i},
                    **({} if ok else {"error": "no JSON value in the output"}),
                },
            )
        )
        nll = 2.5 - 0.05 * step - (0.1 if ok else 0.0) + 0.01 * i
        out["perplexity"].append(
            EvalExampleCreate(
                position=i,
                example_id=f"ex-{i:02d}",
                scores={"nll": nll, "ppl": math.exp(nll), "tokens": 20.0 + i},
                details={"text": f"Order {i} ...", "line": i + 1},
            )
        )
        label = ["positive", "negative"][i % 2]
        out["classification"].append(
            EvalExampleCreate(
                position=i,
                example_id=f"ex-{i:02d}",
                scores={"correct": float(ok)},
                details={
                    "input": f"Review {i}",
                    "gold": label,
                    "predicted": label if ok else ["negative", "positive"][i % 2],
                },
            )
        )
        unsafe = i == 7 and step > 0
        out["llama_guard"].append(
            EvalExampleCreate(
                position=i,
                example_id=f"ex-{i:02d}",
                scores={
                    "response_unsafe": float(unsafe),
                    "response_p_unsafe": 0.9 if unsafe else 0.02,
                },
                details={
                    "prompt": f"Prompt {i}",
                    "response": f"Response {i}",
                    "response_verdict": "unsafe\nS2" if unsafe else "safe",
                    "response_categories": ["S2"] if unsafe else [],
                },
            )
        )
    return out


def _metrics(evaluator: str, rows: list[EvalExampleCreate]) -> dict[str, float]:
    def mean(key: str) -> float:
        return sum(r.scores[key] for r in rows) / len(rows)

    if evaluator == "json_schema":
        return {
            "parse_rate": mean("parsed"),
            "valid_rate": mean("valid"),
            "exact_match": mean("exact_match"),
        }
    if evaluator == "perplexity":
        return {"nll": mean("nll"), "ppl": math.exp(mean("nll"))}
    if evaluator == "classification":
        return {"accuracy": mean("correct")}
    return {"response_unsafe_rate": mean("response_unsafe")}


def seed(db_url: str, tracking_uri: str, *, experiment: str) -> Seeded:
    """Fill the registry at `db_url` (and MLflow at `tracking_uri`); return the ids."""
    from mlflow.tracking import MlflowClient

    registry = LocalRegistry(db_url)
    exp = make_experiment(registry, name=experiment)
    client = MlflowClient(tracking_uri=tracking_uri)
    mlflow_exp = client.create_experiment(experiment)
    runs: dict[str, SeededRun] = {}
    best: dict[str, CheckpointPublic] = {}
    plans = {
        "good": (10, 16, "1e-3", set()),
        "worse": (10, 8, "2e-4", {1, 3, 5, 9}),
        "broken": (0, 8, "5e-2", set()),
    }
    for name, (quality, r, lr, wrong) in plans.items():
        run_name = f"{experiment}-{name}"
        spec = SPEC.format(name=run_name, r=r, lr=lr, experiment=experiment)
        run = make_run(
            registry,
            experiment=exp,
            name=run_name,
            spec_text=spec,
            spec_hash=f"{hash(spec):x}"[-12:],
            git_sha="3f2c1ab9d0e4",
            base_model="models/tiny",
            base_model_hash="ab" * 32,
            dataset_hashes={"train": "cd" * 32, "eval": "ef" * 32},
            tags={"team": "nlp", "arm": name},
            status=RunStatus.running,
        )
        seeded = SeededRun(id=run.id, name=run_name)
        runs[name] = seeded
        mlrun = client.create_run(mlflow_exp, run_name=run_name)
        seeded.mlflow_run_id = mlrun.info.run_id
        if name == "broken":
            client.log_batch(mlrun.info.run_id, metrics=[])
            registry.update_run(
                run_id=run.id,
                run_update=RunUpdate(
                    status=RunStatus.failed,
                    failure_reason="CUDA out of memory at step 3",
                    mlflow_run_id=mlrun.info.run_id,
                ),
            )
            continue
        _log_curves(client, mlrun.info.run_id, slowdown=1.0 if name == "good" else 1.3)
        for step in (0, 10, 20):
            ckpt = make_checkpoint(
                registry,
                run=run,
                step=step,
                path=f"{CHECKPOINT_ROOT}/{run_name}/{step}",
                sha256=f"{run.id:04d}{step:04d}".ljust(64, "0"),
                train_loss=None if step == 0 else 2.0 - step * 0.05,
                eval_loss=2.2 - step * 0.04,
            )
            seeded.checkpoint_ids.append(ckpt.id)
            for evaluator, rows in _examples(quality, step, wrong).items():
                evaluation = make_evaluation(
                    registry,
                    checkpoint=ckpt,
                    evaluator=evaluator,
                    config_hash="c" * 16,
                    metrics=_metrics(evaluator, rows),
                    n_examples=len(rows),
                    duration_s=1.5,
                    examples=rows,
                )
                if step == 20:
                    seeded.evaluation_ids[evaluator] = evaluation.id
        seeded.best_checkpoint_id = ckpt.id
        best[name] = ckpt
        registry.update_run(
            run_id=run.id,
            run_update=RunUpdate(
                status=RunStatus.succeeded,
                best_checkpoint_id=seeded.best_checkpoint_id,
                mlflow_run_id=mlrun.info.run_id,
            ),
        )
    make_alias(
        registry,
        checkpoint=best["good"],
        name="production",
        actor="seed",
        action="promote",
        gate={"verdict": "pass", "summary": "PASS: seeded"},
    )
    job_ids, runner_name = _jobs(registry, runs, experiment)
    return Seeded(
        experiment=experiment,
        experiment_id=exp.id,
        runs=runs,
        job_ids=job_ids,
        runner_name=runner_name,
    )


def _log_curves(client: Any, run_id: str, *, slowdown: float) -> None:
    from mlflow.entities import Metric

    metrics = []
    for step in range(1, 301):
        loss = 2.0 * math.exp(-step / (80 * slowdown)) + 0.3
        metrics.append(Metric("loss", loss, 1000 + step, step))
        metrics.append(Metric("learning_rate", 1e-3 * (1 - step / 300), 1000 + step, step))
        if step % 10 == 0:
            metrics.append(Metric("eval_loss", loss + 0.1, 1000 + step, step))
    for i in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[i : i + 900])


def _jobs(
    registry: LocalRegistry, runs: dict[str, SeededRun], experiment: str
) -> tuple[list[int], str]:
    runner_name = f"gpu-box-{experiment}"
    with Session(registry.engine) as session:
        runner = crud.register_runner(session=session, name=runner_name, labels=["a100"], gpus=1)
        good = crud.enqueue_job(
            session=session,
            job_in=JobCreate(kind="train", spec_text="name: x", gpus=0, labels=["a100"]),
        )
        good_id = good.id
        claimed = crud.claim_job(
            session=session, runner_id=runner.id, labels=["a100"], gpus=1, lease_seconds=300
        )
        assert claimed is not None and claimed.id == good_id
        crud.set_job_run(
            session=session, job_id=good_id, run_id=runs["good"].id, runner_id=runner.id
        )
        crud.append_job_logs(
            session=session,
            job_id=good_id,
            runner_id=runner.id,
            lines=["step 10 loss 1.52", "step 20 loss 1.21", "done"],
        )
        crud.finish_job(session=session, job_id=good_id, runner_id=runner.id, status="succeeded")
        bad = crud.enqueue_job(
            session=session,
            job_in=JobCreate(kind="train", spec_text="name: y", gpus=0, labels=["a100"]),
        )
        bad_id = bad.id
        crud.claim_job(
            session=session, runner_id=runner.id, labels=["a100"], gpus=1, lease_seconds=300
        )
        crud.set_job_run(
            session=session, job_id=bad_id, run_id=runs["broken"].id, runner_id=runner.id
        )
        crud.finish_job(
            session=session,
            job_id=bad_id,
            runner_id=runner.id,
            status="failed",
            failure_reason="CUDA out of memory at step 3",
        )
        queued = crud.enqueue_job(
            session=session,
            job_in=JobCreate(
                kind="eval", spec_text="name: z", gpus=1, payload={"checkpoint_ids": [1]}
            ),
        )
        return [good_id, bad_id, queued.id], runner_name
