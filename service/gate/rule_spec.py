"""The spec's `gate:` section: the baseline to compare with and the rules a candidate must pass.

Owns the four rule shapes, told apart by their keys (a rule is one mapping with `metric`):

- absolute: `{metric: json_schema.valid_rate, min: 0.9}` and/or `max:`;
- relative: `{metric: perplexity.ppl, max_increase: "5%"}` or `max_decrease: 0.02`
  (a number is in the metric's units, "N%" is relative to the baseline's value);
- statistical: `{metric: classification.correct, no_significant_drop: {alpha: 0.05,
  margin: 0.0}}`; `metric` names a per-example score (`evaluator.key`), a corpus statistic
  the gate can recompute from per-example parts (`perplexity.ppl`, `perplexity.nll`), or
  an aggregate whose per-example basis is `per_example: evaluator.key` (bootstrapped);
- threshold, with MLflow `MetricThreshold` semantics: `{metric: ..., threshold: 0.8,
  min_absolute_change: 0.01, min_relative_change: 0.05, greater_is_better: true}`.

It also rejects rule sets that contradict themselves (min above max, the same bound twice,
duplicate rules), naming the rule (`rules.2`). It does not evaluate rules
(`service.gate.rules`) and imports nothing from `service.spec` (which imports it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from service.errors import EvalctlError, did_you_mean

CHECKPOINT_METRICS = ("eval_loss", "train_loss")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")
# Name fragments of metrics where a smaller value is better (same list as evalctl.cli.render).
LOWER_IS_BETTER = ("loss", "ppl", "nll", "perplexity", "error", "unsafe", "unparsed", "latency")


def lower_is_better(metric: str) -> bool:
    """Guess a metric's direction from its name (loss/ppl/error: lower is better)."""
    name = metric.rsplit(".", 1)[-1].lower()
    return any(word in name for word in LOWER_IS_BETTER)


def _metric_name(value: str) -> str:
    value = value.strip()
    if value in CHECKPOINT_METRICS:
        return value
    evaluator, dot, key = value.partition(".")
    if not dot or not evaluator or not key:
        raise ValueError(
            f"metric '{value}' needs its evaluator: write 'evaluator.metric' "
            "(e.g. perplexity.ppl), or eval_loss / train_loss"
        )
    return value


MetricName = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class _Rule(_Strict):
    """Fields every rule has."""

    kind: ClassVar[str]
    keys: ClassVar[tuple[str, ...]]  # the keys that make a mapping this kind of rule

    metric: MetricName = Field(description="'evaluator.metric' (e.g. perplexity.ppl).")
    name: str | None = Field(default=None, description="Label in reports (default: generated).")

    @field_validator("metric")
    @classmethod
    def _check_metric(cls, value: str) -> str:
        return _metric_name(value)

    @property
    def evaluators(self) -> list[str]:
        """Return the evaluators whose results this rule reads (none for eval_loss)."""
        return [m.partition(".")[0] for m in self.metrics if m not in CHECKPOINT_METRICS]

    @property
    def metrics(self) -> list[str]:
        """Return every metric name the rule reads."""
        return [self.metric]

    def describe(self) -> str:
        """Return a one-line description, e.g. 'perplexity.ppl increase <= 5%'."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """Return the rule's name, or its description."""
        return self.name or self.describe()


class AbsoluteRule(_Rule):
    """The candidate's value must lie within [min, max]."""

    kind: ClassVar[str] = "absolute"
    keys: ClassVar[tuple[str, ...]] = ("min", "max")

    min: float | None = Field(default=None, description="Lowest allowed value.")
    max: float | None = Field(default=None, description="Highest allowed value.")

    @field_validator("max")
    @classmethod
    def _not_below_min(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min")
        if value is not None and low is not None and low > value:
            raise ValueError(f"max ({value:g}) is below min ({low:g}): no value can pass")
        return value

    def describe(self) -> str:
        """Return e.g. 'json_schema.valid_rate >= 0.9'."""
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return f"{self.metric} {' and '.join(parts)}"


def _change(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number or 'N%', got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"must be a number >= 0 or 'N%', got {value}")
        return float(value)
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match:
            return f"{float(match.group(1)):g}%"
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"expected a number or 'N%' (e.g. '5%'), got {value!r}") from None
        return _change(number)
    return value  # the type check reports it


Change = Annotated[float | str, BeforeValidator(_change)]


def change_limit(change: float | str, baseline: float) -> float:
    """Return the allowed change in metric units: a number as is, 'N%' of |baseline|."""
    if isinstance(change, str):
        return abs(baseline) * float(change.rstrip("%")) / 100.0
    return float(change)


class RelativeRule(_Rule):
    """The candidate may move against the baseline by at most a tolerance."""

    kind: ClassVar[str] = "relative"
    keys: ClassVar[tuple[str, ...]] = ("max_increase", "max_decrease")

    max_increase: Change | None = Field(
        default=None, description="Largest allowed rise over the baseline: 0.5 or '5%'."
    )
    max_decrease: Change | None = Field(
        default=None, description="Largest allowed fall below the baseline: 0.02 or '2%'."
    )

    @field_validator("max_decrease")
    @classmethod
    def _one_direction(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("max_increase") is not None:
            raise ValueError(
                "give max_increase or max_decrease, not both in one rule "
                "(write two rules to bound both directions)"
            )
        return value

    @property
    def bound(self) -> tuple[str, float | str]:
        """Return ('max_increase' | 'max_decrease', tolerance)."""
        if self.max_increase is not None:
            return "max_increase", self.max_increase
        assert self.max_decrease is not None
        return "max_decrease", self.max_decrease

    def describe(self) -> str:
        """Return e.g. 'perplexity.ppl increase <= 5%'."""
        key, value = self.bound
        shown = value if isinstance(value, str) else f"{value:g}"
        return f"{self.metric} {key.removeprefix('max_')} <= {shown}"


class DropTest(_Strict):
    """Settings of a `no_significant_drop` test."""

    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="One-sided test level.")
    margin: float = Field(
        default=0.0, ge=0, description="Tolerated drop in the metric's units (non-inferiority)."
    )
    max_mde: float | None = Field(
        default=None,
        gt=0,
        description="Warn when the eval set cannot see a drop this small "
        "(default: margin + 5% of the baseline's value).",
    )


def _drop_test(value: Any) -> Any:
    if value is True or value is None:
        return {}
    if isinstance(value, dict):
        fields = list(DropTest.model_fields)
        for key in value:
            if key not in fields:
                hint = did_you_mean(str(key), fields) or f" Allowed: {', '.join(fields)}"
                raise ValueError(f"unknown key '{key}' in no_significant_drop.{hint}")
    return value


class StatisticalRule(_Rule):
    """The candidate must not be significantly worse, paired example by example."""

    kind: ClassVar[str] = "statistical"
    keys: ClassVar[tuple[str, ...]] = ("no_significant_drop", "per_example")

    no_significant_drop: Annotated[DropTest, BeforeValidator(_drop_test)] = Field(
        default_factory=DropTest, description="Test settings: alpha, margin, max_mde."
    )
    per_example: MetricName | None = Field(
        default=None,
        description="For an aggregate without per-example scores: the per-example score "
        "('evaluator.key') whose mean is bootstrapped in its place.",
    )
    higher_is_better: bool | None = Field(
        default=None, description="Direction; default guessed from the name (loss, ppl: lower)."
    )

    @field_validator("per_example")
    @classmethod
    def _check_basis(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value in CHECKPOINT_METRICS:
            raise ValueError(f"{value} has no per-example scores")
        return _metric_name(value)

    @property
    def metrics(self) -> list[str]:
        """Return the metric and its per-example basis, if any."""
        return [self.metric, *([self.per_example] if self.per_example else [])]

    @property
    def higher_better(self) -> bool:
        """Return the direction: given, else guessed from the metric's name."""
        if self.higher_is_better is not None:
            return self.higher_is_better
        return not lower_is_better(self.metric)

    def describe(self) -> str:
        """Return e.g. 'classification.correct: no significant drop (alpha 0.05)'."""
        test = self.no_significant_drop
        margin = f", margin {test.margin:g}" if test.margin else ""
        via = f" via {self.per_example}" if self.per_example else ""
        return f"{self.metric}{via}: no significant drop (alpha {test.alpha:g}{margin})"


class ThresholdRule(_Rule):
    """MLflow `MetricThreshold` semantics: a value threshold and/or a minimum improvement."""

    kind: ClassVar[str] = "threshold"
    keys: ClassVar[tuple[str, ...]] = (
        "threshold",
        "min_absolute_change",
        "min_relative_change",
        "greater_is_better",
    )

    threshold: float | None = Field(default=None, description="Value the candidate must reach.")
    min_absolute_change: float | None = Field(
        default=None, gt=0, description="Improvement over the baseline required, in units."
    )
    min_relative_change: float | None = Field(
        default=None, ge=0, le=1, description="Improvement required, as a share of |baseline|."
    )
    greater_is_better: bool = Field(description="Whether a larger value is better (required).")

    def describe(self) -> str:
        """Return e.g. 'x >= 0.8, +0.01 abs, +5% rel'."""
        op = ">=" if self.greater_is_better else "<="
        sign = "+" if self.greater_is_better else "-"
        parts = []
        if self.threshold is not None:
            parts.append(f"{op} {self.threshold:g}")
        if self.min_absolute_change is not None:
            parts.append(f"{sign}{self.min_absolute_change:g} vs baseline")
        if self.min_relative_change is not None:
            parts.append(f"{sign}{self.min_relative_change:.4g}x|baseline|")
        return f"{self.metric} threshold: {', '.join(parts)}"


RULE_MODELS: tuple[type[_Rule], ...] = (AbsoluteRule, RelativeRule, StatisticalRule, ThresholdRule)
_KINDS = {model.kind: model for model in RULE_MODELS}
ALL_KEYS = sorted({name for model in RULE_MODELS for name in model.model_fields})


def _kinds_of(data: dict[str, Any]) -> list[str]:
    return [m.kind for m in RULE_MODELS if any(key in data for key in m.keys)]


def _rule_kind(data: Any) -> str | None:
    # Tags must differ from every rule key, or the spec loader mistakes them for one.
    if isinstance(data, BaseModel):
        return f"{getattr(data, 'kind', '')}_rule"
    kinds = _kinds_of(data) if isinstance(data, dict) else []
    return f"{kinds[0]}_rule" if len(kinds) == 1 else None


def _kind_keys(kind: str) -> str:
    return "/".join(_KINDS[kind].keys)


def _check_shape(data: Any) -> Any:
    """Say which rule kind a mapping is, and what is wrong when it is none or several."""
    if isinstance(data, BaseModel):
        return data
    if not isinstance(data, dict):
        kind = "a string" if isinstance(data, str) else type(data).__name__
        raise ValueError(
            f"a rule is a mapping such as {{metric: json_schema.valid_rate, min: 0.9}}, got {kind}"
        )
    kinds = _kinds_of(data)
    if len(kinds) > 1:
        named = " and ".join(f"{k} ({_kind_keys(k)})" for k in kinds)
        raise ValueError(f"a rule is one kind; this one mixes {named}: write separate rules")
    if not kinds:
        unknown = [k for k in data if k not in ALL_KEYS]
        hint = "".join(did_you_mean(str(k), ALL_KEYS) for k in unknown[:1])
        raise ValueError(
            "a rule needs one of: min/max (absolute), max_increase/max_decrease (relative), "
            "no_significant_drop (statistical), threshold/min_absolute_change/"
            f"min_relative_change (threshold).{hint}"
        )
    model = _KINDS[kinds[0]]
    unknown = [k for k in data if k not in model.model_fields]
    if unknown:
        allowed = ", ".join(model.model_fields)
        hint = did_you_mean(str(unknown[0]), list(model.model_fields))
        raise ValueError(
            f"unknown key '{unknown[0]}' in a {model.kind} rule.{hint} Allowed: {allowed}"
        )
    if model is ThresholdRule and not any(k in data for k in ThresholdRule.keys[:3]):
        raise ValueError(
            "a threshold rule needs threshold, min_absolute_change or min_relative_change"
        )
    return data


GateRule = Annotated[
    Annotated[AbsoluteRule, Tag("absolute_rule")]
    | Annotated[RelativeRule, Tag("relative_rule")]
    | Annotated[StatisticalRule, Tag("statistical_rule")]
    | Annotated[ThresholdRule, Tag("threshold_rule")],
    Discriminator(_rule_kind),
    BeforeValidator(_check_shape),
]
_RULE_ADAPTER: TypeAdapter[Any] = TypeAdapter(GateRule)


class GateSpec(_Strict):
    """What `evalctl gate` compares the candidate with, and the rules it must pass."""

    baseline: str = Field(
        default="@production",
        min_length=1,
        description="Reference to compare with: @ALIAS, ckpt:ID, run:RUN or a run id/name.",
    )
    rules: list[GateRule] = Field(
        default_factory=list, description="Rules the candidate must pass (see docs)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> GateSpec:
        # The message starts with 'rules.N', which the spec loader turns into that line.
        problem = find_conflict(self.rules, [f"rules.{i}" for i in range(len(self.rules))])
        if problem:
            raise ValueError(problem)
        return self


def _identity(rule: _Rule) -> str:
    return json.dumps(rule.model_dump(exclude={"name"}, mode="json"), sort_keys=True)


def find_conflict(rules: Sequence[Any], labels: Sequence[str]) -> str | None:
    """Return '<label> <what is wrong>' for the first rule that contradicts an earlier one."""
    seen: dict[str, str] = {}
    bounds: dict[tuple[str, str], tuple[str, float | str]] = {}
    for label, rule in zip(labels, rules, strict=True):
        same = seen.get(_identity(rule))
        if same is not None:
            return f"{label} repeats {same} ({rule.describe()}); remove one"
        seen[_identity(rule)] = label
        for key, value in _bounds_of(rule):
            earlier = bounds.get((rule.metric, key))
            if earlier is not None:
                return (
                    f"{label} gives {rule.metric} {key} again ({earlier[0]} already does); keep one"
                )
            bounds[(rule.metric, key)] = (label, value)
        low, high = bounds.get((rule.metric, "min")), bounds.get((rule.metric, "max"))
        if low and high and float(low[1]) > float(high[1]):
            other = high[0] if low[0] == label else low[0]
            return (
                f"{label} contradicts {other}: {rule.metric} min {float(low[1]):g} is above "
                f"max {float(high[1]):g}, no value can pass"
            )
    return None


def _bounds_of(rule: Any) -> list[tuple[str, float | str]]:
    if isinstance(rule, AbsoluteRule):
        return [(k, v) for k, v in (("min", rule.min), ("max", rule.max)) if v is not None]
    if isinstance(rule, RelativeRule):
        key, value = rule.bound
        return [(f"a {key}", value)]
    if isinstance(rule, StatisticalRule):
        return [(f"a no_significant_drop test (via {rule.per_example or rule.metric})", 0.0)]
    if isinstance(rule, ThresholdRule):
        return [("a threshold rule", 0.0)]  # MLflow keys thresholds by metric: one per metric
    return []


def parse_rule(text: str, *, label: str) -> Any:
    """Return the rule a `--rule` option gives (YAML or JSON); EvalctlError naming `label`."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise EvalctlError(f"{label}: not valid YAML/JSON ({first}): {text!r}") from None
    try:
        return _RULE_ADAPTER.validate_python(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        tags = {f"{kind}_rule" for kind in _KINDS}
        where = ".".join(str(p) for p in err["loc"] if p not in tags)
        message = err["msg"].removeprefix("Value error, ")
        raise EvalctlError(f"{label}: {where + ': ' if where else ''}{message}") from None
