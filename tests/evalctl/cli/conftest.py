"""Shared by the registry commands' tests: two tiny runs of one experiment, trained once.

`trained` (package scope) trains run 1 (lr 1e-3) and run 2 (lr 5e-3) through the real
CLI; `evalctl promote`/`aliases` (test_aliases) and `evalctl compare` (test_compare) read
them. `cli` runs the CLI in that home as an actor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import evalctl, write_tiny_spec

EXPERIMENT = "tiny-orders"  # write_tiny_spec's spec name, hence its experiment


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """Train run 1 (lr 1e-3) and run 2 (lr 5e-3) of one experiment in a fresh home."""
    root = tmp_path_factory.mktemp("registry-cli")
    home = root / "home"
    specs = [
        write_tiny_spec(root / "a", tiny_model_dir),
        write_tiny_spec(root / "b", tiny_model_dir, learning_rate=5e-3),
    ]
    for spec in specs:
        done = evalctl("run", str(spec), home=home)
        assert done.returncode == 0, done.stderr
    return {"home": home, "specs": specs}


def cli(trained: dict, *args: str, actor: str = "alice"):
    return evalctl(*args, home=trained["home"], EVALCTL_ACTOR=actor)


def best_checkpoint(trained: dict, run: int) -> int:
    shown = cli(trained, "runs", "show", str(run), "--json")
    return json.loads(shown.stdout)["run"]["best_checkpoint_id"]


def mlflow_production(trained: dict):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{trained['home'] / 'mlflow.db'}")
    return client.get_model_version_by_alias(EXPERIMENT, "production")


def assert_one_line_error(out, *fragments: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    for fragment in fragments:
        assert fragment in out.stderr
