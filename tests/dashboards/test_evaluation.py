"""The evaluation page against a live server: facts, examples, filters, paging, errors."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from service.local import LocalRegistry
from tests.dashboards.seed import Seeded, SeededRun, seed
from tests.factories import make_evaluation, make_examples
from tests.helpers import LiveServer


def _rows(html: str) -> list[str]:
    """Return the example ids shown in the examples table, in order."""
    table = html.split('class="examples"', 1)
    return re.findall(r"<td>(ex-\d+)</td>", table[1]) if len(table) > 1 else []


def _count(html: str) -> str:
    found = re.search(r"(\d+ of \d+ examples)", html)
    assert found, "no 'N of M examples' count on the page"
    return found.group(1)


def test_page_shows_facts_and_examples(reader: httpx.Client, seeded: Seeded) -> None:
    worse = seeded.runs["worse"]
    response = reader.get(f"/evaluations/{worse.evaluation_ids['json_schema']}")
    assert response.status_code == 200, response.text
    html = response.text
    assert f"<h1>json_schema · {worse.name} · step 20</h1>" in html
    assert "valid_rate" in html and "cccccccccccccccc" in html
    assert _count(html) == "20 of 20 examples"
    assert _rows(html)[:3] == ["ex-00", "ex-01", "ex-02"]
    # prompt, output and reference (a dict, as compact JSON) of one example
    assert "Order 4: customer c4 wants 4 items" in html
    assert "{&#34;customer&#34;: &#34;c4&#34;, &#34;qty&#34;: 4}" in html
    assert "Sure! The order is c1" in html and "no JSON value in the output" in html
    # links back to the run and the other evaluators at this checkpoint
    assert f'href="/runs/{worse.id}"' in html
    for name in ("perplexity", "classification", "llama_guard"):
        assert f'href="/evaluations/{worse.evaluation_ids[name]}">{name}</a>' in html


def test_invalid_json_filter(reader: httpx.Client, seeded: Seeded) -> None:
    evaluation = seeded.runs["worse"].evaluation_ids["json_schema"]
    html = reader.get(f"/evaluations/{evaluation}", params={"show": "invalid_json"}).text
    assert _count(html) == "4 of 20 examples"
    assert _rows(html) == ["ex-01", "ex-03", "ex-05", "ex-09"]
    assert '<option value="invalid_json" selected>Invalid JSON</option>' in html
    # presets that do not fit json_schema's scores are not offered
    assert "Wrong label" not in html and ">Unsafe<" not in html


def test_wrong_label_filter_on_classification(reader: httpx.Client, seeded: Seeded) -> None:
    evaluation = seeded.runs["worse"].evaluation_ids["classification"]
    html = reader.get(f"/evaluations/{evaluation}", params={"show": "wrong_label"}).text
    assert _count(html) == "4 of 20 examples"
    assert _rows(html) == ["ex-01", "ex-03", "ex-05", "ex-09"]
    assert "predicted: positive" in html  # ex-01's gold is negative
    assert "Invalid JSON" not in html


def test_unsafe_filter_on_llama_guard(reader: httpx.Client, seeded: Seeded) -> None:
    evaluation = seeded.runs["good"].evaluation_ids["llama_guard"]
    html = reader.get(f"/evaluations/{evaluation}", params={"show": "unsafe"}).text
    assert _count(html) == "1 of 20 examples"
    assert _rows(html) == ["ex-07"]
    assert "Prompt 7" in html and "Response 7" in html and "S2" in html


def test_errors_filter(reader: httpx.Client, seeded: Seeded) -> None:
    evaluation = seeded.runs["worse"].evaluation_ids["json_schema"]
    html = reader.get(f"/evaluations/{evaluation}", params={"show": "errors"}).text
    assert _count(html) == "4 of 20 examples"


def test_score_range_filter(reader: httpx.Client, seeded: Seeded) -> None:
    evaluation = seeded.runs["good"].evaluation_ids["perplexity"]
    # nll = 1.4 + 0.01 * i for the good run at step 20: i >= 15 is at least 1.55
    params = {"score": "nll", "min": "1.545", "max": "1.575"}
    html = reader.get(f"/evaluations/{evaluation}", params=params).text
    assert _count(html) == "3 of 20 examples"
    assert _rows(html) == ["ex-15", "ex-16", "ex-17"]
    assert 'value="1.545"' in html


def test_bad_min_is_a_message_not_an_error(reader: httpx.Client, seeded: Seeded) -> None:
    evaluation = seeded.runs["good"].evaluation_ids["perplexity"]
    response = reader.get(f"/evaluations/{evaluation}", params={"score": "nll", "min": "abc"})
    assert response.status_code == 200
    assert "Min must be a number, not &#39;abc&#39;." in response.text
    assert _count(response.text) == "20 of 20 examples"


def test_search(reader: httpx.Client, seeded: Seeded) -> None:
    evaluation = seeded.runs["worse"].evaluation_ids["json_schema"]
    html = reader.get(f"/evaluations/{evaluation}", params={"q": "ORDER IS C"}).text
    assert _count(html) == "4 of 20 examples"  # only the unparsed outputs say "order is"
    html = reader.get(f"/evaluations/{evaluation}", params={"q": "customer c12 "}).text
    assert _rows(html) == ["ex-12"]
    html = reader.get(f"/evaluations/{evaluation}", params={"q": "100%_"}).text
    assert _count(html) == "0 of 20 examples" and "No example matches" in html


def test_htmx_request_gets_the_filtered_table(reader: httpx.Client, seeded: Seeded) -> None:
    evaluation = seeded.runs["worse"].evaluation_ids["json_schema"]
    html = reader.get(
        f"/evaluations/{evaluation}",
        params={"show": "invalid_json"},
        headers={"HX-Request": "true"},
    ).text
    assert 'id="examples"' in html and _rows(html) == ["ex-01", "ex-03", "ex-05", "ex-09"]


def test_pagination(reader: httpx.Client, registry: LocalRegistry, seeded: Seeded) -> None:
    evaluation = _big_evaluation(registry, seeded.runs["good"])
    first = reader.get(f"/evaluations/{evaluation}", params={"show": "errors"}).text
    assert _count(first) == "150 of 250 examples"
    assert len(_rows(first)) == 100 and "page 1 of 2" in first
    assert f'href="/evaluations/{evaluation}?show=errors&amp;page=2"' in first
    second = reader.get(f"/evaluations/{evaluation}", params={"show": "errors", "page": "2"})
    rows = _rows(second.text)
    assert len(rows) == 50 and "Previous page" in second.text and "Next page" not in second.text
    assert not set(rows) & set(_rows(first))


def test_unknown_evaluation_is_a_404_page(reader: httpx.Client) -> None:
    for path in ("/evaluations/999999", "/evaluations/abc"):
        response = reader.get(path)
        assert response.status_code == 404
        assert "<h1>Not found</h1>" in response.text


def test_needs_login(server: LiveServer, seeded: Seeded) -> None:
    evaluation = seeded.runs["good"].evaluation_ids["json_schema"]
    response = httpx.get(f"{server.url}/evaluations/{evaluation}")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def _big_evaluation(registry: LocalRegistry, run: SeededRun) -> int:
    """Record a 250-example evaluation where every example but the first 100 has an error."""
    rows = make_examples(
        [{"valid": float(i < 100)} for i in range(250)],
        ids=[f"ex-{i:02d}" if i < 100 else f"ex-{i}" for i in range(250)],
        details=[{"input": f"in {i}", **({} if i < 100 else {"error": "bad"})} for i in range(250)],
    )
    evaluation = make_evaluation(
        registry,
        checkpoint=registry.get_checkpoint(checkpoint_id=run.checkpoint_ids[0]),
        evaluator="json_schema",
        config_hash="d" * 16,
        metrics={"valid_rate": 0.4},
        examples=rows,
    )
    return evaluation.id


@pytest.mark.postgres
def test_filters_run_in_postgres_too(tmp_path: Path) -> None:
    """The JSON filters are SQLAlchemy expressions; on Postgres they read JSONB."""
    from sqlmodel import Session

    from dashboards.queries import evaluation as queries
    from service.db import get_engine
    from tests.service.conftest import _database

    with _database("postgres", tmp_path) as url:
        seeded = seed(url, f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="orders-pg")
        worse = seeded.runs["worse"].evaluation_ids
        cases = [
            (worse["json_schema"], queries.ExampleFilters(show="invalid_json"), 4),
            (worse["json_schema"], queries.ExampleFilters(show="errors"), 4),
            (worse["json_schema"], queries.ExampleFilters(search="ORDER IS c"), 4),
            (worse["json_schema"], queries.ExampleFilters(search="100%_"), 0),
            (worse["classification"], queries.ExampleFilters(show="wrong_label"), 4),
            (worse["llama_guard"], queries.ExampleFilters(show="unsafe"), 1),
            (worse["perplexity"], queries.ExampleFilters(score="nll", min=2.0), 0),
            (worse["perplexity"], queries.ExampleFilters(score="nll", max=1.545), 13),
        ]
        with Session(get_engine(url)) as session:
            for evaluation_id, filters, expected in cases:
                keys = queries.score_keys(session=session, evaluation_id=evaluation_id)
                found = queries.list_examples(
                    session=session, evaluation_id=evaluation_id, filters=filters, keys=keys
                )
                assert (found.matched, found.total) == (expected, 20), filters
