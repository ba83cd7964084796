"""The whole dashboard against a live server on PostgreSQL (the team set-up).

The SQLite modules cover each page in depth; this one checks that every page's SQL
(JSON extraction on JSONB, the metric sort and range, paging, the job and alias queries)
answers the same on Postgres, through a real `evalctl serve` with EVALCTL_DATABASE_URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dashboards.conftest import csrf_of, login
from tests.dashboards.seed import Seeded, seed
from tests.factories import CHECKPOINT_ROOT
from tests.helpers import LiveServer, start_server

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Seeded]]:
    from tests.service.conftest import _database

    home: Path = tmp_path_factory.mktemp("dash-pg") / "home"
    with _database("postgres", home.parent) as url:
        server = start_server(home, db_url=url, storage_roots=[CHECKPOINT_ROOT])
        try:
            seeded = seed(url, f"sqlite:///{home / 'mlflow.db'}", experiment="orders-pg")
            yield server, seeded
        finally:
            server.stop()


@pytest.fixture(scope="module")
def client(pg_server: tuple[LiveServer, Seeded]) -> Iterator[httpx.Client]:
    server, _ = pg_server
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert login(client, server.make_token("write")).status_code == 200
        yield client


def _run_names(html: str) -> list[str]:
    return re.findall(r'<a href="/runs/\d+">([^<]+)</a>', html)


def test_runs_page_filters_and_sorts_in_postgres(
    client: httpx.Client, pg_server: tuple[LiveServer, Seeded]
) -> None:
    runs = pg_server[1].runs
    assert set(_run_names(client.get("/").text)) == {r.name for r in runs.values()}
    by_valid = client.get("/", params={"sort": "json_schema.valid_rate", "order": "desc"}).text
    assert _run_names(by_valid) == [runs["good"].name, runs["worse"].name, runs["broken"].name]
    ranged = client.get("/", params={"metric": "json_schema.valid_rate", "min": "0.9"}).text
    assert _run_names(ranged) == [runs["good"].name]
    tagged = client.get("/", params={"tag": "arm=worse"}).text
    assert _run_names(tagged) == [runs["worse"].name]


def test_run_compare_and_evaluation_pages_in_postgres(
    client: httpx.Client, pg_server: tuple[LiveServer, Seeded]
) -> None:
    runs = pg_server[1].runs
    run_page = client.get(f"/runs/{runs['good'].id}")
    assert run_page.status_code == 200 and pg_server[1].runner_name in run_page.text
    compared = client.get("/compare", params=[("run", runs["good"].id), ("run", runs["worse"].id)])
    assert compared.status_code == 200
    assert all(f'data-example="ex-{i:02d}"' in compared.text for i in (1, 3, 5, 9))
    evaluation = runs["worse"].evaluation_ids["json_schema"]
    invalid = client.get(f"/evaluations/{evaluation}", params={"show": "invalid_json"})
    assert invalid.status_code == 200 and "4 of 20 examples" in invalid.text


def test_registry_and_jobs_pages_in_postgres(
    client: httpx.Client, pg_server: tuple[LiveServer, Seeded]
) -> None:
    seeded = pg_server[1]
    page = client.get("/registry")
    assert page.status_code == 200 and "@production" in page.text
    moved = client.post(
        "/registry/promote",
        data={
            "csrf_token": csrf_of(page.text),
            "experiment_id": str(seeded.experiment_id),
            "alias": "staging",
            "run_id": str(seeded.runs["worse"].id),
            "skip_gate": "on",
        },
        follow_redirects=True,
    )
    assert moved.status_code == 200 and "@staging" in moved.text
    assert "skipped" in moved.text and seeded.runs["worse"].name in moved.text
    jobs = client.get("/jobs", params={"status": "failed"}).text
    assert "CUDA out of memory at step 3" in jobs
