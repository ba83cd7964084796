"""The compare page against a live server: parameters, metrics and tests, curves, regressions."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

import httpx
import pytest

from tests.dashboards.seed import Seeded
from tests.helpers import LiveServer


class _Tables(HTMLParser):
    """Collect each table's rows (attributes and cell texts) and each section's tables."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[tuple[dict[str, str], list[str]]]] = {}
        self.sections: list[tuple[dict[str, str], list[tuple[dict[str, str], list[str]]]]] = []
        self._table: list[tuple[dict[str, str], list[str]]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.sections.append((found, []))
        elif tag == "table":
            if "id" in found:
                self._table = self.tables.setdefault(found["id"], [])
            else:  # the only tables without an id are the per-section example tables
                self._table = self.sections[-1][1] if self.sections else []
        elif tag == "tr" and self._table is not None:
            self._table.append((found, []))
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self._table[-1][1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> _Tables:
    parser = _Tables()
    parser.feed(page)
    return parser


def compare(client: httpx.Client, *refs: object, baseline: object = None) -> httpx.Response:
    params = [("run", str(r)) for r in refs]
    if baseline is not None:
        params.append(("baseline", str(baseline)))
    return client.get("/compare", params=params)


def rows_by(table: list[tuple[dict[str, str], list[str]]], attr: str) -> dict[str, list[str]]:
    return {attrs[attr]: cells for attrs, cells in table if attr in attrs}


@pytest.fixture(scope="module")
def two(reader: httpx.Client, seeded: Seeded) -> str:
    response = compare(reader, seeded.runs["good"].id, seeded.runs["worse"].id)
    assert response.status_code == 200, response.text
    return response.text


def test_runs_table_and_sections(two: str, seeded: Seeded) -> None:
    assert two.count("<h1>") == 1 and "Compare runs" in two
    for heading in ("Parameters", "Metrics", "Curves", "Examples that got worse"):
        assert f"<h2>{heading}</h2>" in two
    assert 'href="/">Back to runs</a>' in two
    runs = parse(two).tables["runs-compared"][1:]
    good, worse = seeded.runs["good"], seeded.runs["worse"]
    assert [cells[1].split(" #")[0] for _, cells in runs] == [good.name, worse.name]
    assert f'href="/runs/{good.id}"' in two and f'href="/runs/{worse.id}"' in two
    assert runs[0][1][0] == "baseline" and runs[1][1][0] == "candidate make baseline"
    assert runs[0][1][2] == "succeeded" and runs[0][1][4] == "20"


def test_params_show_differences_and_hide_equal_rows(two: str) -> None:
    params = parse(two).tables["params"]
    by_name = rows_by(params, "data-param")
    assert by_name["training.lora.r"][1:] == ["16", "8"]
    # Read as the spec loader reads it (YAML 1.2: `1e-3` is a number, as training sees it).
    assert by_name["training.learning_rate"][1:] == ["0.001", "0.0002"]
    assert by_name["evaluators.0.perplexity.data"][1:] == ["eval.jsonl", "eval.jsonl"]
    classes = {attrs["data-param"]: attrs.get("class", "") for attrs, _ in params if attrs}
    assert classes["training.lora.r"] == "" and classes["training.lora.alpha"] == "same"
    assert classes["git_sha"] == "same" and classes["tags.arm"] == ""
    assert classes["dataset_hashes.train"] == "same"
    assert by_name["base_model_hash"][1] == "abababababab…"  # hashes are shortened
    differing = sum(1 for c in classes.values() if c != "same")
    assert f"{differing} of {len(classes)} parameters differ" in two
    checkbox = re.search(r"<input[^>]*data-toggle-same=\"params\"[^>]*>", two)
    assert checkbox and "checked" in checkbox.group(0)
    assert '<label for="params-differences">Differences only</label>' in two


def test_metrics_deltas_cues_and_significance(two: str) -> None:
    tables = parse(two).tables
    header = tables["metrics"][0][1]
    assert any(h.startswith("Significance") for h in header)
    metrics = rows_by(tables["metrics"], "data-metric")
    _, base, cand, delta, significance = metrics["json_schema.valid_rate"]
    assert (base, cand) == ("1", "0.8")
    assert delta.startswith("-0.2") and "▼ worse" in delta
    # McNemar on 4 discordant pairs: p = 1/16, not below 0.05.
    assert "p = 0.0625" in significance and "CI [" in significance
    assert "not significant" in significance
    assert "▼ worse" in metrics["classification.accuracy"][3]
    assert "p = 0.0625" in metrics["classification.accuracy"][4]
    assert metrics["perplexity.nll"][3].startswith("+") and "worse" in metrics["perplexity.nll"][3]
    # lower is better for llama_guard's unsafe rate; nothing moved here
    assert "= same" in metrics["llama_guard.response_unsafe_rate"][3]
    tests = rows_by(tables["paired-tests"], "data-test")
    assert tests["json_schema.valid"][2].startswith("mcnemar_exact (b=4, c=0)")
    assert tests["json_schema.valid"][6] == "0.0625"


def test_worse_examples_are_exactly_the_regressions(two: str) -> None:
    sections = {s[0]["data-evaluator"]: s[1] for s in parse(two).sections if s[0]}
    wrong = ["ex-01", "ex-03", "ex-05", "ex-09"]
    for evaluator in ("json_schema", "classification"):
        rows = [cells for attrs, cells in sections[evaluator] if "data-example" in attrs]
        assert [cells[0] for cells in rows] == wrong, evaluator
    json_rows = {cells[0]: cells for attrs, cells in sections["json_schema"] if attrs}
    _, scores, prompt, before, after, reference = json_rows["ex-03"]
    assert "valid: 1 → 0" in scores and "exact_match: 1 → 0" in scores
    assert prompt == "Order 3: customer c3 wants 3 items"
    assert json.loads(before) == {"customer": "c3", "qty": 3}
    assert after == "Sure! The order is c3"
    assert json.loads(reference) == {"customer": "c3", "qty": 3}
    classification = {cells[0]: cells for attrs, cells in sections["classification"] if attrs}
    assert classification["ex-01"][5] == "negative"  # the gold label
    assert not [a for a, _ in sections["llama_guard"] if "data-example" in a]
    assert re.search(r'href="/evaluations/\d+">#\d+ \(baseline\)', two)


def test_the_oldest_run_is_the_baseline_whatever_the_order(
    reader: httpx.Client, seeded: Seeded
) -> None:
    good, worse = seeded.runs["good"], seeded.runs["worse"]
    for refs in ((good.id, worse.id), (worse.id, good.id)):  # runs page ticks: newest first
        compared = parse(compare(reader, *refs).text).tables["runs-compared"]
        assert [cells[1].split(" #")[0] for _, cells in compared[1:]] == [good.name, worse.name]
    unknown = compare(reader, good.id, worse.id, baseline=seeded.runs["broken"].id)
    assert unknown.status_code == 409 and "not one of the runs compared" in unknown.text


def test_swapped_baseline_reads_as_better(reader: httpx.Client, seeded: Seeded) -> None:
    good, worse = seeded.runs["good"], seeded.runs["worse"]
    page = compare(reader, good.id, worse.id).text
    assert f"baseline={worse.id}" in page  # the "make baseline" link
    response = compare(reader, good.id, worse.id, baseline=worse.id)
    assert response.status_code == 200, response.text
    tables = parse(response.text)
    valid = rows_by(tables.tables["metrics"], "data-metric")["json_schema.valid_rate"]
    assert valid[3].startswith("+0.2") and "▲ better" in valid[3]
    assert "p = 0.0625" in valid[4]  # the mirrored one-sided test: is it better?
    tests = rows_by(tables.tables["paired-tests"], "data-test")
    assert tests["json_schema.valid"][2].startswith("mcnemar_exact (b=4, c=0)")
    sections = {s[0]["data-evaluator"]: s[1] for s in tables.sections if s[0]}
    assert not [a for a, _ in sections["json_schema"] if "data-example" in a]
    assert "No example got worse." in response.text


def test_curves_one_series_per_run_and_key(two: str, seeded: Seeded) -> None:
    names = {seeded.runs["good"].name, seeded.runs["worse"].name}
    for key in ("loss", "eval_loss", "learning_rate"):
        found = re.search(rf'<script type="application/json" id="curve-{key}">(.*?)</script>', two)
        assert found, key
        spec = json.loads(html.unescape(found.group(1)))
        assert spec["title"] == key and spec["x_label"] == "step"
        assert {s["label"] for s in spec["series"]} == names
        for series in spec["series"]:
            assert 0 < len(series["x"]) == len(series["y"]) <= 2000
        assert f'data-chart="curve-{key}"' in two
    loss = re.search(r'id="curve-loss">(.*?)</script>', two)
    assert loss and len(json.loads(loss.group(1))["series"][0]["x"]) == 300


def test_three_runs_by_name_with_a_broken_one(reader: httpx.Client, seeded: Seeded) -> None:
    runs = seeded.runs
    response = compare(reader, runs["good"].name, runs["worse"].id, runs["broken"].name)
    assert response.status_code == 200, response.text
    tables = parse(response.text).tables
    assert len(tables["metrics"][0][1]) == 2 + 3 * 2
    valid = rows_by(tables["metrics"], "data-metric")["json_schema.valid_rate"]
    assert valid[5:] == ["–", "–", "–"]  # broken: no checkpoint, no delta, no test
    broken = tables["runs-compared"][3][1]
    assert broken[2] == "failed" and broken[3] == "–"
    r = rows_by(tables["params"], "data-param")["training.lora.r"]
    assert r[1:] == ["16", "8", "8"]
    spec = json.loads(re.findall(r'id="curve-loss">(.*?)</script>', response.text)[0])
    assert len(spec["series"]) == 2  # the broken run logged no curve


@pytest.mark.parametrize(
    ("refs", "status", "message"),
    [
        (("good",), 409, "at least 2 runs"),
        ((), 409, "at least 2 runs"),
        (("good", "no-such-run-xyz"), 404, "run &#39;no-such-run-xyz&#39; not found"),
        (("good",) * 11, 409, "at most 10 runs"),
        (("good", "good"), 409, "given twice"),
    ],
)
def test_bad_requests_give_a_clear_page(
    reader: httpx.Client, seeded: Seeded, refs: tuple[str, ...], status: int, message: str
) -> None:
    names = [seeded.runs[r].name if r in seeded.runs else r for r in refs]
    response = compare(reader, *names)
    assert response.status_code == status
    assert message in response.text and 'class="error"' in response.text
    assert "Traceback" not in response.text


def test_needs_login(server: LiveServer, seeded: Seeded) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        response = compare(anonymous, seeded.runs["good"].id, seeded.runs["worse"].id)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=%2Fcompare")
