"""Tests for `service.plugins`: entry points found by group, loaded lazily, named errors.

Plugins are real installed distributions: the third-party evaluator package in
`tests/plugins/evalctl_wordcount` installed with pip into a folder of its own, the
built-ins through evalctl's own metadata, and a second group (as monitors will be) from a
`.dist-info` folder written here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from evaluators.base import Evaluator
from evaluators.registry import UnknownEvaluatorError
from service.errors import EvalctlError
from service.plugins import PluginRegistry, UnknownPluginError, registry_for

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "evalctl_wordcount"
BUILT_INS = {"classification", "json_schema", "llama_guard", "lm_eval", "perplexity"}


class Probe:
    """The base class of the test group (what `monitors.base.Monitor` will be)."""

    class Config(BaseModel):
        model_config = {"extra": "forbid"}

    def __init__(self, config: BaseModel) -> None:
        self.config = config


def python(code: str) -> str:
    """Run `code` in a fresh interpreter and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def wordcount_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the third-party plugin with pip into its own folder (the venv is untouched)."""
    site = tmp_path_factory.mktemp("plugin-site")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    done = subprocess.run([*pip, "--target", str(site), str(PLUGIN)], capture_output=True)
    assert done.returncode == 0, done.stderr
    return site


@pytest.fixture
def probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PluginRegistry[Probe]:
    """An installed distribution with two entry points in group `evalctl.test_probes`."""
    (tmp_path / "probe_plugins.py").write_text(
        textwrap.dedent(
            """
            from pydantic import Field
            from tests.service.test_plugins import Probe

            class DriftProbe(Probe):
                name = "drift"

                class Config(Probe.Config):
                    window: int = Field(default=60, ge=1, description="Minutes per window.")

            class NotAProbe:
                pass
            """
        )
    )
    info = tmp_path / "probe_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[evalctl.test_probes]\n"
        "drift = probe_plugins:DriftProbe\n"
        "not_a_probe = probe_plugins:NotAProbe\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return PluginRegistry("evalctl.test_probes", Probe, kind="monitor", spec_key="monitors")


def test_built_ins_are_listed_without_importing_any_of_them():
    out = python(
        """
        import sys
        from service.plugins import registry_for
        names = sorted(registry_for("evalctl.evaluators").available())
        print(",".join(names))
        print(",".join(m for m in sys.modules if m.startswith("evaluators.") and
                       m not in ("evaluators.base", "evaluators.registry", "evaluators.scoring")))
        """
    )
    names, imported = out.splitlines()
    assert set(names.split(",")) >= BUILT_INS
    assert imported == ""


def test_a_name_imports_only_its_own_module():
    out = python(
        """
        import sys
        from evaluators.registry import registry
        cls = registry.get("json_schema")
        print(cls.__module__, cls.name)
        print(",".join(sorted(m for m in ("evaluators.perplexity", "evaluators.lm_eval",
                                          "evaluators.llama_guard", "jsonschema", "torch")
                              if m in sys.modules)))
        """
    )
    assert out.splitlines() == ["evaluators.json_schema json_schema", ""]


def test_an_unknown_name_suggests_the_closest_and_lists_the_rest():
    registry = registry_for("evalctl.evaluators")
    with pytest.raises(UnknownEvaluatorError) as caught:
        registry.get("jsonschema")
    message = str(caught.value)
    assert message.startswith("Unknown evaluator 'jsonschema'. Did you mean 'json_schema'?")
    listed = message.split(" Available: ")[1].split(", ")
    assert listed == sorted(listed) and set(listed) >= BUILT_INS | {"text_metrics"}
    assert isinstance(caught.value, UnknownPluginError)


def test_build_names_the_config_field_that_is_wrong(tmp_path: Path):
    registry = registry_for("evalctl.evaluators")
    data = tmp_path / "eval.jsonl"
    data.write_text('{"text": "held out"}\n')
    context = {"base_dir": tmp_path}
    with pytest.raises(EvalctlError, match=r"^evaluators\.perplexity\.batch_sise: Extra inputs"):
        registry.build("perplexity", {"data": "eval.jsonl", "batch_sise": 4}, context)
    with pytest.raises(EvalctlError, match=r"^evaluators\.perplexity\.data: .*file not found"):
        registry.build("perplexity", {"data": "missing.jsonl"}, context)
    built = registry.build("perplexity", {"data": "eval.jsonl"}, context)
    assert isinstance(built, Evaluator)
    assert built.config.data == data


def test_a_third_party_plugin_is_found_built_and_suggested(
    wordcount_site: Path, monkeypatch: pytest.MonkeyPatch
):
    registry = registry_for("evalctl.evaluators")
    assert "word_count" not in registry.available()
    monkeypatch.syspath_prepend(str(wordcount_site))
    assert registry.available()["word_count"].value == (
        "evalctl_wordcount.word_count:WordCountEvaluator"
    )
    cls = registry.get("word_count")
    assert cls.__module__ == "evalctl_wordcount.word_count"
    assert Path(sys.modules[cls.__module__].__file__ or "").is_relative_to(wordcount_site)
    assert registry.build("word_count", {"prompts": ["hi"]}).config.max_words == 20
    with pytest.raises(EvalctlError, match=r"^evaluators\.word_count\.prompts: List should"):
        registry.build("word_count", {"prompts": []})
    with pytest.raises(UnknownPluginError, match="Did you mean 'word_count'"):
        registry.get("word_cout")


def test_another_group_has_its_own_names_kind_and_spec_key(probes: PluginRegistry[Probe]):
    assert registry_for("evalctl.test_probes") is probes
    assert set(probes.available()) == {"drift", "not_a_probe"}
    assert probes.build("drift", None).config.window == 60
    with pytest.raises(EvalctlError, match=r"^monitors\.drift\.window: Input should be greater"):
        probes.build("drift", {"window": 0})
    with pytest.raises(UnknownPluginError) as caught:
        probes.get("drfit")
    assert str(caught.value) == (
        "Unknown monitor 'drfit'. Did you mean 'drift'? Available: drift, not_a_probe"
    )
    with pytest.raises(EvalctlError) as not_a_probe:
        probes.get("not_a_probe")
    assert str(not_a_probe.value) == (
        "Entry point 'not_a_probe' in evalctl.test_probes is not a Probe subclass"
    )
    assert "json_schema" not in probes.available()


def test_the_service_imports_no_plugin_package_at_module_level():
    # DESIGN.md: the service dispatches by name through registries; it imports none of the
    # plugin packages (nor the CLI) when its modules load.
    out = python(
        """
        import importlib, pkgutil, sys
        import service
        for info in pkgutil.walk_packages(service.__path__, "service."):
            importlib.import_module(info.name)
        import service.app, service.spec_loader
        roots = {m.split(".")[0] for m in sys.modules}
        print(",".join(sorted(roots & {"evaluators", "runners", "monitors", "evalctl"})))
        """
    )
    assert out.strip() == ""
