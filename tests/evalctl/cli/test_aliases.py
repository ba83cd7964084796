"""`evalctl promote`, `aliases` and `compare` through the real CLI on two tiny trained runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.helpers import evalctl, write_tiny_spec

EXPERIMENT = "tiny-orders"  # write_tiny_spec's spec name, hence its experiment


@pytest.fixture(scope="module")
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


def test_promote_history_rollback_in_both_registries(trained: dict) -> None:
    first, second = best_checkpoint(trained, 1), best_checkpoint(trained, 2)
    before = cli(trained, "promote", "@production", "--alias", "x", "--experiment", EXPERIMENT)
    assert_one_line_error(before, f"alias '@production' not set for experiment '{EXPERIMENT}'")

    promoted = cli(
        trained, "promote", "1", "--alias", "production", "--spec", str(trained["specs"][0])
    )
    assert promoted.returncode == 0, promoted.stderr
    assert f"(not set) -> checkpoint {first} (run 1" in promoted.stdout
    version = mlflow_production(trained)
    assert version.tags["evalctl.checkpoint_id"] == str(first)
    shown = json.loads(cli(trained, "runs", "show", "1", "--json").stdout)
    folder = next(c["path"] for c in shown["checkpoints"] if c["id"] == first)
    assert version.source == Path(folder).resolve().as_uri()
    assert version.run_id == shown["run"]["mlflow_run_id"] is not None

    moved = cli(
        trained,
        "promote",
        "run:2",
        "--alias",
        "production",
        "--experiment",
        EXPERIMENT,
        "--json",
        actor="bob",
    )
    assert moved.returncode == 0, moved.stderr
    doc = json.loads(moved.stdout)
    assert (doc["from_checkpoint_id"], doc["to_checkpoint_id"]) == (first, second)
    assert mlflow_production(trained).tags["evalctl.checkpoint_id"] == str(second)
    assert int(mlflow_production(trained).version) == doc["mlflow_version"] != int(version.version)

    history = cli(trained, "aliases", "history", "production", "--experiment", EXPERIMENT, "--json")
    events = json.loads(history.stdout)["data"]
    assert [(e["checkpoint_id"], e["actor"], e["action"]) for e in events] == [
        (second, "bob", "promote"),
        (first, "alice", "promote"),
    ]
    table = cli(trained, "aliases", "history", "production", "--experiment", EXPERIMENT)
    assert "bob" in table.stdout and "alice" in table.stdout and "2 moves" in table.stdout

    back = cli(
        trained, "aliases", "rollback", "production", "--experiment", EXPERIMENT, actor="carol"
    )
    assert back.returncode == 0, back.stderr
    assert f"checkpoint {second} (run 2" in back.stdout and f"-> checkpoint {first}" in back.stdout
    after = mlflow_production(trained)
    # Re-promoting a checkpoint reuses its MLflow version instead of registering a new one.
    assert (after.version, after.tags["evalctl.checkpoint_id"]) == (version.version, str(first))
    listed = json.loads(cli(trained, "aliases", "list", "--json").stdout)["data"]
    assert [(a["experiment"], a["name"], a["checkpoint_id"], a["run_id"]) for a in listed] == [
        (EXPERIMENT, "production", first, 1)
    ]
    latest = json.loads(
        cli(
            trained, "aliases", "history", "production", "--experiment", EXPERIMENT, "--json"
        ).stdout
    )["data"][0]
    assert (latest["action"], latest["actor"], latest["previous_checkpoint_id"]) == (
        "rollback",
        "carol",
        second,
    )


def test_compare_shows_param_differences_and_paired_tests(trained: dict) -> None:
    out = cli(trained, "compare", "1", "2", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["params"] == {"training.learning_rate": [0.001, 0.005]}
    assert [r["run_id"] for r in doc["refs"]] == [1, 2]
    metrics = {m["metric"]: m for m in doc["metrics"]}
    assert {"eval_loss", "perplexity.ppl", "json_schema.valid_rate"} <= set(metrics)
    nll = metrics["perplexity.nll"]
    assert nll["higher_is_better"] is False
    assert nll["deltas"][1] == pytest.approx(nll["values"][1] - nll["values"][0])
    test = nll["tests"][1]
    assert test["method"] == "paired_t" and test["n"] == 6 and 0.0 <= test["p_value"] <= 1.0
    exact = metrics["json_schema.exact_match"]["tests"][1]
    assert exact["method"] == "mcnemar_exact" and exact["n"] == 5

    everything = json.loads(cli(trained, "compare", "1", "2", "--all-params", "--json").stdout)
    assert everything["params"]["training.max_steps"] == [4, 4]
    table = cli(trained, "compare", "run:1", "2")
    assert "training.learning_rate" in table.stdout and "paired_t" in table.stdout


def test_bad_refs_exit_2_with_one_line(trained: dict) -> None:
    cases = [
        (("compare", "1", "ckpt:99999"), "checkpoint 99999 not found"),
        (("compare", "1", "run:nope"), "run 'nope' not found"),
        (("compare", "1", "@production"), "@production needs an experiment"),
        (("compare", "1"), "at least two refs"),
        (("promote", "foo:1", "--alias", "production"), "reference 'foo:1' not understood"),
        (("promote", "1", "--alias", "latest"), "alias 'latest'"),
        (("aliases", "rollback", "staging", "--experiment", EXPERIMENT), "'@staging' not set"),
        (("aliases", "list", "--experiment", "tiny-order"), "Did you mean 'tiny-orders'"),
    ]
    for args, message in cases:
        assert_one_line_error(cli(trained, *args), message)


@pytest.mark.skipif(
    importlib.util.find_spec("evalctl.cli_gate") is None,
    reason="evalctl.cli_gate (run_gate_for_promotion) is not written yet",
)
def test_require_gate_blocks_or_records_the_gate(trained: dict) -> None:
    spec = str(trained["specs"][1])
    out = cli(
        trained, "promote", "2", "--alias", "gated", "--spec", spec, "--require-gate", "--json"
    )
    history = cli(trained, "aliases", "history", "gated", "--experiment", EXPERIMENT, "--json")
    events = json.loads(history.stdout)["data"]
    if out.returncode == 1:  # the gate failed: nothing moved
        assert events == []
    else:
        assert out.returncode == 0, out.stderr
        assert events[0]["gate"] == json.loads(out.stdout)["gate"] is not None
