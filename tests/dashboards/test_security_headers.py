"""The dashboard's browser-facing guard: security headers, and a Host allow-list.

The defects: no Content-Security-Policy, X-Frame-Options or nosniff (a page could frame
the dashboard, and an injected script would run), and any Host header was served, so a
DNS-rebinding page could talk to a dashboard on loopback under its own origin.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.settings import ServerSettings
from tests.helpers import LiveServer, start_server

EXPECTED = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _assert_guarded(response: httpx.Response) -> None:
    csp = response.headers.get("content-security-policy", "")
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == "default-src 'self'", csp
    assert directives.get("script-src") == "script-src 'self'", csp
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, name


@pytest.mark.parametrize("path", ["/", "/registry", "/jobs", "/runs/999999", "/compare?run=1"])
def test_pages_carry_the_security_headers(reader: httpx.Client, path: str) -> None:
    response = reader.get(path)
    assert response.status_code in (200, 404, 409)
    _assert_guarded(response)


def test_login_page_assets_and_redirects_carry_them_too(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for path in ("/login", "/static/app.js", "/static/app.css", "/"):
            _assert_guarded(anonymous.get(path))


def test_templates_have_no_inline_script_or_style() -> None:
    templates = Path(__file__).resolve().parents[2] / "dashboards" / "templates"
    for template in templates.glob("*.html"):
        text = template.read_text()
        assert " style=" not in text and "<style" not in text, template.name
        for chunk in text.split("<script")[1:]:  # only data blocks and src= scripts
            assert chunk.lstrip().startswith(("src=", 'type="application/json"')), template.name


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil"]
)
def test_a_forged_host_is_refused(server: LiveServer, host: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.get("/login", headers={"Host": host})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "EVALCTL_SERVER__TRUSTED_HOSTS" in response.text
    _assert_guarded(response)


def test_a_forged_host_is_not_echoed_as_markup(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.get("/", headers={"Host": "<script>x</script>"})
    assert response.status_code == 400
    assert "<script>" not in response.text and "&lt;script&gt;" in response.text


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST:9999"])
def test_loopback_names_are_served(server: LiveServer, host: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/login", headers={"Host": host}).status_code == 200


def test_api_mlflow_and_probes_answer_any_host(server: LiveServer) -> None:
    """Runners reach the API by the server's public name; bearer tokens protect it."""
    token = server.make_token("read", name="runner-far-away")
    headers = {"Host": "evalctl.team.internal", "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/api/v1/runs", headers=headers).status_code == 200
        assert client.get("/healthz", headers=headers).status_code == 200
        mlflow = client.get(
            "/mlflow/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            headers=headers,
        )
        assert mlflow.status_code == 200, mlflow.text


def test_trusted_hosts_setting(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"EVALCTL_SERVER__TRUSTED_HOSTS": "dash.example.com, *.corp.example"}
    server = start_server(home, f"sqlite:///{home / 'evalctl.db'}", env=env)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:

            def status(host: str) -> int:
                return client.get("/login", headers={"Host": host}).status_code

            assert status("dash.example.com") == 200
            assert status("dash.example.com:443") == 200
            assert status("eu.corp.example") == 200
            assert status("corp.example") == 400
            assert status("127.0.0.1") == 400  # an explicit list replaces the default
    finally:
        server.stop()


def test_default_trusted_hosts_follow_the_bind_address() -> None:
    assert ServerSettings().dashboard_hosts() == ["localhost", "127.0.0.1", "[::1]"]
    assert ServerSettings(host="10.1.2.3").dashboard_hosts() == [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "10.1.2.3",
    ]
    assert ServerSettings(host="fd00::5").dashboard_hosts()[-1] == "[fd00::5]"
    # Bound to every interface, the server is reached by names it cannot know.
    assert ServerSettings(host="0.0.0.0").dashboard_hosts() == ["*"]
    assert ServerSettings(host="::").dashboard_hosts() == ["*"]
    assert ServerSettings(trusted_hosts="*").dashboard_hosts() == ["*"]
    assert ServerSettings(trusted_hosts='["A.example"]').dashboard_hosts() == ["a.example"]
