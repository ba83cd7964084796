"""`evalctl submit`, `evalctl jobs ...` and `evalctl runner start`: the job queue from the CLI.

Every command talks to `evalctl serve` at EVALCTL_URL with EVALCTL_TOKEN (submit and
cancel need a `write` token, `runner start` a `runner` token, listing a `read` one). A spec
is validated here before it is queued; its relative paths resolve on the runner against
the folder it was submitted from, so runners need that folder on shared storage (see
`runners.agent`). The queue itself lives in the service (`service.queue`).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any

import typer

jobs_app = typer.Typer(help="List, inspect and cancel queued jobs.", no_args_is_help=True)
runner_app = typer.Typer(help="Run a runner agent that pulls jobs.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `evalctl` app."""
    app.command("submit")(submit)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(runner_app, name="runner")


def _service() -> tuple[str, str]:
    from evalctl.cli import fail
    from service.remote import remote_settings

    found = remote_settings()
    if found is None:
        fail("set EVALCTL_URL and EVALCTL_TOKEN to the `evalctl serve` URL and an API token")
    return found


def _jobs() -> Any:
    from service.jobs_client import JobsClient
    from service.remote import ApiClient
    from service.settings import get_settings

    url, token = _service()
    return JobsClient(ApiClient(url, token, retry_for=get_settings().retry_seconds))


def _labels(value: str | None) -> list[str]:
    return [label.strip() for label in (value or "").split(",") if label.strip()]


def submit(
    spec: Annotated[Path, typer.Argument(help="The experiment spec (YAML).")],
    gpus: Annotated[
        int, typer.Option("--gpus", min=0, help="GPUs the job needs (0: any runner, CPU).")
    ] = 0,
    labels: Annotated[
        str | None, typer.Option("--labels", help="Labels the runner must all have: gpu,h100.")
    ] = None,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", min=1, help="Claims before the job fails.")
    ] = 3,
) -> None:
    """Queue a training job for a spec on `evalctl serve`; print the job id."""
    import sys

    from service.models import JobCreate
    from service.spec_loader import SpecError, load_spec

    client = _jobs()
    try:
        loaded = load_spec(spec)
    except SpecError as err:
        print(str(err), file=sys.stderr)
        raise typer.Exit(2) from None
    job = client.enqueue(
        job_in=JobCreate(
            kind="train",
            spec_text=loaded.text,
            spec_path=str(spec.resolve()),
            gpus=gpus,
            labels=_labels(labels),
            max_attempts=max_attempts,
        )
    )
    print(job.id)
    wanted = f" for runners with {','.join(job.labels)}" if job.labels else ""
    typer.echo(f"queued train job {job.id} ({loaded.name}){wanted}", err=True)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many jobs.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List jobs, newest first."""
    from evalctl.cli import _console, _dump, fail

    if status is not None and status not in JOB_STATUSES:
        fail(f"--status: unknown status '{status}' (one of {', '.join(JOB_STATUSES)})")
    page = _jobs().list_jobs(status=status, limit=limit)
    if as_json:
        _dump({"data": [j.model_dump(mode="json") for j in page.data], "count": page.count})
        return
    from rich.table import Table

    table = Table("id", "kind", "status", "run", "attempts", "labels", "gpus", "created", "reason")
    for j in page.data:
        table.add_row(
            str(j.id),
            j.kind,
            j.status + (" (cancel requested)" if j.cancel_requested else ""),
            str(j.run_id or "-"),
            f"{j.attempts}/{j.max_attempts}",
            ",".join(j.labels) or "-",
            str(j.gpus),
            f"{j.created_at:%Y-%m-%d %H:%M:%S}",
            j.failure_reason or "",
        )
    _console().print(table)
    print(f"{len(page.data)} of {page.count} jobs")


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    logs: Annotated[bool, typer.Option("--logs", help="Print the job's log too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show a job: status, attempts, lease, run, failure reason (and its log)."""
    from evalctl.cli import _dump

    client = _jobs()
    job = client.get(job_id=job_id)
    lines = _all_logs(client, job_id) if logs else []
    if as_json:
        data = job.model_dump(mode="json", exclude={"spec_text"})
        if logs:
            data["logs"] = [line.line for line in lines]
        _dump(data)
        return
    print(
        f"job {job.id} ({job.kind}): {job.status}" + (" (cancel requested)" * job.cancel_requested)
    )
    print(f"  attempts: {job.attempts} of {job.max_attempts}")
    print(f"  run: {job.run_id or '-'}  spec: {job.spec_path or '-'}")
    print(f"  needs: {job.gpus} GPU(s), labels {','.join(job.labels) or '-'}")
    if job.lease_owner is not None:
        print(f"  leased to runner {job.lease_owner} until {job.lease_expires_at:%H:%M:%S}")
    if job.failure_reason:
        print(f"  reason: {job.failure_reason}")
    for line in lines:
        print(line.line)


def _all_logs(client: Any, job_id: int) -> list[Any]:
    lines: list[Any] = []
    while True:
        page = client.logs(job_id=job_id, after_id=lines[-1].id if lines else 0)
        lines.extend(page)
        if len(page) < 1000:
            return lines


@jobs_app.command("cancel")
def jobs_cancel(job_id: Annotated[int, typer.Argument(help="The job's id.")]) -> None:
    """Cancel a job: a queued one at once, a running one at its runner's next heartbeat."""
    job = _jobs().cancel(job_id=job_id)
    if job.status == "cancelled":
        print(f"job {job.id} cancelled")
    else:
        print(f"job {job.id} {job.status}: its runner stops it at the next heartbeat")


@runner_app.command("start")
def runner_start(
    name: Annotated[
        str | None, typer.Option("--name", help="Runner name [default: the host name].")
    ] = None,
    labels: Annotated[
        str | None, typer.Option("--labels", help="What this runner offers, e.g. gpu,h100.")
    ] = None,
    gpus: Annotated[
        int | None, typer.Option("--gpus", min=0, help="GPUs offered [default: detected].")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run at most one job, then exit (none: after a poll).")
    ] = False,
    work_dir: Annotated[
        Path | None,
        typer.Option("--work-dir", help="Shared folder for checkpoints [default: EVALCTL_HOME]."),
    ] = None,
    lease_seconds: Annotated[
        float, typer.Option("--lease-seconds", min=3, help="Lease length; renewed every third.")
    ] = 30.0,
    poll_wait: Annotated[
        float, typer.Option("--poll-wait", min=0, max=60, help="Long-poll this many seconds.")
    ] = 10.0,
) -> None:
    """Register a runner and run queued jobs it can take (labels, GPUs) until stopped."""
    import logging

    from evalctl.cli import _quiet_libraries
    from runners.agent import Agent, AgentConfig
    from service.settings import get_settings

    url, token = _service()
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    _quiet_libraries()
    config = AgentConfig(
        name=name or socket.gethostname(),
        labels=_labels(labels),
        gpus=_detect_gpus() if gpus is None else gpus,
        work_dir=(work_dir or settings.home_dir).expanduser().resolve(),
        lease_seconds=lease_seconds,
        poll_wait=poll_wait,
        once=once,
    )
    config.work_dir.mkdir(parents=True, exist_ok=True)
    agent = Agent(config, url=url, token=token, retry_for=settings.retry_seconds)
    try:
        agent.serve()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _detect_gpus() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # no torch, no driver: a CPU runner
        return 0
