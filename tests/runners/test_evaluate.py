"""`evalctl eval` re-scores recorded checkpoints: same scores, answered from the cache."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.helpers import evalctl, write_tiny_spec


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """Return {home, spec, info} after one `evalctl run` of the tiny spec (steps 0, 2, 4)."""
    root = tmp_path_factory.mktemp("evaluate")
    home = root / "home"
    spec = write_tiny_spec(root / "exp", tiny_model_dir)
    done = evalctl("run", str(spec), home=home)
    assert done.returncode == 0, done.stderr + done.stdout
    return {"home": home, "spec": spec, "info": show_run(home)}


def show_run(home: Path) -> dict:
    out = evalctl("runs", "show", "1", "--json", home=home)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def eval_json(trained: dict, *args: str) -> dict:
    out = evalctl("eval", *args, "--spec", str(trained["spec"]), "--json", home=trained["home"])
    assert out.returncode == 0, out.stderr + out.stdout
    return json.loads(out.stdout)


def cache_rows(home: Path) -> int:
    with sqlite3.connect(home / "cache" / "generations" / "generations.sqlite") as conn:
        return conn.execute("select count(*) from generations").fetchone()[0]


def test_eval_repeats_training_time_scores_from_the_cache(trained: dict):
    home, last = trained["home"], trained["info"]["checkpoints"][-1]
    before = {
        e["evaluator"]: e
        for e in trained["info"]["evaluations"]
        if e["checkpoint_id"] == last["id"]
    }
    rows_before = cache_rows(home)

    out = eval_json(trained, str(last["id"]))

    again = {e["evaluator"]: e for e in out["evaluations"]}
    assert set(again) == {"perplexity", "json_schema"}
    assert all(
        e["checkpoint_id"] == last["id"] and e["status"] == "succeeded" for e in again.values()
    )
    assert {e["id"] for e in again.values()}.isdisjoint(e["id"] for e in before.values())
    # greedy decoding on the same weights: the 5 json_schema prompts come from the cache
    # that training-time scoring filled, and nothing new is generated
    assert out["generation_cache"] == {"hits": 5, "misses": 0}
    assert cache_rows(home) == rows_before
    assert again["json_schema"]["metrics"] == before["json_schema"]["metrics"]
    assert again["json_schema"]["config_hash"] == before["json_schema"]["config_hash"]
    for key, value in before["perplexity"]["metrics"].items():
        assert again["perplexity"]["metrics"][key] == pytest.approx(value, rel=1e-5), key

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    mlrun = client.get_run(trained["info"]["run"]["mlflow_run_id"])
    history = client.get_metric_history(mlrun.info.run_id, "json_schema.valid_rate")
    assert [m.step for m in history].count(last["step"]) >= 2
    assert mlrun.info.status == "FINISHED"  # logging afterwards does not reopen the run


def test_eval_run_scores_every_checkpoint_including_the_base(trained: dict):
    out = eval_json(trained, "run:1", "--evaluator", "json_schema")
    ids = [c["id"] for c in trained["info"]["checkpoints"]]
    assert [e["checkpoint_id"] for e in out["evaluations"]] == ids
    assert {e["evaluator"] for e in out["evaluations"]} == {"json_schema"}
    assert out["generation_cache"] == {"hits": 5 * len(ids), "misses": 0}
    table = evalctl(
        "eval", "ckpt:" + str(ids[0]), "--spec", str(trained["spec"]), home=trained["home"]
    )
    assert table.returncode == 0, table.stderr
    assert "json_schema" in table.stdout and "generation cache: 5 hits" in table.stdout


def test_evaluator_names_are_checked_before_any_work(trained: dict, tmp_path: Path):
    home, spec = trained["home"], str(trained["spec"])
    typo = evalctl("eval", "1", "--spec", spec, "-e", "jsonschema", home=home)
    assert typo.returncode == 2
    assert "Did you mean 'json_schema'" in typo.stderr and typo.stderr.count("\n") == 1

    only_ppl = yaml.safe_load(trained["spec"].read_text())
    only_ppl["evaluators"] = only_ppl["evaluators"][:1]
    narrow = trained["spec"].parent / "only-perplexity.yaml"
    narrow.write_text(yaml.safe_dump(only_ppl))
    missing = evalctl("eval", "1", "--spec", str(narrow), "-e", "json_schema", home=home)
    assert missing.returncode == 2
    assert "'json_schema' is not configured in only-perplexity.yaml" in missing.stderr
    assert "Traceback" not in missing.stderr

    bad_ref = evalctl("eval", "latest", "--spec", spec, home=home)
    assert bad_ref.returncode == 2 and "run:RUN" in bad_ref.stderr
    nothing = evalctl("eval", "999", "--spec", spec, home=home)
    assert nothing.returncode == 2 and "999" in nothing.stderr


def test_tampered_adapter_is_refused_with_one_line(trained: dict, tmp_path: Path):
    home = trained["home"]
    ckpt = trained["info"]["checkpoints"][1]
    folder = Path(ckpt["path"])
    backup = tmp_path / "backup"
    shutil.copytree(folder, backup)
    count = len(show_run(home)["evaluations"])
    try:
        weights = folder / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes() + b" ")
        out = evalctl("eval", "run:1", "--spec", str(trained["spec"]), home=home)
    finally:
        shutil.rmtree(folder)
        shutil.copytree(backup, folder)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1, out.stderr
    assert f"checkpoint {ckpt['id']} at {folder} changed since it was recorded" in out.stderr
    # checked before any model work: nothing was recorded for the other checkpoints either
    assert len(show_run(home)["evaluations"]) == count


def test_evals_show_prints_metrics_and_first_examples(trained: dict):
    home = trained["home"]
    evaluation = next(e for e in trained["info"]["evaluations"] if e["evaluator"] == "json_schema")
    out = evalctl("evals", "show", str(evaluation["id"]), "--examples", "2", "--json", home=home)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)["data"]
    assert [d["id"] for d in data] == [evaluation["id"]]
    assert data[0]["metrics"] == evaluation["metrics"]
    assert [x["example_id"] for x in data[0]["examples"]] == ["p0", "p1"]
    assert data[0]["examples_count"] == 5
    assert "output" in data[0]["examples"][0]["details"]

    text = evalctl("evals", "show", str(evaluation["checkpoint_id"]), "--checkpoint", home=home)
    assert text.returncode == 0, text.stderr
    assert "json_schema.valid_rate" in text.stdout and "perplexity.ppl" in text.stdout
    assert "p0" in text.stdout and "of 5 examples" in text.stdout

    missing = evalctl("evals", "show", "999999", home=home)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_evaluators_list_shows_config_schemas(tmp_path: Path):
    out = evalctl("evaluators", "list", "--json", home=tmp_path / "home")
    assert out.returncode == 0, out.stderr
    by_name = {row["name"]: row for row in json.loads(out.stdout)}
    assert by_name["json_schema"]["module"] == "evaluators.json_schema"
    assert {"prompts", "schema", "max_new_tokens"} <= set(
        by_name["json_schema"]["config_schema"]["properties"]
    )
    assert "data" in by_name["perplexity"]["config_schema"]["required"]
    table = evalctl("evaluators", "list", home=tmp_path / "home")
    assert "max_new_tokens: integer = 128" in table.stdout
