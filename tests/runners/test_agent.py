"""Runner agents against a real `evalctl serve`: submit, claim, resume after SIGKILL, cancel.

Each test runs the real CLI in subprocesses (server, `evalctl submit`, `evalctl runner
start`) on the tiny model, with labels of its own so tests sharing the server never take
each other's jobs. Runners share one work dir, as runners on shared storage would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.jobs_client import JobsClient
from service.remote import ApiClient, RemoteRegistry
from tests.helpers import LiveServer, evalctl, start_server, write_tiny_spec

#: A runner token: it also logs the runs' MLflow telemetry through the /mlflow mount.
RUNNER_SCOPES = ("runner",)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # The runners' work dirs and the tiny model are their "shared volume": a storage root.
    running = start_server(
        tmp_path_factory.mktemp("agent-server"), storage_roots=[tmp_path_factory.getbasetemp()]
    )
    yield running
    running.stop()


class Cluster:
    """A server, a shared work dir and helpers to submit jobs and start runners."""

    def __init__(self, server: LiveServer, root: Path, label: str) -> None:
        self.server, self.root, self.label = server, root, label
        self.admin = server.admin_token
        self.runner_token = server.make_token(*RUNNER_SCOPES, name="runner")
        self.work = root / "shared"
        self.jobs = JobsClient(ApiClient(server.url, self.admin, retry_for=5))
        self.registry = RemoteRegistry(server.url, self.admin, retry_for=5)

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {"EVALCTL_URL": self.server.url, "EVALCTL_TOKEN": token or self.admin}
        return evalctl(*args, home=self.root / "client", timeout=120, **env)

    def submit(self, spec: Path, *extra: str) -> int:
        done = self.cli("submit", str(spec), "--labels", self.label, *extra)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())

    def runner(self, name: str, *extra: str, labels: str | None = None) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVALCTL_")}
        env |= {
            "EVALCTL_URL": self.server.url,
            "EVALCTL_TOKEN": self.runner_token,
            "EVALCTL_HOME": str(self.root / name),
            "EVALCTL_RETRY_SECONDS": "10",
        }
        command = [sys.executable, "-m", "evalctl", "runner", "start", "--name", name]
        command += ["--labels", labels or self.label, "--gpus", "1", "--work-dir", str(self.work)]
        log = (self.root / f"{name}.log").open("w")
        return subprocess.Popen([*command, *extra], env=env, stdout=log, stderr=log, text=True)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()

    def show_run(self, run_id: int) -> dict[str, Any]:
        done = self.cli("runs", "show", str(run_id), "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def run_of(self, job_id: int, experiment: str) -> int | None:
        """Return the job's run: its recorded link, else the run tagged with the job id."""
        job = self.jobs.get(job_id=job_id)
        if job.run_id is not None:
            return job.run_id
        try:
            runs = self.registry.list_runs(experiment=experiment).data
        except Exception:  # the experiment does not exist yet
            return None
        tagged = [r.id for r in runs if r.tags.get("evalctl.job_id") == str(job_id)]
        return tagged[0] if tagged else None


@pytest.fixture
def cluster(server: LiveServer, tmp_path: Path, unique_name: str) -> Cluster:
    return Cluster(server, tmp_path, f"pool-{unique_name}")


def spec_for(
    folder: Path, model: Path, name: str, *, mlflow: bool = False, **training: Any
) -> Path:
    """Write the tiny spec under its own name (its experiment), MLflow off unless asked."""
    path = write_tiny_spec(folder, model, **training)
    data = yaml.safe_load(path.read_text())
    data["name"] = name
    data["tracking"] = {"mlflow": mlflow}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def finish(process: subprocess.Popen[str], timeout: float = 240) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def test_submitted_job_runs_on_a_runner_and_records_everything(
    cluster: Cluster, tiny_model_dir: Path, unique_name: str
) -> None:
    spec = spec_for(cluster.root / "exp", tiny_model_dir, unique_name, mlflow=True)
    job_id = cluster.submit(spec)
    queued = cluster.jobs.get(job_id=job_id)
    assert (queued.status, queued.labels, queued.spec_path) == (
        "queued",
        [cluster.label],
        str(spec),
    )

    runner = cluster.runner(f"{unique_name}-a", "--once")
    assert finish(runner) == 0, cluster.log(f"{unique_name}-a")

    shown = cluster.cli("jobs", "show", str(job_id), "--logs", "--json")
    job = json.loads(shown.stdout)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1 and job["failure_reason"] is None
    assert any("created run" in line for line in job["logs"])
    run_id = job["run_id"]
    info = cluster.show_run(run_id)
    assert info["run"]["status"] == "succeeded"
    assert info["run"]["tags"]["evalctl.job_id"] == str(job_id)
    assert [c["step"] for c in info["checkpoints"]] == [0, 2, 4]
    for ckpt in info["checkpoints"][1:]:
        # Shared storage: the recorded path is in the runners' work dir.
        assert Path(ckpt["path"]).is_relative_to(cluster.work)
        assert (Path(ckpt["path"]) / "adapter_model.safetensors").is_file()
    pairs = {(e["checkpoint_id"], e["evaluator"]) for e in info["evaluations"]}
    assert pairs == {
        (c["id"], n) for c in info["checkpoints"] for n in ("perplexity", "json_schema")
    }
    assert info["run"]["best_checkpoint_id"] in [c["id"] for c in info["checkpoints"][1:]]
    # MLflow: the run went to the service's /mlflow mount.
    assert info["run"]["mlflow_run_id"]

    listed = json.loads(cluster.cli("jobs", "list", "--status", "succeeded", "--json").stdout)
    assert job_id in [j["id"] for j in listed["data"]]

    # A remote promotion moves the service's MLflow alias, not one in the client's home.
    from mlflow.tracking import MlflowClient

    promoted = cluster.cli("promote", f"run:{run_id}", "--alias", "production", "--json")
    assert promoted.returncode == 0, promoted.stderr
    moved = json.loads(promoted.stdout)
    served = MlflowClient(tracking_uri=f"sqlite:///{cluster.server.home / 'mlflow.db'}")
    version = served.get_model_version_by_alias(unique_name, "production")
    assert int(version.version) == moved["mlflow_version"]
    assert version.tags["evalctl.checkpoint_id"] == str(moved["to_checkpoint_id"])
    assert not (cluster.root / "client" / "mlflow.db").exists()
    table = cluster.cli("jobs", "list")
    assert table.returncode == 0 and str(job_id) in table.stdout


def test_killed_runner_job_is_requeued_and_resumed_by_another(
    cluster: Cluster, tiny_model_dir: Path, unique_name: str
) -> None:
    spec = spec_for(
        cluster.root / "exp", tiny_model_dir, unique_name, max_steps=8, save_every_steps=2
    )
    job_id = cluster.submit(spec)
    first = cluster.runner(f"{unique_name}-a", "--once", "--lease-seconds", "3")

    def trained_steps() -> list[int]:
        run_id = cluster.run_of(job_id, unique_name)
        if run_id is None:
            return []
        return [c.step for c in cluster.registry.list_checkpoints(run_id=run_id)]

    wait_for("the first trained checkpoint", lambda: any(s >= 2 for s in trained_steps()))
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = trained_steps()
    if max(before) >= 8:
        pytest.skip("the job finished before its runner could be killed")
    assert cluster.jobs.get(job_id=job_id).status == "running"  # until the lease expires

    second = cluster.runner(f"{unique_name}-b", "--once", "--lease-seconds", "3")
    assert finish(second) == 0, cluster.log(f"{unique_name}-b")
    job = cluster.jobs.get(job_id=job_id)
    assert (job.status, job.attempts) == ("succeeded", 2), job
    assert "resuming run" in cluster.log(f"{unique_name}-b")
    run_id = cluster.run_of(job_id, unique_name)
    assert run_id is not None
    info = cluster.show_run(run_id)
    steps = [c["step"] for c in info["checkpoints"]]
    assert steps == sorted(set(steps)), "a checkpoint was recorded twice"
    assert set(before) <= set(steps), "a checkpoint was lost"
    assert steps[0] == 0 and steps[-1] == 8
    assert info["run"]["status"] == "succeeded"
    assert len(cluster.registry.list_runs(experiment=unique_name).data) == 1


def test_cancel_reaches_a_running_job_within_a_heartbeat(
    cluster: Cluster, tiny_model_dir: Path, unique_name: str
) -> None:
    spec = spec_for(
        cluster.root / "exp",
        tiny_model_dir,
        unique_name,
        max_steps=100_000,
        save_every_steps=100_000,
    )
    job_id = cluster.submit(spec)
    runner = cluster.runner(f"{unique_name}-a", "--once", "--lease-seconds", "3")

    def training() -> bool:
        run_id = cluster.run_of(job_id, unique_name)
        return run_id is not None and any(
            c.step == 0 for c in cluster.registry.list_checkpoints(run_id=run_id)
        )

    wait_for("training to start", training)
    asked = time.monotonic()
    cancelled = cluster.cli("jobs", "cancel", str(job_id))
    assert cancelled.returncode == 0, cancelled.stderr
    assert "next heartbeat" in cancelled.stdout
    wait_for("the job to be cancelled", lambda: cluster.jobs.get(job_id=job_id).status != "running")
    took = time.monotonic() - asked
    assert finish(runner) == 0, cluster.log(f"{unique_name}-a")
    job = cluster.jobs.get(job_id=job_id)
    assert (job.status, job.failure_reason) == ("cancelled", "cancelled")
    assert took < 3 + 5, f"cancel took {took:.1f} s (heartbeat every 1 s)"
    run_id = cluster.run_of(job_id, unique_name)
    assert run_id is not None
    assert cluster.show_run(run_id)["run"]["status"] == "cancelled"


def test_job_out_of_attempts_fails_with_reason(
    cluster: Cluster, tiny_model_dir: Path, unique_name: str
) -> None:
    spec = spec_for(
        cluster.root / "exp",
        tiny_model_dir,
        unique_name,
        max_steps=100_000,
        save_every_steps=100_000,
    )
    job_id = cluster.submit(spec, "--max-attempts", "1")
    doomed = cluster.runner(f"{unique_name}-a", "--once", "--lease-seconds", "3")
    wait_for("the claim", lambda: cluster.jobs.get(job_id=job_id).status == "running")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    time.sleep(3.5)  # the lease expires
    idle = cluster.runner(f"{unique_name}-b", "--once", "--poll-wait", "1")
    assert finish(idle) == 0, cluster.log(f"{unique_name}-b")
    assert "no job for this runner" in cluster.log(f"{unique_name}-b")
    job = json.loads(cluster.cli("jobs", "show", str(job_id), "--json").stdout)
    assert (job["status"], job["failure_reason"]) == ("failed", "lease expired 1 times")


def test_a_failing_run_fails_its_job_with_the_reason_and_no_retry(
    cluster: Cluster, tiny_model_dir: Path, unique_name: str
) -> None:
    spec = spec_for(cluster.root / "exp", tiny_model_dir, unique_name)
    train = cluster.root / "exp" / "train.jsonl"
    train.write_text(train.read_text() + '{"input_text": "no output"}\n')
    job_id = cluster.submit(spec)
    runner = cluster.runner(f"{unique_name}-a", "--once")
    assert finish(runner) == 0, cluster.log(f"{unique_name}-a")
    job = cluster.jobs.get(job_id=job_id)
    assert (job.status, job.attempts) == ("failed", 1)
    assert job.failure_reason and "train.jsonl:25" in job.failure_reason
    shown = cluster.cli("jobs", "show", str(job_id))
    assert "train.jsonl:25" in shown.stdout


def test_runner_without_the_jobs_labels_does_not_claim_it(
    cluster: Cluster, tiny_model_dir: Path, unique_name: str
) -> None:
    spec = spec_for(cluster.root / "exp", tiny_model_dir, unique_name)
    done = cluster.cli("submit", str(spec), "--labels", f"gpu,{cluster.label}")
    job_id = int(done.stdout)
    other = cluster.runner(f"{unique_name}-a", "--once", "--poll-wait", "1", labels=cluster.label)
    assert finish(other) == 0, cluster.log(f"{unique_name}-a")
    assert cluster.jobs.get(job_id=job_id).status == "queued"
    assert cluster.cli("jobs", "cancel", str(job_id)).stdout.strip() == f"job {job_id} cancelled"


def test_cli_needs_the_service_and_a_valid_token(cluster: Cluster, tmp_path: Path) -> None:
    missing = evalctl("jobs", "list", home=tmp_path / "home")
    assert missing.returncode == 2 and "EVALCTL_URL" in missing.stderr
    rejected = cluster.cli("jobs", "list", token="evk_not-a-token")
    assert rejected.returncode == 2
    assert rejected.stderr.startswith("error: token rejected:"), rejected.stderr
    assert "Traceback" not in rejected.stderr


@pytest.mark.postgres
def test_two_runners_drain_a_queue_on_postgres(
    tmp_path: Path, tiny_model_dir: Path, unique_name: str
) -> None:
    from tests.service.conftest import _database

    with _database("postgres", tmp_path) as url:
        server = start_server(tmp_path / "server", url, storage_roots=[tmp_path, tiny_model_dir])
        try:
            cluster = Cluster(server, tmp_path, f"pool-{unique_name}")
            spec = spec_for(tmp_path / "exp", tiny_model_dir, unique_name, max_steps=2)
            job_ids = [cluster.submit(spec) for _ in range(3)]
            runners = [cluster.runner(f"{unique_name}-{i}", "--poll-wait", "2") for i in (0, 1)]
            try:
                wait_for(
                    "the queue to drain",
                    lambda: all(
                        cluster.jobs.get(job_id=j).status in ("succeeded", "failed")
                        for j in job_ids
                    ),
                    timeout=300,
                )
            finally:
                for runner in runners:
                    runner.terminate()
                    runner.wait(timeout=30)
            jobs = [cluster.jobs.get(job_id=j) for j in job_ids]
            assert [(j.status, j.attempts) for j in jobs] == [("succeeded", 1)] * 3, jobs
            runs = cluster.registry.list_runs(experiment=unique_name)
            assert runs.count == 3
            assert all(r.status == "succeeded" for r in runs.data)
            took = [cluster.log(f"{unique_name}-{i}").count("created run") for i in (0, 1)]
            assert sum(took) == 3
        finally:
            server.stop()


def test_eval_remote_queues_an_eval_job_that_a_runner_runs(
    cluster: Cluster, tiny_model_dir: Path, unique_name: str
) -> None:
    spec = spec_for(cluster.root / "exp", tiny_model_dir, unique_name, max_steps=2)
    train_job = cluster.submit(spec)
    assert finish(cluster.runner(f"{unique_name}-t", "--once")) == 0
    run_id = cluster.jobs.get(job_id=train_job).run_id
    before = len(cluster.show_run(run_id)["evaluations"])

    queued = cluster.cli("eval", f"run:{run_id}", "--spec", str(spec), "--remote",
                         "-e", "perplexity")  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    eval_job = int(queued.stdout.strip())
    job = cluster.jobs.get(job_id=eval_job)
    assert job.kind == "eval" and len(job.payload["checkpoint_ids"]) == 2

    assert finish(cluster.runner(f"{unique_name}-e", "--once", labels="")) == 0
    assert cluster.jobs.get(job_id=eval_job).status == "succeeded"
    after = cluster.show_run(run_id)["evaluations"]
    assert len(after) == before + 2  # perplexity again on step 0 and step 2
    assert {e["evaluator"] for e in after[before:]} == {"perplexity"}


def test_multi_gpu_job_is_launched_with_accelerate(
    cluster: Cluster, tiny_model_dir: Path, unique_name: str
) -> None:
    # No GPUs here: accelerate's --multi_gpu on a CUDA-less machine starts its processes
    # on CPU over gloo, which exercises the real launch path end to end.
    spec = spec_for(cluster.root / "exp", tiny_model_dir, unique_name)
    data = yaml.safe_load(spec.read_text())
    data["training"]["device"] = "cpu"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    job_id = cluster.submit(spec, "--gpus", "2")
    runner = cluster.runner(f"{unique_name}-ddp", "--once", "--gpus", "2")
    assert finish(runner, timeout=400) == 0, cluster.log(f"{unique_name}-ddp")
    job = cluster.jobs.get(job_id=job_id)
    assert job.status == "succeeded", (job.failure_reason, cluster.log(f"{unique_name}-ddp"))
    assert "accelerate" in cluster.log(f"{unique_name}-ddp")
    info = cluster.show_run(job.run_id)
    steps = [c["step"] for c in info["checkpoints"]]
    assert steps == [0, 2, 4]  # rank 0 alone records: no duplicates
    assert len(info["evaluations"]) == 6
