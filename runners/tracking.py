"""MLflow bridge for runners: one MLflow run per evalctl run, params, step metrics, system info.

MLflow holds telemetry (params, step metrics such as loss and tokens/s, evaluator metrics
per step); the registry holds the control plane and links to the MLflow run by id. When a
spec turns MLflow off, `NullTracker` takes its place so callers never branch.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from service.errors import EvalctlError


class NullTracker:
    """A tracker that records nothing (tracking.mlflow: false)."""

    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        """Record nothing."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record nothing."""

    def set_tags(self, tags: dict[str, str]) -> None:
        """Record nothing."""

    def end(self, status: str) -> None:
        """Record nothing."""


class MlflowTracker:
    """Logs to one MLflow run through `MlflowClient` (no global active-run state)."""

    def __init__(
        self,
        *,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        tags: dict[str, str],
        run_id: str | None = None,
    ) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            if run_id is not None:  # resuming: keep logging to the same MLflow run
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
                return
            found = self.client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
            run = self.client.create_run(exp_id, run_name=run_name, tags=tags)
        except mlflow.exceptions.MlflowException as exc:
            raise EvalctlError(f"MLflow at {tracking_uri}: {exc.message}") from None
        self.run_id = run.info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params (values stringified, long ones cut to MLflow's limit)."""
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log numeric metrics at `step`."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if _is_number(v)]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set tags on the run."""
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def end(self, status: str) -> None:
        """Close the run with FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status=status)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and value == value  # drop NaN


def system_info(device: str) -> dict[str, str]:
    """Return library versions and hardware facts worth keeping next to the metrics."""
    import peft
    import torch
    import transformers

    info = {
        "system.python": platform.python_version(),
        "system.platform": platform.platform(),
        "system.cpu_count": str(os.cpu_count()),
        "system.torch": torch.__version__,
        "system.transformers": transformers.__version__,
        "system.peft": peft.__version__,
        "system.device": device,
        "system.torch_threads": str(torch.get_num_threads()),
    }
    if device == "cuda":
        info["system.gpu"] = torch.cuda.get_device_name(0)
        info["system.gpu_count"] = str(torch.cuda.device_count())
    return info
