"""A third-party evaluator package, pip-installed into a separate folder, used by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import evalctl, write_tiny_spec

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "evalctl_wordcount"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the plugin with pip into its own folder (the venv is left untouched)."""
    site = tmp_path_factory.mktemp("plugin-site")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(PLUGIN),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return site


def with_plugin(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_plugin_is_listed_with_its_config_schema(plugin_site: Path, tmp_path: Path):
    out = evalctl("evaluators", "list", "--json", home=tmp_path, **with_plugin(plugin_site))
    assert out.returncode == 0, out.stderr
    listed = {item["name"]: item for item in json.loads(out.stdout)}
    assert "word_count" in listed
    assert "max_words" in listed["word_count"]["config_schema"]["properties"]
    assert {"perplexity", "json_schema"} <= set(listed)


def test_plugin_runs_from_a_spec_by_name(plugin_site: Path, tmp_path: Path, tiny_model_dir):
    spec_path = write_tiny_spec(tmp_path / "exp", tiny_model_dir, max_steps=2)
    spec = yaml.safe_load(spec_path.read_text())
    spec["evaluators"] = [{"word_count": {"prompts": ["Order 7: lamps", "Hello"]}}]
    spec.pop("best_checkpoint")
    spec_path.write_text(yaml.safe_dump(spec))
    home = tmp_path / "home"
    done = evalctl("run", str(spec_path), home=home, **with_plugin(plugin_site))
    assert done.returncode == 0, done.stderr
    info = json.loads(evalctl("runs", "show", "1", "--json", home=home).stdout)
    counts = [e for e in info["evaluations"] if e["evaluator"] == "word_count"]
    assert len(counts) == len(info["checkpoints"]) == 2
    assert all(e["status"] == "succeeded" and e["n_examples"] == 2 for e in counts)


def test_misspelled_plugin_name_suggests_it(plugin_site: Path, tmp_path: Path, tiny_model_dir):
    spec_path = write_tiny_spec(tmp_path / "exp", tiny_model_dir)
    spec = yaml.safe_load(spec_path.read_text())
    spec["evaluators"] = [{"word_cout": {"prompts": ["x"]}}]
    spec_path.write_text(yaml.safe_dump(spec))
    out = evalctl("validate", str(spec_path), home=tmp_path, **with_plugin(plugin_site))
    assert out.returncode == 2
    assert "Did you mean 'word_count'?" in out.stderr
    without = evalctl("validate", str(spec_path), home=tmp_path)
    assert "word_count" not in without.stderr  # not installed: not suggested
