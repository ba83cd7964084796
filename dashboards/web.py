"""The dashboard's plumbing: templates, static files, page errors and `mount(app)`.

Owns how pages are rendered (one Jinja2 environment with the dashboard's filters), how a
page turns an error into HTML (login redirect, 403, 404, 409 pages instead of the API's
JSON), the browser-facing guard (`DashboardGuard`: the Host allow-list against DNS
rebinding and the security headers: a Content-Security-Policy that allows only the
dashboard's own scripts and styles, no framing, nosniff, same-origin referrers) and how
the whole UI is attached to the service app. Each page lives in its own module under
`dashboards.pages`; their queries live in `dashboards.queries`.
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import DataError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboards.session import Forbidden, LoginRequired, Viewer, session_secret
from service.errors import EvalctlError, NotFoundError

logger = logging.getLogger("evalctl.dashboard")
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR_FILES = ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css")

templates = Jinja2Templates(directory=str(HERE / "templates"))

#: Paths that are not the dashboard: the token-authenticated API and MLflow (remote runners
#: reach them by whatever name the server has), the probes and the API's own docs.
NOT_DASHBOARD = ("/api", "/mlflow", "/healthz", "/readyz", "/openapi.json", "/docs", "/redoc")
#: Only the dashboard's own files may run or style a page; nothing may frame it.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)


def fmt_num(value: Any, digits: int = 4) -> str:
    """Format a metric for a table cell: 4 significant digits, '–' for missing."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def fmt_signed(value: Any, digits: int = 3) -> str:
    """Format a delta with its sign."""
    if value is None:
        return "–"
    text = fmt_num(value, digits)
    return text if text.startswith("-") or text == "NaN" else f"+{text}"


def fmt_time(value: datetime | None) -> str:
    """Format a timestamp as UTC, to the minute."""
    if value is None:
        return "–"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_ago(value: datetime | None) -> str:
    """Format how long ago a timestamp was ('3 min ago')."""
    if value is None:
        return "never"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = max(0.0, (datetime.now(UTC) - value).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def parse_id(text: str) -> int | None:
    """Return `text` as a positive database id, or None (ASCII digits only, fits int64)."""
    text = text.strip()
    if not (text.isascii() and text.isdecimal()) or len(text) > 18 or int(text) == 0:
        return None
    return int(text)


def short_hash(value: str | None, n: int = 12) -> str:
    """Return the first `n` characters of a hash."""
    return value[:n] if value else "–"


templates.env.filters.update(
    num=fmt_num, signed=fmt_signed, time=fmt_time, ago=fmt_ago, short=short_hash
)
templates.env.globals["quote"] = quote


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render a page template with the viewer (if any) and the request in its context."""
    viewer = getattr(request.state, "viewer", None)
    full = {"viewer": viewer, "vendor_ok": vendor_ok(), **context}
    return templates.TemplateResponse(request, name, full, status_code=status_code, headers=headers)


def vendor_ok() -> bool:
    """Return whether `make assets` has put the npm files under static/vendor."""
    return all((STATIC / "vendor" / name).is_file() for name in VENDOR_FILES)


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.headers.get("hx-request"):
        # An htmx call asks for a fragment (/runs/table); come back to the page it was on.
        current = urlsplit(request.headers.get("hx-current-url", ""))
        target = (current.path or "/") + (f"?{current.query}" if current.query else "")
        url = f"/login?next={quote(target, safe='')}"
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    return render(request, "error.html", {"title": title, "message": message}, status_code=status)


class PageRoute(APIRoute):
    """A route that answers errors as HTML pages (or a login redirect), not JSON.

    Every answer carries `Server-Timing: app;dur=<ms>` (queries and rendering included),
    so browsers' dev tools and `bench/bench_dashboard.py` see the server's own time.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            started = time.perf_counter()
            response = await answer(request)
            took_ms = (time.perf_counter() - started) * 1000
            response.headers["Server-Timing"] = f"app;dur={took_ms:.1f}"
            return response

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors()
                )
                return _error_page(request, 400, "Bad request", problems)
            except OverflowError:
                return _error_page(
                    request, 400, "Bad request", "a number in the address is too large"
                )
            except LoginRequired:
                return _login_redirect(request)
            except Forbidden as exc:
                return _error_page(request, 403, "Not allowed", str(exc))
            except NotFoundError as exc:
                return _error_page(request, 404, "Not found", str(exc))
            except EvalctlError as exc:
                return _error_page(request, 409, "Cannot do that", str(exc))
            except (ValueError, DataError) as exc:  # a value the database refused
                first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
                return _error_page(request, 400, "Bad request", first[0] if first else "")

        return page_handler


def page_router(**kwargs: Any) -> APIRouter:
    """Return a router whose routes render errors as pages and stay out of OpenAPI."""
    return APIRouter(route_class=PageRoute, include_in_schema=False, **kwargs)


def _is_dashboard(path: str) -> bool:
    return not any(path == p or path.startswith(p + "/") for p in NOT_DASHBOARD)


def _host_name(value: str) -> str:
    """Return a Host header (or allow-list entry) without its port, lower-case."""
    value = value.strip().lower()
    if value.startswith("["):  # an IPv6 literal: [::1]:8080
        return value.partition("]")[0] + "]"
    return value.partition(":")[0]


class DashboardGuard:
    """Refuse dashboard requests whose Host is not trusted (400); add security headers."""

    def __init__(self, app: ASGIApp, *, hosts: list[str]) -> None:
        self.app = app
        self.any_host = "*" in hosts
        self.hosts = {_host_name(h) for h in hosts if not h.startswith("*.")}
        self.suffixes = tuple(_host_name(h)[1:] for h in hosts if h.startswith("*."))

    def trusted(self, host: str) -> bool:
        """Return whether the dashboard answers to this Host header."""
        name = _host_name(host)
        return self.any_host or name in self.hosts or bool(name and name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_dashboard(scope["path"]):
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        if not self.trusted(host):
            await _bad_host(send, host)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _bad_host(send: Send, host: str) -> None:
    shown = html.escape(host[:200] or "(none)")
    body = (
        '<!doctype html><html lang="en"><meta charset="utf-8"><title>Bad request</title>'
        f"<h1>Bad request</h1><p>This server does not answer to the host name {shown}. "
        "An administrator can allow it with EVALCTL_SERVER__TRUSTED_HOSTS.</p></html>"
    ).encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *[(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS],
    ]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def mount(app: FastAPI) -> None:
    """Attach the dashboard (pages at `/`, assets at `/static`) to the service app."""
    from dashboards.pages import ROUTERS

    app.state.session_secret = session_secret(app.state.settings)
    if not vendor_ok():
        logger.warning(
            "dashboard assets missing under %s (run `make assets`); charts are disabled",
            STATIC / "vendor",
        )
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(DashboardGuard, hosts=app.state.settings.server.dashboard_hosts())


def viewer_of(request: Request) -> Viewer | None:
    """Return the viewer already resolved for this request, if any."""
    viewer = getattr(request.state, "viewer", None)
    return viewer if isinstance(viewer, Viewer) else None
