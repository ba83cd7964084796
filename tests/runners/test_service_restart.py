"""A runner keeps its job while the service is SIGKILLed mid-write and restarted.

A real `evalctl runner start` trains the tiny model through a loopback proxy
(`tests.faultproxy`) in front of a real `evalctl serve`. When the runner records its
third evaluation (the first one of step 2, mid-training), the proxy forwards it, the
service commits it, and then the service is SIGKILLed before its answer gets back; the
runner is left retrying against a dead service. The service is started again on the same
port and database. The job must finish succeeded on its first attempt, with each
checkpoint and each (checkpoint, evaluator) evaluation recorded exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from service.jobs_client import JobsClient
from service.models import JobCreate
from service.remote import ApiClient, RemoteRegistry
from tests.faultproxy import fault_proxy
from tests.helpers import LiveServer, free_port, start_server
from tests.runners.test_agent import RUNNER_SCOPES, finish, spec_for, wait_for


def serve(home: Path, port: int) -> LiveServer:
    """Start `evalctl serve` on `port` over the SQLite registry under `home`."""
    # pytest's basetemp holds the runner's work dir and the tiny model: their shared volume.
    return start_server(home, port=port, storage_roots=[home.parent.parent])


def test_job_survives_a_service_killed_mid_write(
    tmp_path: Path, tiny_model_dir: Path, unique_name: str
) -> None:
    port = free_port()
    home, work = tmp_path / "server", tmp_path / "work"
    servers = [serve(home, port)]
    killed = threading.Event()

    def kill_service() -> None:
        servers[-1].process.send_signal(signal.SIGKILL)
        servers[-1].process.wait()
        killed.set()

    label = f"pool-{unique_name}"
    admin = servers[0].admin_token
    runner_token = servers[0].make_token(*RUNNER_SCOPES, name="runner")
    spec = spec_for(tmp_path / "exp", tiny_model_dir, unique_name, max_steps=6)
    jobs = JobsClient(ApiClient(servers[0].url, admin, retry_for=60))
    job_in = JobCreate(
        kind="train", spec_text=spec.read_text(), spec_path=str(spec), labels=[label], gpus=0
    )
    job_id = jobs.enqueue(job_in=job_in).id

    with fault_proxy(servers[0].url) as proxy:
        cut = proxy.fail("POST", "/api/v1/evaluations", skip=2, after=kill_service)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVALCTL_")}
        env |= {
            "EVALCTL_URL": proxy.url,
            "EVALCTL_TOKEN": runner_token,
            "EVALCTL_HOME": str(tmp_path / "runner"),
            "EVALCTL_RETRY_SECONDS": "120",
        }
        command = [sys.executable, "-m", "evalctl", "runner", "start", "--name", unique_name,
                   "--labels", label, "--gpus", "0", "--work-dir", str(work),
                   "--once"]  # fmt: skip
        log = tmp_path / "runner.log"
        with log.open("w") as out:
            runner = subprocess.Popen(command, env=env, stdout=out, stderr=out, text=True)
        try:
            wait_for("the kill", lambda: killed.is_set() or runner.poll() is not None)
            assert killed.is_set(), log.read_text()
            servers.append(serve(home, port))  # same port, same database
            assert finish(runner) == 0, log.read_text()
            assert cut.hits == 1
            # The runner did reach the dead service: its retries got the proxy's 502s.
            assert any(status == 502 for _, _, status in proxy.seen)
            check_recorded_once(servers[-1], admin, job_id, unique_name, log)
        finally:
            if runner.poll() is None:
                runner.kill()
            servers[-1].stop()


def check_recorded_once(
    server: LiveServer, admin: str, job_id: int, experiment: str, log: Path
) -> None:
    job = JobsClient(ApiClient(server.url, admin, retry_for=10)).get(job_id=job_id)
    assert (job.status, job.attempts) == ("succeeded", 1), (job, log.read_text())
    assert job.run_id is not None
    registry = RemoteRegistry(server.url, admin, retry_for=10)
    steps = [c.step for c in registry.list_checkpoints(run_id=job.run_id)]
    assert steps == [0, 2, 4, 6]
    evaluations = registry.list_evaluations(run_id=job.run_id)
    pairs = Counter((e.checkpoint_id, e.evaluator) for e in evaluations)
    assert len(pairs) == 2 * len(steps)
    assert set(pairs.values()) == {1}, f"recorded twice: {pairs}"
    assert registry.get_run(ref=str(job.run_id)).status == "succeeded"
    assert len(registry.list_runs(experiment=experiment).data) == 1
