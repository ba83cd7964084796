"""`evalctl submit` and `evalctl jobs ...`: the job queue of `evalctl serve` from the CLI.

Every command talks to `evalctl serve` at EVALCTL_URL with EVALCTL_TOKEN (submit and
cancel need a `write` token, listing a `read` one). A spec is validated here before it is
queued; its relative paths resolve on the runner against the folder it was submitted
from, so runners need that folder on shared storage (see `runners.agent`). The queue
itself lives in the service (`service.crud.jobs`); the runner agent is `evalctl runner`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from evalctl.cli._common import JsonFlag, dump, fail, jobs_client, split_labels
from evalctl.cli._common import console as _console

app = typer.Typer(help="List, inspect and cancel queued jobs.", no_args_is_help=True)

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


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

    client = jobs_client()
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
            labels=split_labels(labels),
            max_attempts=max_attempts,
        )
    )
    print(job.id)
    wanted = f" for runners with {','.join(job.labels)}" if job.labels else ""
    typer.echo(f"queued train job {job.id} ({loaded.name}){wanted}", err=True)


@app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many jobs.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List jobs, newest first."""
    if status is not None and status not in JOB_STATUSES:
        fail(f"--status: unknown status '{status}' (one of {', '.join(JOB_STATUSES)})")
    page = jobs_client().list_jobs(status=status, limit=limit)
    if as_json:
        dump({"data": [j.model_dump(mode="json") for j in page.data], "count": page.count})
        return
    from evalctl.cli.render import jobs_table

    _console().print(jobs_table(page.data))
    print(f"{len(page.data)} of {page.count} jobs")


@app.command("show")
def jobs_show(
    job_id: Annotated[int, typer.Argument(help="The job's id.")],
    logs: Annotated[bool, typer.Option("--logs", help="Print the job's log too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show a job: status, attempts, lease, run, failure reason (and its log)."""
    client = jobs_client()
    job = client.get(job_id=job_id)
    lines = _all_logs(client, job_id) if logs else []
    if as_json:
        data = job.model_dump(mode="json", exclude={"spec_text"})
        if logs:
            data["logs"] = [line.line for line in lines]
        dump(data)
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


@app.command("cancel")
def jobs_cancel(job_id: Annotated[int, typer.Argument(help="The job's id.")]) -> None:
    """Cancel a job: a queued one at once, a running one at its runner's next heartbeat."""
    job = jobs_client().cancel(job_id=job_id)
    if job.status == "cancelled":
        print(f"job {job.id} cancelled")
    else:
        print(f"job {job.id} {job.status}: its runner stops it at the next heartbeat")
