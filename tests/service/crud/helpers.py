"""Calls for the data-access tests: one session per call, rows returned as `*Public` models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from service import crud
from service.models import ApiTokenPublic, JobCreate, JobLogPublic, JobPublic, RunnerPublic


def call(engine: Engine, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Run one data-access call in its own session, as one API request would."""
    with Session(engine) as session:
        result = fn(session=session, **kwargs)
        return _public(result)


def _public(result: Any) -> Any:
    kinds = {"Job": JobPublic, "ApiToken": ApiTokenPublic, "Runner": RunnerPublic}
    kinds["JobLog"] = JobLogPublic
    if isinstance(result, list):
        return [_public(item) for item in result]
    if isinstance(result, tuple):
        return tuple(_public(item) for item in result)
    model = kinds.get(type(result).__name__)
    return model.model_validate(result) if model is not None else result


def enqueue(engine: Engine, **kwargs: Any) -> JobPublic:
    fields: dict[str, Any] = {"kind": "train", "spec_text": "name: x\n"} | kwargs
    return call(engine, crud.enqueue_job, job_in=JobCreate(**fields))


def claim(engine: Engine, runner_id: int = 1, **kwargs: Any) -> JobPublic | None:
    fields: dict[str, Any] = {"labels": [], "gpus": 1, "lease_seconds": 60.0} | kwargs
    return call(engine, crud.claim_job, runner_id=runner_id, **fields)
