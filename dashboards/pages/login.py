"""Login and logout: trade an API token for a session cookie, and drop it again."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Form, Request, Response
from fastapi.responses import RedirectResponse

from dashboards.session import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    MAX_AGE_S,
    ViewerDep,
    check_csrf,
    cookie_options,
    make_cookie,
)
from dashboards.web import page_router, render
from service.api.auth import Need, authenticate

router = page_router()


def _safe_next(target: str | None) -> str:
    """Return `target` if it is a path on this site, else '/' (no open redirects)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target:  # browsers read /\host as //host
        return "/"
    return target


def _login_page(request: Request, *, next_url: str, error: str | None, status: int) -> Response:
    csrf = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"next": next_url, "error": error, "csrf_token": csrf},
        status_code=status,
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, max_age=3600, **cookie_options(request))  # type: ignore[arg-type]
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    """Show the login form (paste an API token)."""
    return _login_page(request, next_url=_safe_next(next), error=None, status=200)


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Check the token; on success set the session cookie and go where the user was going."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    next_url = _safe_next(next)
    if not expected or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
        return _login_page(
            request, next_url=next_url, error="The form expired; please try again.", status=403
        )
    principal = authenticate(request.app.state.engine, token.strip())
    if principal is None:
        return _login_page(
            request,
            next_url=next_url,
            error="That token is unknown, revoked or expired.",
            status=401,
        )
    if not principal.may(Need.read):
        return _login_page(
            request, next_url=next_url, error="That token cannot read the registry.", status=403
        )
    response = RedirectResponse(next_url, status_code=303)
    value = make_cookie(request.app.state.session_secret, principal.token_id)
    response.set_cookie(COOKIE, value, max_age=MAX_AGE_S, **cookie_options(request))  # type: ignore[arg-type]
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(request: Request, viewer: ViewerDep) -> Response:
    """End the session (the token itself stays valid)."""
    await check_csrf(request, viewer)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
