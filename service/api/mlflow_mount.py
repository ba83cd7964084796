"""MLflow's tracking server inside the service, under `/mlflow`, behind the same tokens.

Runners need one URL: `MLFLOW_TRACKING_URI=http://host:port/mlflow` with
`MLFLOW_TRACKING_TOKEN=<evalctl token>` (MLflow clients send it as a bearer token).
How: MLflow's own server is a Flask app (`mlflow.server.app`) whose handlers read the
backend store from process environment variables (`_MLFLOW_SERVER_FILE_STORE` etc.) and
keep the stores in module globals. On the first `/mlflow` request this module sets those
variables (backend and registry store = `settings.tracking_uri`; artifacts served by the
service and stored under `EVALCTL_HOME/mlartifacts`, so runners on other machines can log
artifacts as `mlflow-artifacts:/` URIs), imports the app (about 3 s, hence lazily, so the
API starts fast), initialises the stores, and from then on runs every request through
a WSGI bridge (starlette's `WSGIResponder`, with the body collected in one join rather
than starlette's quadratic concatenation). So one process serves one MLflow backend.

Auth comes first, by route (`service.api.mlflow_scopes` holds the table: reads and MLflow's
read-only POSTs need `read`, telemetry `runner` or `write`, the Model Registry and deletes
`write`, `evalctl.*` registry tags and alias moves `admin` (others get 409 for an alias
move: evalctl's registry owns aliases), unknown routes `admin`); the body is only read once
the token is accepted, then checked against the storage roots (artifact locations, model
version sources, served files); a file served from a local folder (a model version's
source) is streamed here from the descriptor that was checked, not opened again by MLflow.
MLflow's own Flask security middleware (Host-header allow-list against DNS rebinding, CORS)
is switched off by default (`MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE=true` unless set):
it would refuse runners that reach the server by a public host name, and every request
here already carries a bearer token, which a rebinding or cross-origin page cannot supply.
The body-size limit of the service applies here too (raise `max_body_bytes` for large
artifact uploads).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
from fastapi import HTTPException
from sqlalchemy import Engine
from starlette.types import Receive, Scope, Send

from service.api.auth import Need, Principal, authenticate, check
from service.api.limits import bearer_token, send_json
from service.api.mlflow_guard import CHUNK_BYTES, Download, Requires, guard, guarded
from service.api.mlflow_scopes import MIRROR, MIRROR_DETAIL, route_need
from service.settings import Settings

#: MLflow clients read `error_code` and `message`; evalctl clients read `detail`.
ERROR_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_CONFLICT",
}


def configure_mlflow_server(settings: Settings) -> Callable[..., Any]:
    """Point MLflow's server module at our stores and return its Flask (WSGI) app."""
    artifacts = settings.home_dir / "mlartifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE", "true")
    os.environ["_MLFLOW_SERVER_FILE_STORE"] = settings.tracking_uri
    os.environ["_MLFLOW_SERVER_REGISTRY_STORE"] = settings.tracking_uri
    os.environ["_MLFLOW_SERVER_SERVE_ARTIFACTS"] = "true"
    os.environ["_MLFLOW_SERVER_ARTIFACT_DESTINATION"] = str(artifacts)
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = "mlflow-artifacts:/"
    from mlflow.server import app as flask_app
    from mlflow.server import handlers
    from mlflow.server.constants import BACKEND_STORE_URI_ENV_VAR

    assert BACKEND_STORE_URI_ENV_VAR == "_MLFLOW_SERVER_FILE_STORE", "MLflow renamed its env"
    handlers.initialize_backend_stores(
        settings.tracking_uri, settings.tracking_uri, "mlflow-artifacts:/"
    )
    wsgi: Callable[..., Any] = flask_app
    return wsgi


def _responder_class() -> Any:
    with warnings.catch_warnings():  # deprecated in starlette, still the bridge MLflow uses
        warnings.simplefilter("ignore")
        from starlette.middleware.wsgi import WSGIResponder, build_environ

    class Responder(WSGIResponder):  # type: ignore[misc]
        def __init__(self, app: Callable[..., Any], scope: Scope, body: bytes) -> None:
            super().__init__(app, scope)
            self.body = body  # read (in one join, not starlette's +=) after the auth check

        async def __call__(self, receive: Receive, send: Send) -> None:
            environ = build_environ(self.scope, self.body)
            self.body = b""
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self.sender, send)
                async with self.stream_send:
                    await anyio.to_thread.run_sync(self.wsgi, environ, self.start_response)
            if self.exc_info is not None:
                raise self.exc_info[0].with_traceback(self.exc_info[1], self.exc_info[2])

    return Responder


class MlflowMount:
    """ASGI app for `/mlflow`: bearer auth, then MLflow's Flask app (built on first use)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._wsgi: Callable[..., Any] | None = None
        self._responder: Any = None
        self._lock = threading.Lock()

    def _build(self) -> None:
        with self._lock:
            if self._wsgi is None:
                self._responder = _responder_class()
                self._wsgi = configure_mlflow_server(self.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        method, path = scope["method"], _route_path(scope)
        need = route_need(method, path)
        plain = bearer_token(scope)
        try:
            if plain is None:
                raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)")
            principal = await anyio.to_thread.run_sync(authenticate, self.engine, plain)
            _check_route(principal, need)
        except HTTPException as exc:
            await _refuse(send, exc.status_code, str(exc.detail))
            return
        body = await _read_body(receive)
        if body is None:
            return  # client gone (or body over the limit): do not half-run MLflow
        if self._wsgi is None:
            await anyio.to_thread.run_sync(self._build)
        query = scope.get("query_string", b"")
        verdict = None
        if guarded(path):
            verdict = await anyio.to_thread.run_sync(
                guard, method, path, query, body, self.settings
            )
        if isinstance(verdict, tuple):
            await _refuse(send, *verdict)
            return
        if isinstance(verdict, Download):
            await _send_file(send, verdict, head=method == "HEAD")
            return
        if isinstance(verdict, Requires):
            try:
                check(principal, verdict.need)
            except HTTPException as exc:
                await _refuse(send, exc.status_code, f"{verdict.why}: {exc.detail}")
                return
        await self._responder(self._wsgi, scope, body)(receive, send)


def _route_path(scope: Scope) -> str:
    """Return the path inside the mount, as MLflow's Flask app will route it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _check_route(principal: Principal | None, need: Need | str) -> None:
    """Raise 401/403 (or 409 for an alias move) unless the token may call the route."""
    if need != MIRROR:
        check(principal, Need(need))
        return
    principal = check(principal, Need.write)
    if not principal.may(Need.admin):
        raise HTTPException(409, MIRROR_DETAIL)


async def _refuse(send: Send, status: int, detail: str) -> None:
    headers = [("www-authenticate", "Bearer")] if status == 401 else []
    code = ERROR_CODES.get(status, "PERMISSION_DENIED")
    body = {"detail": detail, "error_code": code, "message": detail}
    await send_json(send, status, body, headers)


async def _send_file(send: Send, download: Download, *, head: bool) -> None:
    """Stream a checked file from its open descriptor (its size as sent), then close it."""
    fd, left = download.file.fd, download.file.size
    try:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in download.headers]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        while left > 0 and not head:
            chunk = await anyio.to_thread.run_sync(os.read, fd, min(left, CHUNK_BYTES))
            if not chunk:
                break  # truncated meanwhile: the client sees a short body, never other bytes
            left -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        os.close(fd)


async def _read_body(receive: Receive) -> bytes | None:
    """Return the whole request body, or None if the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
