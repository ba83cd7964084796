"""Dashboard sessions: log in with an API token, keep a signed cookie, check CSRF.

Owns the browser side of auth; the token rules themselves (scopes, revocation, expiry)
are `service.api.auth` and `service.crud`. A user pastes an API token into `/login`;
the token is checked once and never stored in the browser. The cookie holds only the
token's id, the login time and a random nonce, signed with HMAC-SHA256 by a secret kept in
`EVALCTL_HOME/session-secret` (mode 0600, created on first use) unless
`EVALCTL_SERVER__SESSION_SECRET` sets one (do that when several service processes share a
database). Every request re-reads the token row, so revoking or expiring the token ends
its dashboard sessions at once. The cookie is HttpOnly and SameSite=Lax (Secure behind
https). Every form carries a CSRF token derived from the session's nonce; htmx sends the
same token as the `X-CSRF-Token` header. The login form itself uses a double-submit
cookie, since there is no session yet.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from service import crud
from service.api.auth import Need, Principal
from service.errors import EvalctlError
from service.settings import Settings

COOKIE = "evalctl_session"
LOGIN_CSRF_COOKIE = "evalctl_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
#: How long a dashboard login lasts.
MAX_AGE_S = 12 * 3600


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to /login."""


class Forbidden(Exception):
    """The session's token lacks the scope, or the CSRF token is wrong."""


@dataclass(frozen=True)
class Viewer:
    """Who is looking at the page: the token's principal and the session's CSRF token."""

    principal: Principal
    csrf_token: str

    @property
    def can_write(self) -> bool:
        """Return whether the token may act (promote, roll back, cancel jobs)."""
        return self.principal.may(Need.write)


#: Shortest signing key accepted: a shorter one can be guessed from one captured cookie.
MIN_SECRET_BYTES = 32


def session_secret(settings: Settings) -> bytes:
    """Return the signing secret: the configured one, else the one kept under home.

    Raises:
        EvalctlError: the configured secret is shorter than MIN_SECRET_BYTES (an empty
            `EVALCTL_SERVER__SESSION_SECRET=` would let anyone forge a session).
    """
    configured = settings.server.session_secret
    if configured is not None:
        secret = configured.get_secret_value().encode()
        if len(secret) < MIN_SECRET_BYTES:
            raise EvalctlError(
                f"EVALCTL_SERVER__SESSION_SECRET is {len(secret)} bytes; use at least "
                f"{MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`), or unset it"
            )
        return secret
    path = settings.home_dir / "session-secret"
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        secret = b""
    if len(secret) >= MIN_SECRET_BYTES:
        return secret
    _write_private(path, secrets.token_bytes(MIN_SECRET_BYTES).hex(), replace=path.exists())
    return bytes.fromhex(path.read_text().strip())


def _write_private(path: Path, text: str, *, replace: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    if replace:  # an empty or damaged file: nobody can be using it as a key
        os.replace(tmp, path)
        return
    try:  # the first writer wins; a concurrent second one reads the first's secret
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def make_cookie(secret: bytes, token_id: int, *, now: float | None = None) -> str:
    """Return a signed session cookie value for a token id."""
    body = {"tid": token_id, "iat": int(now if now is not None else time.time())}
    body["nonce"] = secrets.token_hex(16)  # type: ignore[assignment]
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_sign(secret, payload)}"


def read_cookie(secret: bytes, value: str, *, now: float | None = None) -> dict[str, object] | None:
    """Return the cookie's body if its signature is good and it has not expired."""
    payload, _, signature = value.partition(".")
    # Compared as bytes: compare_digest refuses non-ASCII str, which a forged cookie may hold.
    if not payload or not hmac.compare_digest(signature.encode(), _sign(secret, payload).encode()):
        return None
    try:
        body = json.loads(_unb64(payload))
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    issued = body.get("iat")
    if not isinstance(issued, int):
        return None
    if (now if now is not None else time.time()) - issued > MAX_AGE_S:
        return None
    return body


def csrf_for(secret: bytes, nonce: str) -> str:
    """Return the CSRF token bound to a session nonce."""
    return _sign(secret, f"csrf:{nonce}")


def _principal(request: Request, token_id: int) -> Principal | None:
    with Session(request.app.state.engine) as session:
        row = crud.active_token(session=session, token_id=token_id)
        if row is None or row.id is None:
            return None
        return Principal(token_id=row.id, name=row.name, scopes=tuple(row.scopes))


def current_viewer(request: Request) -> Viewer:
    """Return the logged-in viewer, or raise LoginRequired."""
    cached = getattr(request.state, "viewer", None)
    if isinstance(cached, Viewer):
        return cached
    secret = request.app.state.session_secret
    body = read_cookie(secret, request.cookies.get(COOKIE, ""))
    if body is None or not isinstance(body.get("tid"), int):
        raise LoginRequired
    principal = _principal(request, int(body["tid"]))  # type: ignore[call-overload]
    if principal is None or not principal.may(Need.read):
        raise LoginRequired
    viewer = Viewer(principal=principal, csrf_token=csrf_for(secret, str(body.get("nonce"))))
    request.state.viewer = viewer
    return viewer


async def check_csrf(request: Request, viewer: Viewer) -> None:
    """Raise Forbidden unless the request carries the session's CSRF token."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), viewer.csrf_token.encode()):
        raise Forbidden("the form is stale or did not come from this dashboard (CSRF check)")


async def acting_viewer(request: Request) -> Viewer:
    """Return the viewer for a form post: logged in, write scope, good CSRF token."""
    viewer = current_viewer(request)
    await check_csrf(request, viewer)
    if not viewer.can_write:
        have = ", ".join(viewer.principal.scopes)
        raise Forbidden(f"this needs a token with scope write; yours has: {have}")
    return viewer


ViewerDep = Annotated[Viewer, Depends(current_viewer)]
ActorDep = Annotated[Viewer, Depends(acting_viewer)]


def cookie_options(request: Request) -> dict[str, object]:
    """Return the attributes every dashboard cookie is set with."""
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": request.url.scheme == "https",
        "path": "/",
    }
