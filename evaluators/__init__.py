"""Evaluators: the contract, the plugin registry, built-ins and shared model machinery.

How to add one: write a module with one `Evaluator` subclass (canonical example:
`evaluators/json_schema.py`): set `name` to a snake_case string, nest a `Config(BaseModel)`
whose fields carry `Field(description=...)`, implement `evaluate(handle) -> EvalResult`,
and register it in your package's `pyproject.toml`:

    [project.entry-points."evalctl.evaluators"]
    my_metric = "my_pkg.my_metric:MyMetricEvaluator"

The spec then names it: `evaluators: [{my_metric: {...}}]`.

Runners call `evaluators.evaluate_checkpoint(...)` (see `evaluators.scoring`); nothing else
here is public to them.
"""

from evaluators.scoring import EvaluatorOutcome, evaluate_checkpoint, prepare_all

__all__ = ["EvaluatorOutcome", "evaluate_checkpoint", "prepare_all"]
