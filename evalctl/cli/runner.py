"""`evalctl runner start`: run a runner agent that pulls jobs from `evalctl serve`.

Owns the command: the agent's name, labels, GPUs (detected with torch when not given),
work folder and lease timing; it needs a `runner` token in EVALCTL_TOKEN. The agent itself
is `runners.agent`; the queue is the service's.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from evalctl.cli._common import quiet_libraries, service_address, split_labels

app = typer.Typer(help="Run a runner agent that pulls jobs.", no_args_is_help=True)


@app.command("start")
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

    from runners.agent import Agent, AgentConfig
    from service.settings import get_settings

    url, token = service_address()
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    quiet_libraries()
    config = AgentConfig(
        name=name or socket.gethostname(),
        labels=split_labels(labels),
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
