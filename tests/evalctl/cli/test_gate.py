"""`evalctl gate` as CI runs it: two tiny runs trained through the real CLI, then gated.

The module trains two runs of the tiny spec (run 1, run 2) once, writes a gate spec that
adds a `gate:` section and a `classification` evaluator no checkpoint has yet, and checks
exit codes, the JUnit and Markdown files, and GitHub annotations.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.helpers import evalctl, write_jsonl, write_tiny_spec

GATE = {
    "baseline": "run:1",
    "rules": [
        {"metric": "perplexity.ppl", "max_increase": "50%"},
        {"metric": "json_schema.parse_rate", "min": 0.0},
        {"metric": "json_schema.valid", "no_significant_drop": {"alpha": 0.05}},
    ],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    """Train run 1 and run 2 through the CLI; return the home and a gate spec."""
    root = tmp_path_factory.mktemp("gate-cli")
    home = root / "home"
    first = write_tiny_spec(root / "a", tiny_model_dir)
    second = write_tiny_spec(root / "b", tiny_model_dir, learning_rate=5e-3)
    for spec in (first, second):
        done = evalctl("run", str(spec), home=home)
        assert done.returncode == 0, done.stderr
    data = yaml.safe_load(second.read_text())
    data["gate"] = GATE
    write_jsonl(
        root / "b" / "labels.jsonl",
        [
            {"id": f"l{i}", "input_text": f"Order {i}", "label": "yes" if i % 2 else "no"}
            for i in range(6)
        ],
    )
    data["evaluators"].append(
        {"classification": {"data": "labels.jsonl", "labels": ["yes", "no"], "max_new_tokens": 4}}
    )
    gate_spec = root / "b" / "gate.yaml"
    gate_spec.write_text(yaml.safe_dump(data, sort_keys=False))
    return {"home": home, "spec": gate_spec, "root": root}


def _gate(trained: dict[str, Path], *args: str, **env: str):  # type: ignore[no-untyped-def]
    base = ("gate", "--spec", str(trained["spec"]), "--candidate", "run:2")
    return evalctl(*base, *args, home=trained["home"], **env)


def test_gate_passes_and_writes_junit_and_markdown(trained: dict[str, Path]) -> None:
    junit, md, js = (trained["root"] / f"pass.{ext}" for ext in ("xml", "md", "json"))
    out = _gate(
        trained,
        "--baseline",
        "run:1",
        "--junit",
        str(junit),
        "--markdown",
        str(md),
        "--json",
        str(js),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS: candidate run:2" in out.stdout
    suites = ET.parse(junit).getroot()
    assert suites.tag == "testsuites" and suites.get("tests") == "3"
    assert suites.get("failures") == "0" and suites.get("errors") == "0"
    cases = suites.findall("./testsuite/testcase")
    assert [c.get("name", "").split(":")[0] for c in cases] == [
        "gate.rules.0",
        "gate.rules.1",
        "gate.rules.2",
    ]
    assert all(c.find("failure") is None and c.find("error") is None for c in cases)
    text = md.read_text()
    assert text.startswith("### evalctl gate: ✅ passed")
    assert "| ✅ | `gate.rules.0` perplexity.ppl increase <= 50%" in text
    assert "**PASS: candidate run:2" in text
    assert '"verdict": "pass"' in js.read_text()


def test_a_failing_rule_exits_1_with_junit_failure_and_github_annotation(
    trained: dict[str, Path],
) -> None:
    junit = trained["root"] / "fail.xml"
    out = _gate(
        trained,
        "--baseline",
        "run:1",
        "--rule",
        "{metric: perplexity.ppl, max: 1}",
        "--junit",
        str(junit),
        GITHUB_ACTIONS="true",
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL: candidate run:2" in out.stdout
    annotations = [line for line in out.stdout.splitlines() if line.startswith("::")]
    assert len(annotations) == 1
    assert annotations[0].startswith("::error title=evalctl gate regression%3A --rule 1 ")
    assert "is above max 1" in annotations[0]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failure = suite.find("./testcase/failure")
    assert failure is not None and "is above max 1" in failure.get("message", "")
    without = _gate(trained, "--baseline", "run:1", "--rule", "{metric: perplexity.ppl, max: 1}")
    assert not [line for line in without.stdout.splitlines() if line.startswith("::")]


def test_an_unknown_metric_exits_2_with_did_you_mean(trained: dict[str, Path]) -> None:
    out = _gate(trained, "--baseline", "run:1", "--rule", "{metric: perplexity.pplx, max: 9}")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert (
        "unknown metric 'perplexity.pplx' in --rule 1. Did you mean 'perplexity.ppl'?" in lines[0]
    )
    typo = _gate(trained, "--rule", "{metric: perplexty.ppl, max: 9}")
    assert typo.returncode == 2 and "Did you mean 'perplexity.ppl'?" in typo.stderr


def test_bad_refs_and_bad_rules_exit_2_with_one_line(trained: dict[str, Path]) -> None:
    for args in (
        ("--baseline", "run:99"),
        ("--baseline", "run:1", "--rule", "{metric: perplexity.ppl, max_increase: 10%}"),
        ("--baseline", "run:1", "--rule", "{metric: a.b, min: 2, max: 1}"),
    ):
        out = _gate(trained, *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    again = _gate(trained, "--rule", "{metric: perplexity.ppl, max_increase: 10%}")
    assert "--rule 1 gives perplexity.ppl a max_increase again (gate.rules.0" in again.stderr


def test_no_eval_with_a_missing_evaluation_exits_2_then_evaluation_runs(
    trained: dict[str, Path],
) -> None:
    rule = "{metric: classification.correct, no_significant_drop: {alpha: 0.05}}"
    out = _gate(trained, "--rule", rule, "--no-eval")
    assert out.returncode == 2
    assert "missing evaluation classification on candidate run:2" in out.stderr
    assert "(run without --no-eval" in out.stderr
    ran = _gate(trained, "--rule", rule)
    assert ran.returncode in (0, 1), ran.stdout + ran.stderr
    assert "evaluating checkpoint" in ran.stderr and "classification (missing)" in ran.stderr
    assert "--rule 1: classification.correct" in ran.stdout
    again = _gate(trained, "--rule", rule, "--no-eval")  # both sides are evaluated now
    assert again.returncode == ran.returncode, again.stderr
