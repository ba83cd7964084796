"""Stored specs are parsed with the spec loader's limits: an alias bomb cannot stall anyone.

The attack: a few hundred bytes of YAML whose anchors nest x10 per level ("billion laughs")
stored as a run's `spec_text` (any write or runner token can record a run) made
`evalctl compare` and the dashboard's compare page expand it in full. And `POST
/api/v1/jobs` stored whatever spec text it was given for runners to choke on.
"""

from __future__ import annotations

import itertools
import string

import httpx

from tests.helpers import LiveServer, evalctl
from tests.service.api.conftest import JOB_SPEC_TEXT


def alias_bomb(levels: int = 7) -> str:
    """Return a spec whose aliases expand to 10**levels values (about 40 bytes a level)."""
    names = string.ascii_lowercase[:levels]
    lines = ["name: bomb", f"{names[0]}: &{names[0]} [{','.join(['x'] * 10)}]"]
    for prev, cur in itertools.pairwise(names):
        lines.append(f"{cur}: &{cur} [{','.join([f'*{prev}'] * 10)}]")
    return "\n".join(lines) + "\n"


def make_run(
    client: httpx.Client, server: LiveServer, experiment_id: int, name: str, spec: str
) -> int:
    """Record a run with `spec` as its stored text, and one checkpoint; return the run id."""
    body = {"name": name, "experiment_id": experiment_id, "spec_text": spec, "spec_hash": "a" * 64}
    run = client.post("/api/v1/runs", json=body)
    assert run.status_code == 201, run.text
    checkpoint = {
        "run_id": run.json()["id"],
        "step": 1,
        "path": str(server.home / "checkpoints" / name),
        "sha256": "c" * 64,
    }
    recorded = client.post("/api/v1/checkpoints", json=checkpoint)
    assert recorded.status_code == 200, recorded.text
    return int(run.json()["id"])


def test_bomb_is_small_and_expands_past_the_limit() -> None:
    from service.spec_loader import MAX_VALUES

    assert len(alias_bomb()) < 300
    assert MAX_VALUES < 10**7  # the default bomb expands past the limit


def test_cli_compare_refuses_a_stored_alias_bomb_in_one_line(
    server: LiveServer, unique_name: str, tmp_path
) -> None:
    token = server.make_token("write", name="bomber")
    with server.client(token) as client:
        experiment = client.post("/api/v1/experiments", json={"name": unique_name}).json()
        good = make_run(client, server, experiment["id"], f"{unique_name}-ok", JOB_SPEC_TEXT)
        bad = make_run(client, server, experiment["id"], f"{unique_name}-bomb", alias_bomb())
    reader = server.make_token("read", name="comparer")
    done = evalctl(
        "compare",
        str(good),
        str(bad),
        "--json",
        home=tmp_path / "home",
        timeout=120,
        EVALCTL_URL=server.url,
        EVALCTL_TOKEN=reader,
    )
    assert done.returncode == 2, done.stdout[:500]
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[:2000]
    assert f"run {bad} ({unique_name}-bomb) spec" in lines[0]
    assert "over 100000 values once aliases are expanded" in lines[0]
    assert "Traceback" not in done.stderr


def test_jobs_api_refuses_an_alias_bomb_and_an_invalid_spec(admin: httpx.Client) -> None:
    bomb = admin.post("/api/v1/jobs", json={"kind": "train", "spec_text": alias_bomb(9)})
    assert bomb.status_code == 422, bomb.text
    assert bomb.json()["detail"] == (
        "spec.yaml:1:1: (spec): spec has over 100000 values once aliases are expanded"
    )
    invalid = admin.post(
        "/api/v1/jobs",
        json={"kind": "train", "spec_text": "name: x\nbase_model: ./m\n", "spec_path": "/w/s.yaml"},
    )
    assert invalid.status_code == 422, invalid.text
    assert invalid.json()["detail"] == "/w/s.yaml:1:1: data: missing required key"
    typo = admin.post(
        "/api/v1/jobs", json={"kind": "train", "spec_text": JOB_SPEC_TEXT + "trainig: {}\n"}
    )
    assert typo.status_code == 422
    detail = typo.json()["detail"]
    assert "spec.yaml:4:1: trainig: unknown key 'trainig'. Did you mean 'training'?" in detail
    not_yaml = admin.post("/api/v1/jobs", json={"kind": "train", "spec_text": "a: [1,"})
    assert not_yaml.status_code == 422
    assert not_yaml.json()["detail"].startswith("spec.yaml:1:")
    huge = admin.post(
        "/api/v1/jobs", json={"kind": "train", "spec_text": JOB_SPEC_TEXT + "#" * 1_100_000}
    )
    assert huge.status_code == 422
    assert "larger than 1000000 bytes" in huge.json()["detail"]
    # Files are on the runners' machines: a path that does not exist here is fine.
    ok = admin.post("/api/v1/jobs", json={"kind": "train", "spec_text": JOB_SPEC_TEXT})
    assert ok.status_code == 201, ok.text
    assert ok.json()["spec_text"] == JOB_SPEC_TEXT
