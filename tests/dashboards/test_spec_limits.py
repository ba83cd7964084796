"""The compare page parses stored specs with the spec loader's limits (no alias bomb stall)."""

from __future__ import annotations

import html
import uuid

import httpx

from tests.helpers import LiveServer
from tests.service.api.test_spec_limits import alias_bomb

GOOD_SPEC = "name: ok\nbase_model: ./model\ndata: {train: train.jsonl, format: vertex}\n"


def _run(server: LiveServer, experiment_id: int, name: str, spec: str) -> int:
    """Record a run with `spec` as its stored text through the API (a write token)."""
    headers = {"Authorization": f"Bearer {server.make_token('write', name='bomber')}"}
    body = {"name": name, "experiment_id": experiment_id, "spec_text": spec, "spec_hash": "a" * 64}
    response = httpx.post(f"{server.url}/api/v1/runs", json=body, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_compare_page_shows_a_stored_alias_bomb_as_one_message(
    server: LiveServer, reader: httpx.Client
) -> None:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    name = f"bomb-{uuid.uuid4().hex[:6]}"
    experiment = httpx.post(
        f"{server.url}/api/v1/experiments", json={"name": name}, headers=admin, timeout=30
    ).json()
    good = _run(server, experiment["id"], f"{name}-ok", GOOD_SPEC)
    bad = _run(server, experiment["id"], f"{name}-bomb", alias_bomb())
    page = reader.get("/compare", params={"run": [str(good), str(bad)]}, timeout=60)
    assert page.status_code == 200
    # The old page expanded 10**7 values into a ~100 MB table.
    assert len(page.content) < 100_000
    text = html.unescape(page.text)
    assert "(spec not shown: spec has over 100000 values once aliases are expanded)" in text
    assert "data.format" in text  # the other run's params are still there
