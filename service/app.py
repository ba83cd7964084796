"""The registry service: `create_app` builds the FastAPI app that `evalctl serve` runs.

It wires settings, the database engines, the `/api/v1` routers (`service.api.routes`,
whose docstring maps each `Registry` method to its route), bearer-token auth
(`service.api.auth`), the request limits (`service.api.limits`: body size, and the token
checked before an API body is read), JSON error handlers
(`service.api.handlers`), the health probes and MLflow's tracking server under `/mlflow`
(`service.api.mlflow_mount`), and the web dashboard at `/` (`dashboards.web.mount`,
imported inside `create_app` only, so the API has no import-time dependency on the UI).
On start it brings the schema to head (unless `migrate=False`) and, when no API token
exists yet, writes an admin token to `EVALCTL_HOME/admin-token` (mode 0600). It holds no
SQL and no route logic of its own.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import anyio.to_thread
from fastapi import APIRouter, FastAPI

from service import db
from service.api import handlers
from service.api.auth import bootstrap_admin_token
from service.api.limits import BodySizeLimit, TokenFirst
from service.api.mlflow_mount import MlflowMount
from service.api.routes import ROUTERS, health
from service.settings import Settings, get_settings

logger = logging.getLogger("evalctl.service")
API_PREFIX = "/api/v1"


def _version() -> str:
    # From the installed metadata: the service imports nothing of the CLI package.
    try:
        return version("evalctl")
    except PackageNotFoundError:
        return "0+unknown"


def create_app(
    settings: Settings | None = None, *, migrate: bool = True, dashboard: bool = True
) -> FastAPI:
    """Build the service app; on start it migrates (unless told not to) and bootstraps."""
    settings = settings or get_settings()
    url = db.normalize_url(settings.db_url)
    engine = db.get_engine(url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(_start, settings, url, migrate)
        yield

    app = FastAPI(
        title="evalctl registry",
        version=_version(),
        description="Runs, checkpoints, evaluations, jobs and runners of evalctl.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.db_url = url
    app.state.engine = engine
    # Read-then-write requests take SQLite's write lock at BEGIN (see service.db).
    app.state.write_engine = engine.execution_options(**db.IMMEDIATE)
    handlers.install(app)
    app.include_router(health.router)
    api = APIRouter(prefix=API_PREFIX)
    for router in ROUTERS:
        api.include_router(router)
    app.include_router(api)
    app.mount("/mlflow", MlflowMount(settings, engine), name="mlflow")
    if dashboard:
        from dashboards.web import mount as mount_dashboard

        mount_dashboard(app)
    app.add_middleware(TokenFirst, prefix=API_PREFIX, engine=engine)
    app.add_middleware(BodySizeLimit, max_bytes=settings.server.max_body_bytes)
    return app


def _start(settings: Settings, url: str, migrate: bool) -> None:
    if migrate:
        db.ensure_schema(url)
    if not db.is_up_to_date(url):
        logger.warning("database schema is not at head; /readyz answers 503 until it is")
        return
    bootstrap_admin_token(db.get_engine(url), settings.admin_token_path)
