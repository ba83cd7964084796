"""Real-browser helpers for the dashboard tests: launch chromium, watch pages, run axe.

Owns how a test gets a browser (Python Playwright driving Debian's `/usr/bin/chromium`;
Playwright's own browser download does not work here), what counts as a broken page
(console errors, uncaught exceptions, failed or 4xx/5xx requests), where the flow
screenshots go (`test-artifacts/dashboard/`) and how axe-core is run. Without chromium,
Playwright or the npm assets the tests skip, unless `EVALCTL_REQUIRE_BROWSER=1` (CI) makes
that a failure; `EVALCTL_CHROMIUM` points at another chromium binary. The fixtures that
use these helpers live in `test_browser.py`; the live server comes from `conftest.py`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO_ROOT

CHROMIUM = Path(os.environ.get("EVALCTL_CHROMIUM", "/usr/bin/chromium"))
AXE = REPO_ROOT / "dashboards" / "node_modules" / "axe-core" / "axe.min.js"
VENDOR = REPO_ROOT / "dashboards" / "static" / "vendor" / "uPlot.iife.min.js"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "dashboard"
# Flags that keep Debian's chromium quiet and sandbox-free in a container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require(ok: bool, reason: str) -> None:
    """Skip the test when `ok` is false, or fail it when EVALCTL_REQUIRE_BROWSER=1 (CI)."""
    if ok:
        return
    if os.environ.get("EVALCTL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (EVALCTL_REQUIRE_BROWSER=1 makes this a failure)")
    pytest.skip(reason)


def require_browser() -> None:
    """Skip (or, in CI, fail) unless chromium, Playwright and the npm assets are here."""
    require(CHROMIUM.is_file(), f"{CHROMIUM} is missing; `make browser` installs chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "Python Playwright is missing; `make install` installs it")
    require(VENDOR.is_file(), "dashboard assets are missing; run `make assets`")


def safe_name(text: str) -> str:
    """Return `text` usable as a file name (pytest ids contain brackets)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


@dataclass
class PageWatch:
    """Everything a page did wrong: console errors, JS exceptions, failed requests."""

    problems: list[str] = field(default_factory=list)
    # (status, url substring) pairs a test expects, e.g. a 409 page after a refused promote
    allowed: list[tuple[int, str]] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        """Start recording what goes wrong on `page`."""
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.problems.append(f"JS exception: {exc}"))
        page.on(
            "requestfailed",
            lambda req: self.problems.append(f"request failed: {req.url} ({req.failure})"),
        )
        page.on("response", self._on_response)

    def allow(self, status: int, url_part: str) -> None:
        """Accept one kind of error answer the test provokes on purpose."""
        self.allowed.append((status, url_part))

    def _allowed(self, status: int, url: str) -> bool:
        return any(status == s and part in url for s, part in self.allowed)

    def _on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        # chromium repeats every 4xx answer as a console error; those are judged in
        # _on_response, which knows the URL and whether the test expected it
        if "Failed to load resource: the server responded with a status of" in message.text:
            return
        self.problems.append(f"console error: {message.text} at {message.location}")

    def _on_response(self, response: Any) -> None:
        if response.status >= 400 and not self._allowed(response.status, response.url):
            self.problems.append(f"HTTP {response.status} for {response.url}")

    def assert_clean(self) -> None:
        """Fail if the page logged an error, threw, or got an unexpected error answer."""
        assert not self.problems, "the browser saw problems:\n" + "\n".join(self.problems)


@dataclass
class Shooter:
    """Saves flow screenshots as test-artifacts/dashboard/<test>-<step>.png."""

    test_name: str

    def __call__(self, page: Any, step: str, *, full_page: bool = True, **options: Any) -> Path:
        """Screenshot `page` for `step` (`options` go to Playwright); return the file."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{safe_name(self.test_name)}-{safe_name(step)}.png"
        page.screenshot(path=str(path), full_page=full_page, **options)
        return path


def axe_problems(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """Run axe-core (WCAG 2 A and AA rules) on `page`; describe violations of `impacts`."""
    require(AXE.is_file(), f"{AXE} is missing; run `make assets`")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Through the DevTools protocol: the dashboard's CSP refuses an injected <script>.
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa']})")
    found = []
    for violation in result["violations"]:
        if violation["impact"] not in impacts:
            continue
        targets = [" ".join(map(str, node["target"])) for node in violation["nodes"]]
        found.append(
            f"{violation['id']} ({violation['impact']}): {violation['help']} -> "
            + "; ".join(targets[:6])
            + (f" (+{len(targets) - 6} more)" if len(targets) > 6 else "")
        )
    return found


def focused(page: Any) -> dict[str, str]:
    """Return the focused element's tag, text and href (for keyboard-order checks)."""
    return dict(
        page.evaluate(
            """() => { const e = document.activeElement;
                return {tag: e.tagName.toLowerCase(), text: (e.innerText || '').trim(),
                        href: e.getAttribute('href') || '', id: e.id || ''}; }"""
        )
    )
