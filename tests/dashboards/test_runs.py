"""The runs page against a live server: listing, filters, metric sort, paging, bad input."""

from __future__ import annotations

import re

import httpx
import pytest

from service.local import LocalRegistry
from tests.dashboards.seed import Seeded
from tests.factories import make_evaluation, make_experiment, make_run, unique
from tests.helpers import LiveServer

VALID = "json_schema.valid_rate"


def rows(html: str) -> list[tuple[int, dict[str, str]]]:
    """Return (run id, {metric: cell text}) per table row, in page order."""
    out = []
    for run_id, body in re.findall(r'<tr data-run="(\d+)">(.*?)</tr>', html, re.S):
        cells = dict(re.findall(r'data-metric="([^"]+)">([^<]*)</td>', body))
        out.append((int(run_id), cells))
    return out


def ids(html: str) -> list[int]:
    return [run_id for run_id, _ in rows(html)]


def page(client: httpx.Client, **params: str) -> str:
    response = client.get("/", params=params)
    assert response.status_code == 200, response.text
    return response.text


def test_lists_seeded_runs_with_best_scores(reader: httpx.Client, seeded: Seeded) -> None:
    html = page(reader, experiment=seeded.experiment)
    assert "<h1>Runs</h1>" in html
    assert "3 runs" in html
    good, worse, broken = (seeded.runs[k] for k in ("good", "worse", "broken"))
    for run in (good, worse, broken):
        assert f'<a href="/runs/{run.id}">{run.name}</a>' in html
        assert f'aria-label="Select run {run.name}"' in html
    cells = dict(rows(html))
    assert cells[good.id][VALID] == "1"  # every example valid at the best step
    assert cells[worse.id][VALID] == "0.8"  # 4 of 20 wrong
    assert cells[broken.id][VALID] == "–"  # no best checkpoint
    assert "perplexity.ppl" in cells[good.id]
    assert 'class="status status-failed">failed<' in html
    assert '<span class="tag">arm=good</span>' in html


def test_page_has_filter_form_and_compare_form(reader: httpx.Client, seeded: Seeded) -> None:
    html = page(reader)
    for label in ("Experiment", "Status", "Tag", "Name contains", "Metric", "Min", "Max"):
        assert re.search(rf'<label for="[^"]+">{label}</label>', html), label
    assert 'hx-get="/runs/table"' in html and 'hx-target="#runs-table"' in html
    assert f'<option value="{VALID}"' in html
    assert f'<option value="{seeded.experiment}"' in html
    assert '<form method="get" action="/compare"' in html
    assert '<button id="compare-button" type="submit">Compare selected</button>' in html
    assert 'name="run" value="' in html and "data-select-run" in html


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "failed"}, {"broken"}),
        ({"status": "succeeded"}, {"good", "worse"}),
        ({"tag": "arm=good"}, {"good"}),
        ({"tag": "team=nlp"}, {"good", "worse", "broken"}),
        ({"tag": "team=vision"}, set()),
        ({"name": "-WOR"}, {"worse"}),
        ({"metric": VALID, "min": "0.9"}, {"good"}),
        ({"metric": VALID, "max": "0.9"}, {"worse"}),
        ({"metric": VALID, "min": "0.5", "max": "1"}, {"good", "worse"}),
    ],
)
def test_filters_narrow_the_list(
    reader: httpx.Client, seeded: Seeded, params: dict[str, str], expected: set[str]
) -> None:
    html = page(reader, experiment=seeded.experiment, **params)
    wanted = {seeded.runs[name].id for name in expected}
    assert set(ids(html)) == wanted
    assert f"{len(wanted)} run" in html
    if not wanted:
        assert "No runs match these filters." in html


def test_sort_by_metric_puts_missing_last(reader: httpx.Client, seeded: Seeded) -> None:
    good, worse, broken = (seeded.runs[k].id for k in ("good", "worse", "broken"))
    desc = page(reader, experiment=seeded.experiment, sort=VALID, order="desc")
    assert ids(desc) == [good, worse, broken]
    assert re.search(
        r'<th scope="col" class="num" aria-sort="descending">\s*<a[^>]*>' + VALID, desc
    )
    asc = page(reader, experiment=seeded.experiment, sort=VALID, order="asc")
    assert ids(asc) == [worse, good, broken]
    # The sorted header links to the other direction, keeping the filters.
    assert f"experiment={seeded.experiment}&amp;sort={VALID}&amp;order=desc" in asc
    # Lower is better for perplexity: its default direction is ascending.
    ppl = page(reader, experiment=seeded.experiment, sort="perplexity.ppl")
    assert ids(ppl)[-1] == broken
    assert 'aria-sort="ascending"' in ppl


def test_sort_by_column(reader: httpx.Client, seeded: Seeded) -> None:
    by_name = ids(page(reader, experiment=seeded.experiment, sort="name", order="asc"))
    names = {run.id: run.name for run in seeded.runs.values()}
    assert [names[i] for i in by_name] == sorted(names.values())
    by_status = ids(page(reader, experiment=seeded.experiment, sort="status", order="asc"))
    assert by_status[0] == seeded.runs["broken"].id  # "failed" < "succeeded"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"metric": VALID, "min": "abc"}, "Min must be a number, not &#39;abc&#39;"),
        ({"sort": "unknown.metric"}, "Cannot sort by &#39;unknown.metric&#39;"),
        ({"status": "exploded"}, "Unknown status &#39;exploded&#39;"),
        ({"metric": "nope.nothing"}, "Unknown metric &#39;nope.nothing&#39;"),
        ({"experiment": "no-such-experiment"}, "Unknown experiment"),
        ({"min": "0.5"}, "Min and Max need a Metric"),
        ({"tag": "=x"}, "needs a key"),
    ],
)
def test_bad_filter_value_gives_a_message(
    reader: httpx.Client, seeded: Seeded, params: dict[str, str], message: str
) -> None:
    response = reader.get("/", params={"page": "abc", **params})
    assert response.status_code == 200
    assert message in response.text
    assert 'role="alert"' in response.text


def test_a_key_of_a_known_evaluator_is_sortable_even_if_not_listed(
    reader: httpx.Client, seeded: Seeded
) -> None:
    # The metric list is a cache of recent keys; an older evaluation's key (e.g. an lm_eval
    # task run once) must still sort and filter instead of being refused.
    for params in ({"sort": "json_schema.some_old_key"}, {"metric": "json_schema.some_old_key"}):
        page = reader.get("/", params=params).text
        assert "Cannot sort" not in page and "Unknown metric" not in page, params
        assert seeded.runs["good"].name in page


def test_table_partial_for_htmx(reader: httpx.Client, seeded: Seeded) -> None:
    response = reader.get(
        "/runs/table",
        params={"experiment": seeded.experiment, "status": "failed", "tag": ""},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "<html" not in response.text and "<h1>" not in response.text
    assert ids(response.text) == [seeded.runs["broken"].id]
    assert response.headers["HX-Push-Url"].startswith("/?experiment=")
    assert "tag=" not in response.headers["HX-Push-Url"]


def test_pagination(registry: LocalRegistry, reader: httpx.Client) -> None:
    experiment = unique("paged")
    exp = make_experiment(registry, name=experiment)
    made = [make_run(registry, experiment=exp, name=f"{experiment}-{i:02d}").id for i in range(53)]
    first = page(reader, experiment=experiment)
    assert "53 runs" in first and "Page 1 of 2" in first
    assert ids(first) == made[::-1][:50]  # newest first
    assert 'rel="next"' in first and 'rel="prev"' not in first
    next_href = re.search(r'<a href="([^"]+)" rel="next"', first)
    assert next_href is not None
    second = reader.get(next_href.group(1).replace("&amp;", "&"))
    assert ids(second.text) == made[::-1][50:]
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text
    # A page past the end shows the last one instead of an empty table.
    assert ids(page(reader, experiment=experiment, page="9")) == made[::-1][50:]


def test_needs_login(server: LiveServer, seeded: Seeded) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        response = anonymous.get("/", params={"status": "failed"})
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2F%3Fstatus%3Dfailed"
        partial = anonymous.get("/runs/table")
        assert partial.status_code == 303


def test_new_metric_appears_in_filter_and_sorts(
    registry: LocalRegistry, reader: httpx.Client, seeded: Seeded
) -> None:
    assert "latency.p50_ms" not in page(reader)
    best = seeded.runs["worse"].best_checkpoint_id
    assert best is not None
    make_evaluation(
        registry,
        checkpoint=registry.get_checkpoint(checkpoint_id=best),
        evaluator="latency",
        config_hash="d" * 16,
        metrics={"p50_ms": 41.5},
    )
    html = page(reader, experiment=seeded.experiment, sort="latency.p50_ms")
    assert '<option value="latency.p50_ms"' in html
    assert ids(html)[0] == seeded.runs["worse"].id  # the only run that has it
    assert dict(rows(html))[seeded.runs["worse"].id]["latency.p50_ms"] == "41.5"
