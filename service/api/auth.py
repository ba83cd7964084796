"""Bearer-token auth for the API and the MLflow mount, and the first-start admin token.

Every route except the health probes and the API description (`/healthz`, `/readyz`,
`/openapi.json`, `/docs`, `/redoc`) needs `Authorization: Bearer <token>`. Tokens are
checked by `service.crud.authenticate_token` (only hashes are stored). Scopes:

| token scope | may use                                                                |
|-------------|------------------------------------------------------------------------|
| `read`      | every `/api/v1` GET                                                    |
| `write`     | read + create/update runs, checkpoints, evaluations, aliases; jobs     |
| `runner`    | read + record runs, checkpoints, evaluations (runners report results) + |
|             | claim/heartbeat/log/finish jobs, register/heartbeat runners            |
| `admin`     | everything, including token management                                 |

`/mlflow` grants by MLflow route, not by method (`service.api.mlflow_scopes`: read-only
routes need `read`, telemetry `runner` or `write`, the Model Registry and deletes `write`,
alias moves and unlisted routes `admin`). `service.api.limits.TokenFirst` authenticates
every `/api/v1` request before its body is read and leaves the principal for `require`.

A runner token cannot enqueue or cancel jobs, move aliases or manage tokens: a stolen
runner token can report results, not decide what runs or what is promoted. A runner is
bound to the token that registered it (admin tokens too): the runner protocol
(`check_runner`) refuses another token's runner id with 403 and an unknown one with 404.
No/unknown/expired/revoked token -> 401 with `WWW-Authenticate: Bearer`; a token without
the route's scope -> 403. This module does not store tokens (`service.crud` does).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from service import crud

logger = logging.getLogger("evalctl.service")


class Need(StrEnum):
    """What a route needs of the token."""

    read = "read"
    write = "write"
    #: Record results (runs, checkpoints, evaluations): a `write` or a `runner` token.
    report = "report"
    runner = "runner"
    admin = "admin"


GRANTS: dict[str, frozenset[Need]] = {
    "read": frozenset({Need.read}),
    "write": frozenset({Need.read, Need.write, Need.report}),
    "runner": frozenset({Need.read, Need.report, Need.runner}),
    "admin": frozenset(Need),
}
#: Needs a scope can satisfy, spelled for error messages.
NEED_TEXT = {
    Need.read: "read",
    Need.write: "write",
    Need.report: "write or runner",
    Need.runner: "runner",
    Need.admin: "admin",
}

#: Request-state key under which `TokenFirst` leaves (plain token, principal) it checked.
PRINCIPAL_STATE = "evalctl_principal"

bearer = HTTPBearer(auto_error=False, description="An evalctl API token.")


@dataclass(frozen=True)
class Principal:
    """Who called: the token's id, name and scopes (plain data, no DB row)."""

    token_id: int
    name: str
    scopes: tuple[str, ...]

    def may(self, need: Need) -> bool:
        """Return whether the token's scopes grant `need`."""
        return any(need in GRANTS.get(scope, frozenset()) for scope in self.scopes)


def authenticate(engine: Engine, plain: str) -> Principal | None:
    """Return the principal for a plain token, or None if it is unknown/expired/revoked."""
    with Session(engine) as session:
        token = crud.authenticate_token(session=session, plain=plain)
        if token is None or token.id is None:
            return None
        return Principal(token_id=token.id, name=token.name, scopes=tuple(token.scopes))


def unauthorized(detail: str) -> HTTPException:
    """Return the 401 for a missing or bad token."""
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def check(principal: Principal | None, need: Need) -> Principal:
    """Return the principal if it may do `need`; raise 401/403 otherwise."""
    if principal is None:
        raise unauthorized("invalid, expired or revoked token")
    if not principal.may(need):
        have = ", ".join(principal.scopes) or "none"
        raise HTTPException(
            status_code=403,
            detail=f"this needs a token with scope {NEED_TEXT[need]}; this token has: {have}",
        )
    return principal


def check_runner(*, session: Session, principal: Principal, runner_id: int) -> None:
    """Refuse (403) acting as a runner another token registered; 404 if there is none."""
    runner = crud.get_runner(session=session, runner_id=runner_id)
    if runner.token_id == principal.token_id:
        return
    if runner.token_id is None:
        why = "was registered before runners were bound to tokens; register it again"
    else:
        why = "belongs to another token"
    raise HTTPException(status_code=403, detail=f"runner {runner_id} {why}")


def require(need: Need) -> Callable[..., Principal]:
    """Return a dependency that authenticates the bearer token and checks it grants `need`."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None:
            raise unauthorized("missing bearer token (Authorization: Bearer <token>)")
        # `TokenFirst` already looked the token up for API routes; others look it up here.
        seen = getattr(request.state, PRINCIPAL_STATE, None)
        if seen is not None and seen[0] == credentials.credentials:
            principal = seen[1]
        else:
            principal = authenticate(request.app.state.engine, credentials.credentials)
        return check(principal, need)

    dependency.__name__ = f"require_{need.value}"
    return dependency


Reader = Annotated[Principal, Depends(require(Need.read))]
Writer = Annotated[Principal, Depends(require(Need.write))]
Reporter = Annotated[Principal, Depends(require(Need.report))]
RunnerToken = Annotated[Principal, Depends(require(Need.runner))]
Admin = Annotated[Principal, Depends(require(Need.admin))]


def bootstrap_admin_token(engine: Engine, path: Path) -> Path | None:
    """Create an admin token when none exists and write it to `path` (mode 0600).

    Returns the path when it wrote one. The file is created with O_CREAT|O_EXCL and mode
    0600, so it is never readable by others, not even for a moment; a file left from an
    earlier database names no token of this one and is replaced.
    """
    with Session(engine) as session:
        if crud.count_tokens(session=session) > 0:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            path.unlink()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process is bootstrapping this very moment
            return None
        try:
            plain, _ = crud.create_token(
                session=session, name="admin (first start)", scopes=["admin"]
            )
            os.write(fd, f"{plain}\n".encode())
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
    print(
        f"evalctl: no API token existed; an admin token was written to {path} (mode 0600)",
        file=sys.stderr,
        flush=True,
    )
    return path
