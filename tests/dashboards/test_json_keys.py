"""Metric, sort and tag keys with quotes or NUL get the HTML 400 page, on SQLite and Postgres.

The attack: `/?sort=json_schema.valid"rate` put the key into SQLite's JSON path unescaped;
the query failed and the dashboard answered JSON 503 "database unavailable" (and logged an
outage). A NUL byte does the same to Postgres.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.dashboards.conftest import login
from tests.dashboards.seed import seed
from tests.helpers import LiveServer, start_server
from tests.service.conftest import BACKENDS, _database

BAD_METRICS = [
    'json_schema.valid"rate',
    "json_schema.valid\x00rate",
    "json_schema.x') OR 1=1 --",
    "json_schema." + "a" * 300,
]


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, httpx.Client]]:
    home = tmp_path_factory.mktemp(f"keys-{request.param}") / "home"
    with _database(request.param, home.parent) as url:
        server = start_server(home, db_url=url)
        try:
            seed(url, f"sqlite:///{home / 'mlflow.db'}", experiment=f"keys-{request.param}")
            with httpx.Client(base_url=server.url, timeout=30) as client:
                assert login(client, server.make_token("read")).status_code == 200
                yield server, client
        finally:
            server.stop()


def _assert_bad_request(response: httpx.Response, what: str) -> None:
    assert response.status_code == 400, response.text[:300]
    assert response.headers["content-type"].startswith("text/html")
    assert "Bad request" in response.text
    assert f"{what} name" in response.text or f"{what} key" in response.text


@pytest.mark.parametrize("key", BAD_METRICS)
@pytest.mark.parametrize("path", ["/", "/runs/table"])
def test_bad_sort_and_metric_keys_get_the_html_400_page(
    live: tuple[LiveServer, httpx.Client], path: str, key: str
) -> None:
    _, client = live
    _assert_bad_request(client.get(path, params={"sort": key}), "metric")
    _assert_bad_request(client.get(path, params={"metric": key, "min": "0"}), "metric")


@pytest.mark.parametrize("tag", ['a"b=1', "a\x00b=1", "a\\b=1"])
def test_bad_tag_keys_get_the_html_400_page(
    live: tuple[LiveServer, httpx.Client], tag: str
) -> None:
    _, client = live
    _assert_bad_request(client.get("/", params={"tag": tag}), "tag")


def test_good_keys_still_work_and_nothing_was_logged_as_an_outage(
    live: tuple[LiveServer, httpx.Client],
) -> None:
    server, client = live
    assert client.get("/", params={"sort": "json_schema.valid_rate"}).status_code == 200
    assert client.get("/", params={"tag": "arm with space=worse"}).status_code == 200
    assert "database unavailable" not in (server.home / "server.log").read_text()
