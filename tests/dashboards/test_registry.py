"""The registry page against a live server: aliases, history, promote with the gate, roll back.

The tests share one seeded experiment and run in file order: @production starts at the
`good` run's best checkpoint; the gate refuses `worse`; skipping the gate moves it; a roll
back returns it to `good`.
"""

from __future__ import annotations

import re

import httpx

from service.local import LocalRegistry
from tests.dashboards.conftest import csrf_of
from tests.dashboards.seed import Seeded
from tests.factories import make_checkpoint
from tests.helpers import LiveServer


def _production(registry: LocalRegistry, seeded: Seeded, name: str = "production") -> int:
    return registry.get_alias(experiment_id=seeded.experiment_id, name=name).checkpoint_id


def _page(client: httpx.Client, seeded: Seeded) -> str:
    response = client.get("/registry", params={"experiment": seeded.experiment_id})
    assert response.status_code == 200, response.text
    return response.text


def _history(html: str, alias: str = "production") -> str:
    """Return the HTML of an alias's history table."""
    return html.split(f"History of @{alias}</h3>", 1)[1].split("</table>", 1)[0]


def _promote(client: httpx.Client, seeded: Seeded, **fields: object) -> httpx.Response:
    csrf = csrf_of(_page(client, seeded))
    data = {"csrf_token": csrf, "experiment_id": seeded.experiment_id, "alias": "production"}
    return client.post("/registry/promote", data={**data, **fields})


def test_lists_production_with_history(reader: httpx.Client, seeded: Seeded) -> None:
    html = _page(reader, seeded)
    assert "<h1>Registry</h1>" in html
    assert f">{seeded.experiment}</h2>" in html
    good = seeded.runs["good"]
    assert f">{good.name}</a> · step 20" in html
    history = _history(html)
    assert "promote" in history and "seed" in history
    assert "PASS</span> seeded" in history


def test_read_token_sees_no_forms_and_is_refused(reader: httpx.Client, seeded: Seeded) -> None:
    html = _page(reader, seeded)
    assert "Log in with a write token to promote or roll back" in html
    assert 'action="/registry/promote"' not in html and "Roll back @" not in html
    csrf = csrf_of(html)  # the logout form's: a valid token for this session
    worse = seeded.runs["worse"]
    for path, data in (
        ("/registry/promote", {"run_id": worse.id, "skip_gate": "1"}),
        ("/registry/rollback", {"alias": "production"}),
    ):
        body = {"csrf_token": csrf, "experiment_id": seeded.experiment_id, **data}
        response = reader.post(path, data=body)
        assert response.status_code == 403, response.text
        assert "scope write" in response.text


def test_csrf_is_checked(writer: httpx.Client, seeded: Seeded, registry: LocalRegistry) -> None:
    before = _production(registry, seeded)
    worse = seeded.runs["worse"]
    data = {"experiment_id": seeded.experiment_id, "run_id": worse.id, "skip_gate": "1"}
    for extra in ({}, {"csrf_token": "forged"}):
        response = writer.post("/registry/promote", data={**data, **extra})
        assert response.status_code == 403
        assert "CSRF" in response.text
    assert _production(registry, seeded) == before


def test_writer_sees_the_forms(writer: httpx.Client, seeded: Seeded) -> None:
    html = _page(writer, seeded)
    for label in ("Experiment", "Alias", "Run", "Checkpoint id", "Skip the gate"):
        assert re.search(rf'<label for="p-[a-z]+">{label}', html), label
    assert 'name="skip_gate" type="checkbox" value="1">' in html  # unchecked
    assert f'<option value="{seeded.runs["worse"].id}">' in html
    assert f'<option value="{seeded.runs["broken"].id}">' not in html  # failed runs are not offered
    # @production has one move, with nothing before it: no roll back button yet.
    assert "Roll back @production</button>" not in html and "nothing to roll back to" in html


def test_gate_refuses_the_worse_run(
    writer: httpx.Client, seeded: Seeded, registry: LocalRegistry
) -> None:
    good, worse = seeded.runs["good"], seeded.runs["worse"]
    response = _promote(writer, seeded, run_id=worse.id)
    assert response.status_code == 409
    html = response.text
    assert "The gate failed: @production was not moved." in html
    assert "FAIL</span> candidate run:" in html
    rules = html.split('aria-label="Gate result, rule by rule"', 1)[1].split("</table>", 1)[0]
    assert "gate.rules.0" in rules and "json_schema.valid_rate" in rules
    assert "0.8 is below min 0.9" in rules
    assert _production(registry, seeded) == good.best_checkpoint_id


def test_missing_evaluations_make_the_gate_an_error(
    writer: httpx.Client, seeded: Seeded, registry: LocalRegistry
) -> None:
    good = seeded.runs["good"]
    fresh = make_checkpoint(registry, run=registry.get_run(ref=str(good.id)), step=30)
    response = _promote(writer, seeded, checkpoint_id=fresh.id)
    assert response.status_code == 409
    html = response.text
    assert "The gate could not judge: @production was not moved." in html
    assert f"missing evaluations: json_schema on candidate ckpt:{fresh.id}" in html
    assert f"evalctl gate --spec SPEC --candidate ckpt:{fresh.id}" in html
    assert _production(registry, seeded) == good.best_checkpoint_id


def test_skip_the_gate_moves_the_alias(
    writer: httpx.Client, seeded: Seeded, registry: LocalRegistry
) -> None:
    worse = seeded.runs["worse"]
    response = _promote(writer, seeded, run_id=worse.id, skip_gate="1")
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith(
        f"/registry?experiment={seeded.experiment_id}&moved=production"
    )
    assert _production(registry, seeded) == worse.best_checkpoint_id
    html = writer.get(response.headers["location"]).text
    assert re.search(r'role="status"><strong>@production promoted</strong>', html)
    newest = _history(html).split("<tbody>", 1)[1].split("</tr>", 1)[0]
    assert "dashboard:releaser" in newest and "SKIPPED" in newest
    assert f">{worse.name}</a> · step 20" in newest
    event = registry.alias_history(experiment_id=seeded.experiment_id, name="production")[0]
    assert event.gate is not None and event.gate["verdict"] == "skipped"
    assert event.token_id is not None and event.version is not None


def test_roll_back_returns_to_the_good_checkpoint(
    writer: httpx.Client, seeded: Seeded, registry: LocalRegistry
) -> None:
    good = seeded.runs["good"]
    csrf = csrf_of(_page(writer, seeded))
    data = {"csrf_token": csrf, "experiment_id": seeded.experiment_id, "alias": "production"}
    response = writer.post("/registry/rollback", data=data)
    assert response.status_code == 303, response.text
    assert _production(registry, seeded) == good.best_checkpoint_id
    html = writer.get(response.headers["location"]).text
    assert "@production rolled back</strong>" in html
    newest = _history(html).split("<tbody>", 1)[1].split("</tr>", 1)[0]
    assert "rollback" in newest and "dashboard:releaser" in newest


def test_gate_pass_moves_a_new_alias_and_records_the_rules(
    writer: httpx.Client, seeded: Seeded, registry: LocalRegistry
) -> None:
    good = seeded.runs["good"]
    step10 = good.checkpoint_ids[1]
    response = _promote(writer, seeded, checkpoint_id=step10, alias="staging")
    assert response.status_code == 303, response.text
    assert _production(registry, seeded, "staging") == step10
    html = writer.get(response.headers["location"]).text
    history = _history(html, "staging")
    assert "PASS</span> candidate ckpt:" in history and "Gate rules (2)" in history
    assert "no significant drop" in history
    # @staging's only move has nothing before it: roll back is refused, clearly
    csrf = csrf_of(html)
    data = {"csrf_token": csrf, "experiment_id": seeded.experiment_id, "alias": "staging"}
    refused = writer.post("/registry/rollback", data=data)
    assert refused.status_code == 409
    assert (
        "@staging" in refused.text and "has no earlier checkpoint to roll back to" in refused.text
    )
    assert _production(registry, seeded, "staging") == step10


def test_bad_promotions_are_refused_with_a_reason(
    writer: httpx.Client, seeded: Seeded, registry: LocalRegistry
) -> None:
    before = _production(registry, seeded)
    worse = seeded.runs["worse"]
    cases = [
        (
            {"run_id": worse.id, "alias": "v3", "skip_gate": "1"},
            "not &#39;latest&#39; or v&lt;number&gt;",
        ),
        ({"run_id": "999999", "skip_gate": "1"}, "Cannot promote run:999999: run 999999 not found"),
        ({}, "Choose a run to promote, or give a checkpoint id."),
    ]
    for fields, message in cases:
        response = _promote(writer, seeded, **fields)
        assert response.status_code == 409 and message in response.text, response.text
    response = _promote(writer, seeded, run_id="first")
    assert response.status_code == 422 and "Run: choose from the list" in response.text
    assert _production(registry, seeded) == before


def test_bad_experiment_filter_is_a_message(reader: httpx.Client) -> None:
    response = reader.get("/registry", params={"experiment": "abc"})
    assert response.status_code == 200
    assert "&#39;abc&#39; is not an experiment id" in response.text


def test_a_malformed_gate_in_history_does_not_break_the_page(
    server: LiveServer, reader: httpx.Client, seeded: Seeded
) -> None:
    # Any write token may attach any JSON as a move's gate; history is append-only.
    token = server.make_token("write", name="odd-gates")
    odd = [{"summary": 5}, {"rules": 5}, {"verdict": ["a"]}, {"rules": [1, {"delta": "x"}]}, 7]
    good, worse = seeded.runs["good"].best_checkpoint_id, seeded.runs["worse"].best_checkpoint_id
    for i, gate in enumerate(odd):
        response = httpx.put(
            f"{server.url}/api/v1/aliases/{seeded.experiment_id}/odd",
            json={"checkpoint_id": good if i % 2 else worse, "actor": "api", "gate": gate},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code in (200, 422), response.text
    page = reader.get("/registry", params={"experiment": seeded.experiment_id})
    assert page.status_code == 200, page.text[:300]
    assert "@odd" in page.text and "ATTACHED" in page.text
