"""Health probes: `/healthz` (the process is up) and `/readyz` (DB reachable, schema at head).

Neither needs a token: orchestrators probe them without credentials, and they reveal only
the schema revision.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service import db

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Say the process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready; `reason` says why."}})
def readyz(request: Request) -> Any:
    """Say whether the database is reachable and its schema at the migrations' head."""
    url = request.app.state.db_url
    try:
        current = db.current_revision(url)
        heads = db.head_revisions()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return _unready(f"database unreachable: {first}")
    if current is None or {current} != heads:
        head = ", ".join(sorted(heads))
        return _unready(
            f"database schema at revision {current or 'none'}, migrations head is {head}; "
            "run `evalctl db upgrade` or start the server without --no-migrate"
        )
    return {"status": "ready", "revision": current}


def _unready(reason: str) -> JSONResponse:
    return JSONResponse(status_code=503, content={"status": "unavailable", "reason": reason})
