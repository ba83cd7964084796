"""The dashboard in a real browser: the issue's acceptance flows, accessibility, screenshots.

Chromium (driven by Playwright) logs in through the form, compares two runs picked with the
mouse and the keyboard, opens a checkpoint's examples, promotes and rolls back in the
registry, reads the jobs page, and runs axe-core on every page. Each flow step leaves a
screenshot in `test-artifacts/dashboard/`; every page must finish without console errors,
JS exceptions or failed requests. `EVALCTL_UPDATE_SCREENSHOTS=1` also refreshes the README
images in `docs/img/`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.dashboards.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PageWatch,
    Shooter,
    axe_problems,
    focused,
    require_browser,
)
from tests.dashboards.seed import Seeded
from tests.helpers import REPO_ROOT, LiveServer

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, in CI, fails) without Playwright
    expect = None  # type: ignore[assignment]

DOCS_IMG = REPO_ROOT / "docs" / "img"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def write_token(server: LiveServer, seeded: Seeded) -> str:
    return server.make_token("write", name="releaser")


@pytest.fixture(scope="module")
def read_token(server: LiveServer, seeded: Seeded) -> str:
    return server.make_token("read", name="viewer")


def log_in(page: Any, token: str, start: str = "/") -> None:
    """Log in through the form (type the token, press Enter) and land on `start`."""
    page.goto(start)
    page.get_by_label("API token").fill(token)
    page.get_by_label("API token").press("Enter")
    page.wait_for_url(re.compile(re.escape(start) + "$"))


@pytest.fixture(scope="module")
def sessions(browser: Any, server: LiveServer, write_token: str, read_token: str) -> dict[str, Any]:
    """Log in once per scope through the form; later contexts start with that cookie."""
    states = {}
    for scope, token in (("write", write_token), ("read", read_token)):
        context = browser.new_context(base_url=server.url)
        log_in(context.new_page(), token)
        states[scope] = context.storage_state()
        context.close()
    return states


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Shooter:
    return Shooter(request.node.name)


OpenPage = Callable[..., tuple[Any, PageWatch]]


@pytest.fixture
def new_page(
    browser: Any, server: LiveServer, sessions: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[OpenPage]:
    """Open pages in fresh contexts, logged in as `scope` (or not at all); check them after."""
    opened: list[tuple[Any, PageWatch]] = []
    failed_before = request.session.testsfailed

    def open_page(scope: str | None = "write") -> tuple[Any, PageWatch]:
        context = browser.new_context(
            base_url=server.url,
            viewport={"width": 1280, "height": 800},
            storage_state=sessions[scope] if scope else None,
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        watch = PageWatch()
        watch.attach(page)
        opened.append((page, watch))
        return page, watch

    yield open_page
    for page, _ in opened:
        page.context.close()
    if request.session.testsfailed == failed_before:  # a failed test has said enough
        for _, watch in opened:
            watch.assert_clean()


@pytest.fixture
def page(new_page: OpenPage) -> Any:
    """A page logged in with a write token."""
    return new_page("write")[0]


@pytest.fixture
def reader_page(new_page: OpenPage) -> Any:
    """A page logged in with a read token."""
    return new_page("read")[0]


@pytest.fixture
def anonymous_page(new_page: OpenPage) -> Any:
    """A page with no session."""
    return new_page(None)[0]


def heading(page: Any, text: str, level: int = 1) -> Any:
    return page.get_by_role("heading", level=level, name=text, exact=True)


def test_broken_pages_are_caught(new_page: OpenPage) -> None:
    """The error watch itself: a missing asset and a JS exception do not go unnoticed."""
    page, watch = new_page(None)
    page.goto("/login")
    with page.expect_event("pageerror"), page.expect_response(re.compile("no-such")):
        page.evaluate(
            """() => { const img = document.createElement('img');
                       img.src = '/static/no-such.png'; img.alt = '';
                       document.body.append(img);
                       setTimeout(() => { throw new Error('boom'); }); }"""
        )
    seen = "\n".join(watch.problems)
    assert "HTTP 404 for" in seen and "/static/no-such.png" in seen, seen
    assert "JS exception: boom" in seen, seen
    watch.problems.clear()


# --- 1. login -----------------------------------------------------------------------------


def test_login_form_lands_on_the_runs_table(
    new_page: OpenPage, seeded: Seeded, write_token: str, shot: Shooter
) -> None:
    page, watch = new_page(None)
    watch.allow(401, "/login")  # the wrong token on purpose
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    shot(page, "1-login")
    field = page.get_by_label("API token")
    field.fill("not-a-token")
    field.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("unknown, revoked or expired")
    shot(page, "2-bad-token")

    page.get_by_label("API token").fill(write_token)
    page.get_by_label("API token").press("Enter")
    page.wait_for_url(re.compile(r"/$"))
    expect(heading(page, "Runs")).to_be_visible()
    status = {"good": "succeeded", "worse": "succeeded", "broken": "failed"}
    for key, run in seeded.runs.items():
        link = page.get_by_role("link", name=run.name, exact=True)
        expect(link).to_have_attribute("href", f"/runs/{run.id}")
        expect(page.get_by_role("row").filter(has=link)).to_contain_text(status[key])
    shot(page, "3-runs")


# --- 2. compare ---------------------------------------------------------------------------


def test_select_two_runs_and_compare(page: Any, seeded: Seeded, shot: Shooter) -> None:
    good, worse = seeded.runs["good"], seeded.runs["worse"]
    page.goto("/")
    button = page.get_by_role("button", name=re.compile("Compare selected"))
    page.get_by_role("checkbox", name=f"Select run {good.name}").click()
    by_keyboard = page.get_by_role("checkbox", name=f"Select run {worse.name}")
    by_keyboard.focus()
    page.keyboard.press("Space")
    expect(by_keyboard).to_be_checked()
    expect(button).to_be_enabled()
    expect(button).to_contain_text("2")
    shot(page, "1-selected")
    button.click()

    page.wait_for_url(re.compile(r"/compare\?"))
    assert f"run={good.id}" in page.url and f"run={worse.id}" in page.url
    expect(heading(page, "Compare runs")).to_be_visible()
    for title in ("Parameters", "Metrics", "Curves", "Examples that got worse"):
        expect(heading(page, title, level=2)).to_be_visible()

    params = page.get_by_role("table", name=re.compile("Parameters"))
    # the older run is the baseline, whatever order the runs table listed them in
    expect(params.get_by_role("columnheader").nth(1)).to_have_text(f"{good.name} (baseline)")
    lora_r = params.get_by_role("row").filter(has_text="lora.r")
    expect(lora_r).to_be_visible()
    expect(lora_r).to_contain_text("16")
    expect(lora_r).to_contain_text("8")
    differing = params.locator("tbody tr:visible").count()
    page.get_by_label("Differences only").uncheck()
    expect(params.locator("tbody tr:visible")).not_to_have_count(differing)
    assert params.locator("tbody tr:visible").count() > differing
    shot(page, "2-all-parameters")
    page.get_by_label("Differences only").check()
    expect(params.locator("tbody tr:visible")).to_have_count(differing)

    metrics = page.get_by_role("table", name=re.compile("Metrics"))
    valid_rate = metrics.get_by_role("row").filter(has_text="json_schema.valid_rate")
    expect(valid_rate).to_contain_text("-0.2")  # 20/20 -> 16/20 valid

    expect(page.locator(".chart").first).to_be_visible()
    expect(page.locator(".chart canvas").first).to_be_attached()  # uPlot drew it
    got_worse = page.get_by_role("table", name=f"json_schema examples {worse.name} got worse")
    shown = got_worse.locator("tbody tr")
    expect(shown).to_have_count(4)
    for example in ("ex-01", "ex-03", "ex-05", "ex-09"):
        expect(shown.filter(has_text=example)).to_have_count(1)
    shot(page, "3-compare")


# --- 3. examples ---------------------------------------------------------------------------


def test_checkpoint_examples_filter_invalid_json(
    reader_page: Any, seeded: Seeded, shot: Shooter
) -> None:
    page, worse = reader_page, seeded.runs["worse"]
    page.goto("/")
    page.get_by_role("link", name=worse.name, exact=True).click()
    expect(heading(page, worse.name)).to_be_visible()
    for title in ("Lineage", "Training curves", "Checkpoints", "Spec", "Job", "Log"):
        expect(heading(page, title, level=2)).to_be_visible()
    expect(page.locator(".chart canvas")).to_have_count(page.locator(".chart").count())
    shot(page, "1-run")
    page.get_by_role("link", name="Examples of json_schema at step 20").click()
    expect(page).to_have_url(
        re.compile(rf"/evaluations/{worse.evaluation_ids['json_schema']}(\?|$)")
    )
    shot(page, "2-all-examples")
    page.get_by_label("Show").select_option(label="Invalid JSON")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"show=invalid_json"))
    rows = page.get_by_role("table", name="Examples").locator("tbody tr")
    expect(rows).to_have_count(4)
    for example in ("ex-01", "ex-03", "ex-05", "ex-09"):
        expect(rows.filter(has_text=example)).to_have_count(1)
    expect(rows.filter(has_text="ex-02")).to_have_count(0)
    shot(page, "3-invalid-only")


# --- 4. registry -------------------------------------------------------------------------


def test_promote_gate_skip_and_roll_back(new_page: OpenPage, seeded: Seeded, shot: Shooter) -> None:
    good, worse = seeded.runs["good"], seeded.runs["worse"]
    page, watch = new_page("write")
    watch.allow(409, "/registry/promote")  # the refused promote answers 409 with the report
    page.goto("/registry")
    expect(heading(page, "Registry")).to_be_visible()
    aliases = page.get_by_role("table", name=f"Aliases of {seeded.experiment}")
    production = aliases.get_by_role("row").filter(has_text="@production")
    expect(production).to_contain_text(good.name)
    shot(page, "1-registry")

    def promote(*, skip_gate: bool) -> None:
        form = page.locator("form").filter(has=page.get_by_role("button", name="Promote"))
        form.get_by_label("Experiment").select_option(str(seeded.experiment_id))
        form.get_by_label("Alias").fill("production")
        form.get_by_label("Run", exact=True).select_option(str(worse.id))
        form.get_by_label("Skip the gate").set_checked(skip_gate)
        form.get_by_role("button", name="Promote").click()

    promote(skip_gate=False)
    expect(heading(page, "@production was not moved", level=2)).to_be_visible()
    expect(page.get_by_role("alert").first).to_be_visible()
    refused = page.get_by_role("region", name="@production was not moved")
    expect(refused.get_by_text("FAIL", exact=True).first).to_be_visible()
    expect(production).to_contain_text(good.name)
    shot(page, "2-gate-failed")

    promote(skip_gate=True)
    expect(page.get_by_role("status")).to_contain_text("@production promoted")
    expect(production).to_contain_text(worse.name)
    shot(page, "3-promoted")

    page.get_by_role("button", name="Roll back @production").click()
    expect(page.get_by_role("status")).to_contain_text("@production rolled back")
    expect(production).to_contain_text(good.name)
    shot(page, "4-rolled-back")

    viewer, _ = new_page("read")
    viewer.goto("/registry")
    expect(heading(viewer, "Registry")).to_be_visible()
    expect(viewer.get_by_role("table", name=f"Aliases of {seeded.experiment}")).to_contain_text(
        good.name
    )
    expect(viewer.get_by_role("button", name="Promote")).to_have_count(0)
    expect(viewer.get_by_role("button", name=re.compile("Roll back"))).to_have_count(0)
    shot(viewer, "5-reader")


# --- 5. jobs ------------------------------------------------------------------------------


def test_jobs_page_shows_why_a_job_failed(reader_page: Any, seeded: Seeded, shot: Shooter) -> None:
    page = reader_page
    page.goto("/jobs")
    expect(heading(page, "Jobs and runners")).to_be_visible()
    failed = page.get_by_role("row").filter(has_text="CUDA out of memory at step 3")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("failed")
    expect(page.get_by_text(seeded.runner_name).first).to_be_visible()
    shot(page, "1-jobs")


# --- 6. accessibility ---------------------------------------------------------------------

PAGES: dict[str, Callable[[Seeded], str]] = {
    "runs": lambda s: "/",
    "run": lambda s: f"/runs/{s.runs['worse'].id}",
    "compare": lambda s: f"/compare?run={s.runs['good'].id}&run={s.runs['worse'].id}",
    "evaluation": lambda s: f"/evaluations/{s.runs['worse'].evaluation_ids['json_schema']}",
    "registry": lambda s: "/registry",
    "jobs": lambda s: "/jobs",
}


def test_login_page_has_no_serious_axe_violations(anonymous_page: Any) -> None:
    page = anonymous_page
    page.goto("/login")
    problems = axe_problems(page)
    assert not problems, "axe on /login:\n" + "\n".join(problems)


#: True once every table wrapper that overflows sideways can take keyboard focus.
SCROLLERS_FOCUSABLE = """() => [...document.querySelectorAll('.table-wrap')].every(
    (w) => w.scrollWidth <= w.clientWidth || w.getAttribute('tabindex') === '0')"""


@pytest.mark.parametrize("name", list(PAGES))
def test_page_has_no_serious_axe_violations(page: Any, seeded: Seeded, name: str) -> None:
    path = PAGES[name](seeded)
    page.goto(path)
    expect(page.locator("h1")).to_have_count(1)
    problems = []
    # 1024 px is 1280 px at 125 % zoom: wide tables start to scroll there
    for width in (1280, 1024):
        page.set_viewport_size({"width": width, "height": 800})
        # app.js makes tables that now scroll sideways focusable on `resize`; axe must not
        # run before that handler has (a race on a loaded machine). It fails if it never does.
        page.wait_for_function(SCROLLERS_FOCUSABLE)
        problems += [f"at {width} px: {problem}" for problem in axe_problems(page)]
    assert not problems, f"axe on {path}:\n" + "\n".join(problems)


def test_tab_reaches_skip_link_then_navigation(reader_page: Any) -> None:
    page = reader_page
    page.goto("/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()  # hidden off-screen until focused
    stops = []
    for _ in range(4):
        page.keyboard.press("Tab")
        stops.append(focused(page)["text"])
    assert stops == ["evalctl", "Runs", "Registry", "Jobs & runners"], stops
    skip.focus()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.keyboard.press("Tab")  # the next stop is inside the page, past the header
    assert page.evaluate("document.querySelector('main').contains(document.activeElement)")


def test_login_form_works_with_the_keyboard_only(
    anonymous_page: Any, read_token: str, shot: Shooter
) -> None:
    page = anonymous_page
    page.goto("/login")
    expect(page.get_by_label("API token")).to_be_focused()  # autofocus
    page.keyboard.type(read_token)
    page.keyboard.press("Tab")
    assert focused(page) | {"id": ""} == {"tag": "button", "text": "Log in", "href": "", "id": ""}
    shot(page, "1-focus-on-button")
    page.keyboard.press("Space")
    page.wait_for_url(re.compile(r"/$"))
    expect(heading(page, "Runs")).to_be_visible()


# --- 7. README screenshots ----------------------------------------------------------------


def test_readme_screenshots(reader_page: Any, seeded: Seeded, shot: Shooter) -> None:
    """Screenshot runs and compare; with EVALCTL_UPDATE_SCREENSHOTS=1 also into docs/img."""
    page, update = reader_page, os.environ.get("EVALCTL_UPDATE_SCREENSHOTS") == "1"
    page.goto("/")
    expect(heading(page, "Runs")).to_be_visible()
    runs_png = shot(page, "runs", full_page=False)
    good, worse = seeded.runs["good"], seeded.runs["worse"]
    page.goto(f"/compare?run={good.id}&run={worse.id}")
    expect(page.locator(".chart canvas")).to_have_count(page.locator(".chart").count())
    # from the top down to the end of the curves: runs, parameters, metrics and charts
    bottom = page.locator(".charts").last.evaluate(
        "e => e.getBoundingClientRect().bottom + window.scrollY"
    )
    clip = {"x": 0, "y": 0, "width": 1280, "height": bottom + 16}
    compare_png = shot(page, "compare", full_page=True, clip=clip)
    for png in (runs_png, compare_png):
        assert png.stat().st_size < 400_000, f"{png} is {png.stat().st_size} bytes"
    if update:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        (DOCS_IMG / "dashboard-runs.png").write_bytes(runs_png.read_bytes())
        (DOCS_IMG / "dashboard-compare.png").write_bytes(compare_png.read_bytes())
