"""Running a checkpoint's evaluators: the named functions that runners call.

Owns the order of work around evaluators: `prepare_all` checks every evaluator's inputs
before training starts, `evaluate_checkpoint` runs each evaluator on one loaded model and
records success or failure per evaluator (one crash does not stop the others), and
`config_hash` identifies an evaluator configuration so results stay comparable. It does
not load models or write to the registry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluators.base import EvalResult, Evaluator, EvaluatorInputError, ModelHandle
from service.hashing import sha256_file

log = logging.getLogger(__name__)

# Called as progress(name, index, total) just before evaluator `index` (0-based) starts.
Progress = Callable[[str, int, int], None]


@dataclass
class EvaluatorOutcome:
    """What one evaluator produced on one checkpoint: a result, or the error that stopped it."""

    name: str
    config_hash: str
    result: EvalResult | None
    error: str | None
    duration_s: float

    @property
    def ok(self) -> bool:
        """Return whether the evaluator finished with a result."""
        return self.error is None


def config_hash(evaluator: Evaluator) -> str:
    """Return the sha256 (hex) of the evaluator's name, its config and its input files.

    Input files and folders (config fields that are paths) count by content, so editing a
    prompt set or a task YAML in place gives a new hash and results on different data are
    never paired. Files over 16 MiB (model weights) count by name, size, and their first
    and last MiB, which identifies weights without reading gigabytes on every evaluation.
    """
    payload = {
        "evaluator": evaluator.name,
        "config": evaluator.config.model_dump(mode="json"),
        "files": _file_digests(evaluator.config),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_WHOLE_FILE_LIMIT = 16 << 20


def _file_digests(config: Any) -> dict[str, str]:
    digests = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, Path) and value.is_file():
            digests[name] = _fingerprint(value)
        elif isinstance(value, Path) and value.is_dir():
            digest = hashlib.sha256()
            for path in sorted(p for p in value.rglob("*") if p.is_file()):
                digest.update(str(path.relative_to(value)).encode())
                digest.update(_fingerprint(path).encode())
            digests[name] = digest.hexdigest()
    return digests


def _fingerprint(path: Path) -> str:
    size = path.stat().st_size
    if size <= _WHOLE_FILE_LIMIT:
        return sha256_file(path)
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
        fh.seek(-(1 << 20), 2)
        digest.update(fh.read(1 << 20))
    return digest.hexdigest()


def prepare_all(evaluators: list[tuple[str, Evaluator]]) -> None:
    """Check every evaluator's inputs, in order, before any model work.

    Raises:
        EvaluatorInputError: the first evaluator whose inputs are unusable, its message
            prefixed with `evaluators.<name>: `.
    """
    for name, evaluator in evaluators:
        try:
            evaluator.prepare()
        except EvaluatorInputError as exc:
            raise EvaluatorInputError(f"evaluators.{name}: {exc}") from exc


def evaluate_checkpoint(
    *,
    handle: ModelHandle,
    evaluators: list[tuple[str, Evaluator]],
    progress: Progress | None = None,
) -> list[EvaluatorOutcome]:
    """Run each evaluator on the loaded model; a failing one is recorded, the rest still run.

    Returns:
        One outcome per evaluator, in the given order.
    """
    outcomes = []
    for index, (name, evaluator) in enumerate(evaluators):
        if progress is not None:
            progress(name, index, len(evaluators))
        started = time.perf_counter()
        result: EvalResult | None = None
        error: str | None = None
        try:
            result = evaluator.evaluate(handle)
        except Exception as exc:  # one evaluator's bug must not cost the others' results
            log.exception("evaluator %s failed on model %s", name, handle.model_hash)
            error = one_line_error(exc)
        outcomes.append(
            EvaluatorOutcome(
                name=name,
                config_hash=config_hash(evaluator),
                result=result,
                error=error,
                duration_s=time.perf_counter() - started,
            )
        )
    return outcomes


def one_line_error(exc: BaseException) -> str:
    """Return `Type: message` on one line."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
