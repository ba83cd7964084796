"""Hugging Face `evaluate` metric modules shipped with evalctl, loaded offline.

Owns the metric modules (`rouge`, `bleu`, `chrf`, `exact_match`: one folder each, holding
`<name>.py` with an `evaluate.Metric` subclass in the style of the hub's modules) and
`load_metric(name)`, which loads one from its folder with the hub switched off, so
evaluation never reaches the network (`evaluate.load("rouge")` would download). It does not
decide which metrics an evaluator reports.

How to add one: create `evaluators/metrics/<name>/<name>.py` (canonical example:
`rouge/rouge.py`) plus a one-line `__init__.py` (so the folder ships in the wheel),
and add the name to `METRICS`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from service.errors import unknown_name

METRICS_DIR = Path(__file__).resolve().parent
METRICS = ("bleu", "chrf", "exact_match", "rouge")
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE", "HF_DATASETS_OFFLINE")


def metric_path(name: str) -> Path:
    """Return the folder of the shipped metric module `name`.

    Raises:
        ValueError: no metric of that name ships with evalctl (with a suggestion).
    """
    if name not in METRICS:
        raise ValueError(unknown_name("metric", name, METRICS))
    return METRICS_DIR / name


def load_metric(name: str) -> Any:
    """Load the shipped metric module `name` with `evaluate.load`, without the network.

    The offline switches are set before `evaluate` is imported (it reads them once, at
    import); a local folder never needs the hub, and this makes sure nothing tries.
    """
    path = metric_path(name)
    for variable in OFFLINE_ENV:
        os.environ.setdefault(variable, "1")
    import evaluate

    # In memory: the default writes an Arrow cache file per call, which concurrent
    # evaluations in one home would contend for.
    return evaluate.load(str(path), keep_in_memory=True)
