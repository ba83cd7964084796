"""Runners on SQLite and Postgres: registration, heartbeats, offline listing, the token a
runner is bound to, and the jobs a restarted runner gives back."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import Engine, text

from service import crud
from service.crud import RunnerNameTaken
from service.errors import NotFoundError
from service.models import utcnow
from tests.service.crud.helpers import call, claim, enqueue


def test_runner_registration_heartbeat_and_offline(engine: Engine) -> None:
    runner = call(engine, crud.register_runner, name="gpu-1", labels=["a100"], gpus=2)
    again = call(engine, crud.register_runner, name="gpu-1", labels=["h100"], gpus=8)
    assert again.id == runner.id and (again.labels, again.gpus) == (["h100"], 8)
    job = enqueue(engine)
    busy = call(engine, crud.runner_heartbeat, runner_id=runner.id, current_job_id=job.id)
    assert (busy.status, busy.current_job_id) == ("busy", job.id)
    call(engine, crud.register_runner, name="gpu-2", labels=[], gpus=1)
    with engine.begin() as conn:
        stale = utcnow() - timedelta(seconds=61)
        conn.execute(
            text("UPDATE runner SET last_heartbeat_at = :t WHERE name = 'gpu-2'"), {"t": stale}
        )
    listed = {r.name: r.status for r in call(engine, crud.list_runners)}
    assert listed == {"gpu-1": "busy", "gpu-2": "offline"}
    with engine.connect() as conn:  # computed for the listing, not written
        assert conn.execute(text("SELECT status FROM runner WHERE name='gpu-2'")).scalar() == "idle"


def test_a_runner_registering_again_gives_back_the_jobs_it_held(engine: Engine) -> None:
    """An agent that restarts registers again: its jobs go back to the queue at once
    (or fail, out of attempts), instead of waiting out their leases."""
    _, token = call(engine, crud.create_token, name="r", scopes=["runner"])
    register = partial(call, engine, crud.register_runner, labels=[], gpus=1, token_id=token.id)
    box, other = register(name="box"), register(name="other")
    retried = enqueue(engine, max_attempts=2)
    assert claim(engine, runner_id=box.id, lease_seconds=600).id == retried.id
    kept = enqueue(engine)
    assert claim(engine, runner_id=other.id).id == kept.id
    register(name="box")
    back = call(engine, crud.get_job, job_id=retried.id)
    assert (back.status, back.lease_owner, back.attempts) == ("queued", None, 1)
    assert call(engine, crud.get_job, job_id=kept.id).lease_owner == other.id  # not its job
    # A runner takes it again as its second attempt; another restart fails it.
    assert claim(engine, runner_id=box.id).attempts == 2
    register(name="box")
    failed = call(engine, crud.get_job, job_id=retried.id)
    assert failed.status == "failed" and failed.finished_at is not None
    assert failed.failure_reason == "runner box restarted during attempt 2 of 2"
    asked = enqueue(engine)
    claim(engine, runner_id=box.id)
    call(engine, crud.cancel_job, job_id=asked.id)
    register(name="box")
    assert call(engine, crud.get_job, job_id=asked.id).status == "cancelled"


def test_a_runner_name_stays_with_the_token_that_registered_it(engine: Engine) -> None:
    _, mine = call(engine, crud.create_token, name="a", scopes=["runner"])
    _, theirs = call(engine, crud.create_token, name="b", scopes=["runner"])
    runner = call(
        engine, crud.register_runner, name="box", labels=["a100"], gpus=1, token_id=mine.id
    )
    assert runner.token_id == mine.id
    with pytest.raises(RunnerNameTaken, match="runner name 'box' is registered by another"):
        call(engine, crud.register_runner, name="box", labels=["x"], gpus=8, token_id=theirs.id)
    assert call(engine, crud.get_runner, runner_id=runner.id).labels == ["a100"]
    call(engine, crud.revoke_token, token_id=mine.id)
    taken = call(engine, crud.register_runner, name="box", labels=["x"], gpus=8, token_id=theirs.id)
    assert (taken.id, taken.token_id, taken.labels) == (runner.id, theirs.id, ["x"])
    with pytest.raises(NotFoundError, match="runner 999 not found; register it first"):
        call(engine, crud.get_runner, runner_id=999)
