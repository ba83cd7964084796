"""`evalctl serve`: the registry API, the web dashboard and MLflow under uvicorn.

Owns the command: bind address and port (from the options, else the settings), schema
upgrade on start, and the start-up lines on stderr. The app is `service.app.create_app`;
uvicorn, FastAPI and the service modules are imported inside the command. API tokens are
`evalctl tokens`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            "--host", help="Address to listen on (default: EVALCTL_SERVER__HOST or 127.0.0.1)."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default: EVALCTL_SERVER__PORT or 8080).")
    ] = None,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not upgrade the database schema on start.")
    ] = False,
) -> None:
    """Run the registry API, the web dashboard at / and MLflow under /mlflow, with uvicorn."""
    import uvicorn

    from service.app import create_app
    from service.settings import get_settings

    settings = get_settings()
    if host:  # the dashboard's default trusted hosts include the bind address
        settings.server.host = host
    app = create_app(settings, migrate=not no_migrate)
    bind_host = settings.server.host
    bind_port = settings.server.port if port is None else port
    shown = "localhost" if bind_host in {"0.0.0.0", "::"} else bind_host
    print(
        f"evalctl: dashboard at http://{shown}:{bind_port}/ (log in with an API token), "
        f"API at /api/v1, MLflow at /mlflow",
        file=sys.stderr,
        flush=True,
    )
    if "*" in settings.server.dashboard_hosts():
        print(
            "evalctl: the dashboard answers to any Host header; set "
            "EVALCTL_SERVER__TRUSTED_HOSTS to the names users reach it by (DNS rebinding)",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.run(app, host=bind_host, port=bind_port, log_level="info")
