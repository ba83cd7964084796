"""`evalctl run` end to end on the tiny model: checkpoints, evaluations, MLflow, failures."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runners.sources import sha256_weights
from tests.helpers import evalctl, write_jsonl, write_tiny_spec


def show(run: str, home: Path) -> dict:
    out = evalctl("runs", "show", run, "--json", home=home)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_run_records_checkpoints_evaluations_and_mlflow(tmp_path: Path, tiny_model_dir: Path):
    home = tmp_path / "home"
    spec = write_tiny_spec(tmp_path / "exp", tiny_model_dir)
    done = evalctl("run", str(spec), home=home)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "base model vs best checkpoint" in done.stdout

    info = show("1", home)
    assert info["run"]["status"] == "succeeded"
    steps = [c["step"] for c in info["checkpoints"]]
    assert steps == [0, 2, 4]
    for ckpt in info["checkpoints"][1:]:
        folder = Path(ckpt["path"])
        assert (folder / "adapter_model.safetensors").exists()
        assert sha256_weights(folder) == ckpt["sha256"]
        assert ckpt["train_loss"] is not None and ckpt["eval_loss"] is not None
    # the base model is scored as step 0, every checkpoint by both evaluators
    pairs = {(e["checkpoint_id"], e["evaluator"]) for e in info["evaluations"]}
    assert pairs == {
        (c["id"], n) for c in info["checkpoints"] for n in ("perplexity", "json_schema")
    }
    assert all(e["status"] == "succeeded" for e in info["evaluations"])
    assert info["run"]["best_checkpoint_id"] in [c["id"] for c in info["checkpoints"][1:]]
    assert info["run"]["dataset_hashes"].keys() >= {"train", "eval"}
    assert info["run"]["base_model_hash"]
    assert info["best_per_metric"]["perplexity.ppl"]["step"] in (2, 4)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    mlrun = client.get_run(info["run"]["mlflow_run_id"])
    assert mlrun.info.status == "FINISHED"
    for metric in ("loss", "eval_loss", "learning_rate", "grad_norm", "tokens_per_s"):
        assert metric in mlrun.data.metrics, metric
    history = client.get_metric_history(mlrun.info.run_id, "json_schema.valid_rate")
    assert sorted(m.step for m in history) == [0, 2, 4]
    assert mlrun.data.params["training.method"] == "lora"
    assert "system.torch" in mlrun.data.tags

    listing = evalctl("runs", "list", "--json", home=home)
    assert json.loads(listing.stdout)["count"] == 1


def _checkpoint_steps(db: Path) -> list[int]:
    try:
        with sqlite3.connect(db) as conn:
            return [r[0] for r in conn.execute("select step from checkpoint order by step")]
    except sqlite3.OperationalError:  # tables not created yet
        return []


def test_resume_continues_from_last_checkpoint_after_sigkill(tmp_path: Path, tiny_model_dir: Path):
    home = tmp_path / "home"
    spec = write_tiny_spec(tmp_path / "exp", tiny_model_dir, max_steps=8, save_every_steps=2)
    env = {**os.environ, "EVALCTL_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalctl", "run", str(spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = home / "evalctl.db"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists() and any(s >= 2 for s in _checkpoint_steps(db)):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _checkpoint_steps(db)
    if max(before) >= 8:
        pytest.skip("the run finished before it could be killed")

    resumed = evalctl("run", "--resume", "1", home=home)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    info = show("1", home)
    steps = [c["step"] for c in info["checkpoints"]]
    assert steps == sorted(set(steps)), "a checkpoint was recorded twice"
    assert steps[0] == 0 and steps[-1] == 8
    assert set(before) <= set(steps)
    assert info["run"]["status"] == "succeeded"


def test_bad_rows_fail_the_run_with_file_and_line(tmp_path: Path, tiny_model_dir: Path):
    home = tmp_path / "home"
    spec = write_tiny_spec(tmp_path / "exp", tiny_model_dir)
    train = tmp_path / "exp" / "train.jsonl"
    train.write_text(train.read_text() + '{"input_text": "no output"}\n')
    done = evalctl("run", str(spec), home=home)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "train.jsonl:25" in lines[0] and "output_text" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    info = show("1", home)
    assert info["run"]["status"] == "failed"
    assert "train.jsonl:25" in info["run"]["failure_reason"]


def test_invalid_spec_exits_2_without_a_run(tmp_path: Path, tiny_model_dir: Path):
    home = tmp_path / "home"
    spec = write_tiny_spec(tmp_path / "exp", tiny_model_dir)
    spec.write_text(spec.read_text().replace("learning_rate", "lerning_rate"))
    done = evalctl("run", str(spec), home=home)
    assert done.returncode == 2
    assert "Did you mean 'learning_rate'" in done.stderr
    assert "Traceback" not in done.stderr
    listing = evalctl("runs", "list", "--json", home=home)
    assert json.loads(listing.stdout)["count"] == 0


def test_unreadable_model_fails_with_one_line(tmp_path: Path):
    home = tmp_path / "home"
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "model.safetensors").write_bytes(b"garbage")
    spec = write_tiny_spec(tmp_path / "exp", broken)
    done = evalctl("run", str(spec), home=home)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "cannot load" in done.stderr
    assert show("1", home)["run"]["status"] == "failed"


def test_full_disk_while_saving_fails_cleanly(tmp_path: Path, tiny_model_dir: Path):
    home = tmp_path / "home"
    runs = home / "runs"
    runs.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(runs)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here to fill the disk")
    try:
        spec = write_tiny_spec(tmp_path / "exp", tiny_model_dir, method="full")
        done = evalctl("run", str(spec), home=home)
    finally:
        subprocess.run(["umount", "-l", str(runs)], check=False)
    assert done.returncode == 1
    assert "no space left on device" in done.stderr.lower(), done.stderr
    assert "Traceback" not in done.stderr
    info = show("1", home)
    assert info["run"]["status"] == "failed"
    assert [c["step"] for c in info["checkpoints"]] == [0]  # base stays recorded and valid


def test_data_with_no_usable_rows(tmp_path: Path, tiny_model_dir: Path):
    home = tmp_path / "home"
    spec = write_tiny_spec(tmp_path / "exp", tiny_model_dir)
    write_jsonl(tmp_path / "exp" / "train.jsonl", [])
    (tmp_path / "exp" / "train.jsonl").write_text("\n\n")
    done = evalctl("run", str(spec), home=home)
    assert done.returncode == 1
    assert "no usable rows" in done.stderr


def test_full_fine_tuning_saves_full_weights(tmp_path: Path, tiny_model_dir: Path):
    home = tmp_path / "home"
    spec = write_tiny_spec(tmp_path / "exp", tiny_model_dir, method="full", max_steps=2)
    done = evalctl("run", str(spec), home=home)
    assert done.returncode == 0, done.stderr
    info = show("1", home)
    last = Path(info["checkpoints"][-1]["path"])
    assert (last / "model.safetensors").exists()
    assert not (last / "adapter_model.safetensors").exists()
    assert sha256_weights(last) == info["checkpoints"][-1]["sha256"]


def test_early_stopping_ends_the_run_before_max_steps(tmp_path: Path, tiny_model_dir: Path):
    home = tmp_path / "home"
    # A learning rate this large makes eval_loss climb, so patience runs out quickly.
    spec = write_tiny_spec(
        tmp_path / "exp",
        tiny_model_dir,
        max_steps=40,
        save_every_steps=2,
        eval_every_steps=2,
        early_stopping_patience=2,
        learning_rate=0.5,
        method="full",
    )
    done = evalctl("run", str(spec), home=home)
    assert done.returncode == 0, done.stderr
    info = show("1", home)
    steps = [c["step"] for c in info["checkpoints"]]
    assert steps[-1] < 40
    losses = [c["eval_loss"] for c in info["checkpoints"][1:]]
    best = min(losses)
    assert losses.index(best) <= len(losses) - 3  # two evaluations without improvement
