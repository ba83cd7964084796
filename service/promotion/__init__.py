"""The one promotion flow: the CLI, the dashboard and the retrain policy all call it.

Owns moving an alias (e.g. production) to a checkpoint and back, in evalctl's registry
(the source of truth) and MLflow's Model Registry:

- `service.promotion.flow`: the alias-name rule, the alias's current checkpoint and its
  rollback target, and `promote` / `rollback` returning a `PromotionResult`;
- `service.promotion.gate`: gate planning (rules, both references, which evaluations
  are missing), judging, and the gate a promotion runs; running a missing evaluation is
  the caller's (the service cannot run models; the CLI passes `runners.evaluate`);
- `service.promotion.moves`: the move itself, MLflow version first, then the alias with
  its actor and token id (`move`, and `move_alias` inside the service).

It imports neither `evalctl` nor `dashboards`; callers parse input and render output.
"""

from service.promotion.flow import (
    PromotionResult,
    alias_problem,
    current_alias,
    promote,
    rollback,
    rollback_target,
    run_gate,
)
from service.promotion.gate import (
    GatePlan,
    MissingEvaluation,
    gate_error,
    gate_for_promotion,
    judge,
    missing_evaluations,
    plan_gate,
    run_missing,
)
from service.promotion.moves import move, move_alias

__all__ = [
    "GatePlan",
    "MissingEvaluation",
    "PromotionResult",
    "alias_problem",
    "current_alias",
    "gate_error",
    "gate_for_promotion",
    "judge",
    "missing_evaluations",
    "move",
    "move_alias",
    "plan_gate",
    "promote",
    "rollback",
    "rollback_target",
    "run_gate",
    "run_missing",
]
