"""Exception handlers: every error the API returns is JSON `{"detail": ...}`.

Registry errors map to statuses: unknown id -> 404, a lease not held -> 409, another
user-fixable conflict (`EvalctlError`) -> 409, a value the database cannot store
(NaN, a NUL byte, an integer too large) -> 422, a constraint violated -> 409, the database
unreachable -> 503. Anything else is a bug: it is logged with its traceback and answered
with a 500 JSON body that reveals nothing.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from service.crud import LeaseError
from service.errors import EvalctlError, NotFoundError

logger = logging.getLogger("evalctl.service")


def _json(status: int, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def not_found(_: Request, exc: Exception) -> JSONResponse:
    """Answer 404 for an unknown id or name."""
    return _json(404, str(exc))


async def conflict(_: Request, exc: Exception) -> JSONResponse:
    """Answer 409 for a lease not held or another conflict with the registry's state."""
    return _json(409, str(exc))


async def unprocessable(_: Request, exc: Exception) -> JSONResponse:
    """Answer 422 for a value the registry or its database cannot store."""
    if isinstance(exc, DataError):
        return _json(422, f"value rejected by the database: {_first_line(exc.orig or exc)}")
    return _json(422, _first_line(exc))


async def integrity(_: Request, exc: Exception) -> JSONResponse:
    """Answer 409 when a write breaks a constraint (e.g. a reference to a missing row)."""
    return _json(409, "the request conflicts with the registry (constraint violated)")


async def unavailable(_: Request, exc: Exception) -> JSONResponse:
    """Answer 503 when the database cannot be reached."""
    logger.warning("database unavailable: %s", _first_line(exc))
    return _json(503, "database unavailable")


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    """Log the bug and answer 500 without details."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(500, "internal server error")


def install(app: FastAPI) -> None:
    """Register the handlers on `app` (most specific exception types first)."""
    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(LeaseError, conflict)
    app.add_exception_handler(EvalctlError, conflict)
    app.add_exception_handler(DataError, unprocessable)
    app.add_exception_handler(OverflowError, unprocessable)
    app.add_exception_handler(ValueError, unprocessable)
    app.add_exception_handler(IntegrityError, integrity)
    app.add_exception_handler(OperationalError, unavailable)
    app.add_exception_handler(Exception, server_error)
