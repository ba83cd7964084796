"""`evalctl promote` and `evalctl aliases ...` through the real CLI on two tiny trained runs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.evalctl.cli.conftest import (
    EXPERIMENT,
    assert_one_line_error,
    best_checkpoint,
    cli,
    mlflow_production,
)


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


def test_bad_refs_exit_2_with_one_line(trained: dict) -> None:
    cases = [
        (("promote", "foo:1", "--alias", "production"), "reference 'foo:1' not understood"),
        (("promote", "1", "--alias", "latest"), "alias 'latest'"),
        (("aliases", "rollback", "staging", "--experiment", EXPERIMENT), "'@staging' not set"),
        (("aliases", "list", "--experiment", "tiny-order"), "Did you mean 'tiny-orders'"),
    ]
    for args, message in cases:
        assert_one_line_error(cli(trained, *args), message)


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
