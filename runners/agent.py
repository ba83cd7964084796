"""The runner agent (`evalctl runner start`): pull jobs from `evalctl serve` and run them.

Owns the runner's side of the queue protocol: register (which binds the runner's name to
its token and gives back any job an earlier run of this agent still held), long-poll
claim, running the job under its lease (`runners.lease`: heartbeats, log shipping,
cancel), then finishing it as succeeded, failed (with the reason) or cancelled; an
outcome the service did not answer is sent again, under the same key, before the next
claim, and one it refused is logged (the runner keeps going). A train job runs
`runners.run.execute_run` in this process through a `RemoteRegistry`; an eval job runs
`runners.evaluate.evaluate_recorded`.

Storage is shared (NFS or similar, mounted at the same path everywhere):
- a job's spec text is the one queued (a copy goes to `WORK/jobs/<id>/spec.yaml`), but
  its relative paths (data, evaluator inputs) resolve against the folder the spec was
  submitted from, which runners must see at the same path; or use absolute paths;
- checkpoints go to `WORK/runs/<run id>/checkpoints` and the registry records those
  paths, so runners that should resume each other's jobs need the same `--work-dir`.
Delivery is at-least-once: a runner that dies stops heartbeating, its lease expires (or
it is given back at once when the runner starts again under its name), the job is queued
again and the next runner resumes the job's run from its last recorded checkpoint
(verified by sha256; re-recording a checkpoint is idempotent). One runner runs one job at
a time: the service answers its claim with the job it still holds, if any.
It does not schedule or match labels (the service does) nor train (`runners.run`).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runners.lease import Lease, LogShipper, Tee
from service.errors import EvalctlError
from service.jobs_client import JobsClient
from service.models import JobPublic, RunPublic
from service.remote import ApiClient, RemoteRegistry, ServiceUnavailableError

log = logging.getLogger("evalctl.runner")
#: The run tag that ties a run to the job that created it (found again after a re-queue).
JOB_TAG = "evalctl.job_id"


@dataclass
class AgentConfig:
    """How a runner identifies itself and paces its calls."""

    name: str = field(default_factory=socket.gethostname)
    labels: list[str] = field(default_factory=list)
    gpus: int = 0
    work_dir: Path = Path(".evalctl")
    lease_seconds: float = 30.0
    poll_wait: float = 10.0
    once: bool = False


@dataclass
class Outcome:
    """A job's outcome as reported; one the service did not answer is sent again as is."""

    job_id: int
    status: str
    reason: str | None
    run_id: int | None
    retryable: bool
    key: str = field(default_factory=lambda: uuid.uuid4().hex)  # its Idempotency-Key


class Agent:
    """One runner: registers, claims jobs one at a time and runs them to an outcome."""

    def __init__(self, config: AgentConfig, *, url: str, token: str, retry_for: float = 60.0):
        self.config = config
        self.url, self.token = url, token
        self.jobs = JobsClient(ApiClient(url, token, retry_for=retry_for))
        self.registry = RemoteRegistry(url, token, retry_for=retry_for)
        self.runner_id = 0
        #: The last outcome the service did not answer, sent again before the next claim.
        self.unreported: Outcome | None = None

    def serve(self) -> int:
        """Register, then run jobs until interrupted (or one job, or none, with `once`)."""
        cfg = self.config
        runner = self.jobs.register_runner(name=cfg.name, labels=cfg.labels, gpus=cfg.gpus)
        self.runner_id = runner.id
        log.info(
            "runner %s (id %s) labels=%s gpus=%s polling %s",
            cfg.name, runner.id, ",".join(cfg.labels) or "-", cfg.gpus, self.url,
        )  # fmt: skip
        done = 0
        while True:
            self.report_unreported()
            job = self.jobs.claim(
                runner_id=self.runner_id,
                labels=cfg.labels,
                gpus=cfg.gpus,
                lease_seconds=cfg.lease_seconds,
                wait=cfg.poll_wait,
            )
            if job is None:
                self._alive(current_job_id=None)
                if cfg.once:
                    log.info("no job for this runner within %g s", cfg.poll_wait)
                    return done
                continue
            self.run_job(job)
            done += 1
            if cfg.once:
                self.report_unreported()
                return done

    def run_job(self, job: JobPublic) -> str:
        """Run one claimed job and report its outcome; return the final status sent."""
        log.info("job %s: %s, attempt %s of %s", job.id, job.kind, job.attempts, job.max_attempts)
        self._alive(current_job_id=job.id)
        shipper = LogShipper()
        root = logging.getLogger()
        root.addHandler(shipper)
        status, reason, retryable = "succeeded", None, False
        try:
            with Lease(self, job, shipper) as lease:
                try:
                    self._execute(job, lease, shipper)
                except KeyboardInterrupt:
                    self._finish(lease, "failed", "runner stopped", retryable=True)
                    raise
                except Exception as exc:
                    status, reason, retryable = self._failure(exc, lease)
                if lease.cancelled:
                    status, reason, retryable = "cancelled", "cancelled", False
                log.info("job %s: %s%s", job.id, status, f" ({reason})" if reason else "")
            self._finish(lease, status, reason, retryable=retryable)
        finally:
            root.removeHandler(shipper)
            self._alive(current_job_id=None)
        return status

    def report_unreported(self) -> None:
        """Send again, under its key, the last outcome the service did not answer (if any)."""
        if self.unreported is not None:
            self._report(self.unreported)

    def _alive(self, *, current_job_id: int | None) -> None:
        try:
            self.jobs.runner_heartbeat(runner_id=self.runner_id, current_job_id=current_job_id)
        except EvalctlError as exc:  # only the runner listing shows it: not worth dying for
            log.warning("runner heartbeat failed: %s", exc)

    def _failure(self, exc: Exception, lease: Lease) -> tuple[str, str, bool]:
        from runners.run import RunCancelled, failure_reason

        if isinstance(exc, RunCancelled) or lease.cancelled:
            return "cancelled", "cancelled", False
        # A user-fixable problem fails the same way on every runner: no retry. Anything
        # else (a crash, a device error) may be the machine's: another attempt may pass.
        retryable = not isinstance(exc, EvalctlError)
        log.error("job %s failed: %s", lease.job.id, failure_reason(exc), exc_info=exc)
        return "failed", failure_reason(exc), retryable

    def _finish(self, lease: Lease, status: str, reason: str | None, *, retryable: bool) -> None:
        job = lease.job
        if lease.lost:
            log.warning("job %s: lease lost; not reporting (another runner has it)", job.id)
            return
        lease.flush()
        self._report(Outcome(job.id, status, reason, lease.run_id, retryable))

    def _report(self, outcome: Outcome) -> None:
        self.unreported = None
        try:
            self.jobs.finish(
                job_id=outcome.job_id,
                runner_id=self.runner_id,
                status=outcome.status,
                failure_reason=outcome.reason,
                run_id=outcome.run_id,
                retryable=outcome.retryable,
                finish_key=outcome.key,
            )
        except ServiceUnavailableError as exc:
            log.warning(
                "job %s: the service did not answer the %s report (%s); sending it again "
                "before the next claim", outcome.job_id, outcome.status, exc,
            )  # fmt: skip
            self.unreported = outcome
        except (EvalctlError, ValueError) as exc:
            # Refused (the lease ended, another runner has the job, a 422): sending it
            # again cannot help, and the runner must live on to run the next job.
            log.warning("job %s: could not report %s: %s", outcome.job_id, outcome.status, exc)

    def _execute(self, job: JobPublic, lease: Lease, shipper: LogShipper) -> None:
        from rich.console import Console

        from runners.run import RunContext
        from service.spec_loader import load_spec_text

        folder = self.config.work_dir / "jobs" / str(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spec.yaml").write_text(job.spec_text, encoding="utf-8")
        # Shared storage: relative paths resolve where the spec was submitted from.
        anchor = Path(job.spec_path) if job.spec_path else folder / "spec.yaml"
        spec = load_spec_text(job.spec_text, anchor)
        console = Console(file=Tee(sys.stdout, shipper), highlight=False, width=120)  # type: ignore[arg-type]
        ctx = RunContext(
            spec=spec,
            registry=self.registry,
            settings=self._settings(),
            console=console,
            stop=lease.stop,
        )
        if job.kind == "eval":
            self._evaluate(job, ctx)
        else:
            self._train(job, ctx, lease)

    def _train(self, job: JobPublic, ctx: Any, lease: Lease) -> None:
        from runners.run import create_run, execute_run

        run = self._existing_run(job, ctx)
        resume = run is not None
        if run is None:
            run = create_run(ctx, tags={JOB_TAG: str(job.id)})
            log.info("job %s: created run %s", job.id, run.id)
        else:
            log.info("job %s: resuming run %s from its last recorded checkpoint", job.id, run.id)
        lease.run_id = run.id
        self.jobs.set_run(job_id=job.id, runner_id=self.runner_id, run_id=run.id)
        if job.gpus > 1:
            self._launch(job, ctx, run.id, lease)
            return
        execute_run(ctx, run, resume=resume)

    def _launch(self, job: JobPublic, ctx: Any, run_id: int, lease: Lease) -> None:
        """Train on several GPUs with `accelerate launch`: one process per GPU, rank 0 records.

        Every rank runs `evalctl run SPEC --resume RUN --remote`, so all attach to the run
        this job created (or resumes) and report through the service.
        """
        import subprocess

        from runners.launch import build_launch_command
        from runners.run import RunCancelled
        from runners.sources import pick_device

        spec_path = Path(job.spec_path) if job.spec_path else self.config.work_dir / "spec.yaml"
        distributed = ctx.spec.training.distributed
        # As the single-process Trainer: bf16 only on CUDA. CPU ranks under bf16 autocast
        # died with SIGILL on a Xeon with AMX-BF16 (a CPU bf16 path the host refused).
        on_cuda = pick_device(ctx.spec.training.device) == "cuda"
        bf16 = on_cuda and ctx.spec.base_model.dtype in ("auto", "bfloat16")
        plan = build_launch_command(
            spec_path=spec_path,
            run_id=run_id,
            gpus=job.gpus,
            strategy=distributed.strategy,
            work_dir=self.config.work_dir / "jobs" / str(job.id),
            options=distributed,
            mixed_precision="bf16" if bf16 else "no",
            extra_env={"EVALCTL_URL": self.url, "EVALCTL_TOKEN": self.token},
        )
        argv = [*plan.argv, "--remote"]
        log.info("job %s: %s", job.id, " ".join(argv))
        proc = subprocess.Popen(argv, env={**os.environ, **plan.env})
        while proc.poll() is None:
            if lease.stop.wait(1.0):  # cancelled or lease lost: stop every rank
                proc.terminate()
                proc.wait(timeout=60)
                raise RunCancelled(f"job {job.id} stopped")
        if proc.returncode != 0:
            raise EvalctlError(f"accelerate launch exited {proc.returncode} (see the job log)")

    def _existing_run(self, job: JobPublic, ctx: Any) -> RunPublic | None:
        """Return the run an earlier attempt of this job created, if any."""
        if job.run_id is not None:
            return self.registry.get_run(ref=str(job.run_id))
        if job.attempts <= 1:
            return None
        # Without a recorded link (older service), find the run by its job tag.
        offset, experiment = 0, ctx.spec.experiment_name
        while True:
            try:
                page = self.registry.list_runs(experiment=experiment, limit=100, offset=offset)
            except EvalctlError:
                return None
            for run in page.data:
                if run.tags.get(JOB_TAG) == str(job.id):
                    return run
            offset += len(page.data)
            if not page.data or offset >= page.count:
                return None

    def _evaluate(self, job: JobPublic, ctx: Any) -> None:
        from runners.evaluate import evaluate_recorded

        ids = [int(i) for i in job.payload.get("checkpoint_ids", [])]
        if not ids and job.run_id is not None:
            ids = [c.id for c in self.registry.list_checkpoints(run_id=job.run_id)]
        recorded = evaluate_recorded(
            registry=self.registry,
            settings=ctx.settings,
            spec=ctx.spec,
            checkpoint_ids=ids,
            evaluator_names=job.payload.get("evaluators") or None,
            console=ctx.console,
        )
        failed = [e for e in recorded if e.error]
        if failed:
            raise EvalctlError(f"{len(failed)} evaluations failed: {failed[0].error}")

    def _settings(self) -> Any:
        from service.remote import remote_tracking
        from service.settings import get_settings

        # MLflow: the service's /mlflow mount (same token) unless EVALCTL_MLFLOW_URI is set.
        settings = remote_tracking(get_settings(), self.url, self.token)
        return settings.model_copy(update={"home": self.config.work_dir})
