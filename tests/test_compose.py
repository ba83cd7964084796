"""The deployment files: compose.yaml (services, profiles, GPU reservation) and Dockerfile."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose_config() -> dict[str, Any]:
    """Return compose.yaml as `docker compose config` resolves it (all profiles on)."""
    if shutil.which("docker") is None:
        pytest.skip("the docker client is not installed")
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if plugin.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    done = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "compose.yaml"), "--profile", "*", "config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def _assert_services(config: dict[str, Any]) -> None:
    services = config["services"]
    assert {"postgres", "evalctl", "runner", "runner-gpu"} <= set(services)
    assert "healthcheck" in services["postgres"]
    service = services["evalctl"]
    assert service["command"] == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    assert service["environment"]["EVALCTL_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in service["environment"]["EVALCTL_DATABASE_URL"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Bound to 0.0.0.0, so the dashboard's trusted hosts are named, not "any".
    assert "*" not in service["environment"]["EVALCTL_SERVER__TRUSTED_HOSTS"].split(",")
    for name in ("runner", "runner-gpu"):
        runner = services[name]
        assert runner["command"][:2] == ["runner", "start"]
        assert runner["environment"]["EVALCTL_URL"] == "http://evalctl:8080"
        assert "evalctl" in runner["depends_on"]
        # The service accepts the checkpoints a runner writes under its --work-dir.
        work_dir = runner["command"][runner["command"].index("--work-dir") + 1]
        assert work_dir in json.loads(service["environment"]["EVALCTL_STORAGE__ROOTS"])
    assert services["runner"]["command"][2:4] == ["--labels", "cpu"]
    assert services["runner"].get("profiles") in (None, [])
    gpu = services["runner-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"
    assert devices[0]["count"] in ("all", -1)  # compose normalises "all" to -1
    assert devices[0]["capabilities"] == ["gpu"]


def _volume_targets(service: dict[str, Any]) -> set[str]:
    return {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in service["volumes"]}


def test_compose_config_resolves_the_stack():
    config = _compose_config()
    _assert_services(config)
    services = config["services"]
    assert "/shared" in _volume_targets(services["runner"]) & _volume_targets(services["evalctl"])


def test_compose_file_declares_the_stack():
    # Without the compose plugin: the same checks on the file as written (anchors merged).
    config = yaml.safe_load((ROOT / "compose.yaml").read_text())
    _assert_services(config)
    env_file = config["services"]["runner"]["env_file"][0]
    assert env_file == {"path": "runner.env", "required": False}  # the token lives there


def _dockerfile() -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def test_dockerfile_runs_evalctl_as_a_non_root_user():
    rows = _dockerfile()
    known = {"FROM", "ARG", "ENV", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE", "ENTRYPOINT", "CMD"}
    assert {word for word, _ in rows} <= known
    stages = [rest for word, rest in rows if word == "FROM"]
    # The dashboard's npm assets are built in a node stage; the image itself is Python.
    assert stages == ["node:20-slim AS assets", "python:3.11-slim"]
    assert ("COPY", "--from=assets /assets/vendor ./dashboards/static/vendor") in rows
    assets = next(rest for word, rest in rows if word == "RUN" and "npm ci" in rest)
    assert "htmx.min.js" in assets and "uPlot.iife.min.js" in assets
    users = [rest for word, rest in rows if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [rest for word, rest in rows if word == "ENTRYPOINT"] == ['["evalctl"]']
    runs = [rest for word, rest in rows if word == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if "torch==" in r)
    install_at = next(i for i, r in enumerate(runs) if "pip install -e ." in r)
    assert torch_at < install_at  # the chosen torch wheel first, then evalctl
    assert ("ARG", "TORCH_INDEX=https://download.pytorch.org/whl/cpu") in rows
    # Everything the installed package needs at run time is copied in.
    copied = {rest.split()[0] for word, rest in rows if word == "COPY" and "--from" not in rest}
    assert {"service", "runners", "evaluators", "evalctl", "alembic"} <= copied
