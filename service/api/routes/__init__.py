"""The `/api/v1` routers, one module per noun, and how they map onto `Registry`.

Each `service.registry.Registry` method has exactly one route, so an HTTP
`RemoteRegistry` can implement the Protocol call for call (list bodies come back as
`XsPublic(data, count)`; take `.data` where the Protocol returns a list):

| Registry method              | route                                                |
|------------------------------|------------------------------------------------------|
| get_or_create_experiment     | POST  /experiments {name}                            |
| get_experiment               | GET   /experiments/{name}                            |
| list_experiments             | GET   /experiments                                   |
| create_run                   | POST  /runs (201)                                    |
| update_run                   | PATCH /runs/{run_id}                                 |
| get_run                      | GET   /runs/{ref} (id or name)                       |
| list_runs                    | GET   /runs?experiment=&status=&limit=&offset=       |
| record_checkpoint            | POST  /checkpoints (idempotent, 200)                 |
| get_checkpoint               | GET   /checkpoints/{checkpoint_id}                   |
| list_checkpoints             | GET   /runs/{run_id}/checkpoints                     |
| record_evaluation            | POST  /evaluations {evaluation, examples} (201)      |
| get_evaluation               | GET   /evaluations/{evaluation_id}                   |
| list_evaluations             | GET   /evaluations?run_id=&checkpoint_id=            |
| list_examples                | GET   /evaluations/{evaluation_id}/examples?limit=&offset= |
| list_example_scores          | GET   /evaluations/{evaluation_id}/scores (unpaged)  |
| set_alias                    | PUT   /aliases/{experiment_id}/{name} {checkpoint_id, actor, ...} |
| get_alias                    | GET   /aliases/{experiment_id}/{name}                |
| list_aliases                 | GET   /aliases?experiment_id=                        |
| alias_history                | GET   /aliases/{experiment_id}/{name}/history        |

Keyword arguments become the body (POST/PUT/PATCH) or query parameters (GET) under the
same names; ids in the path.

Errors keep the Protocol's meaning: `NotFoundError` is 404, another `EvalctlError` 409,
each with `{"detail": message}`. Tokens, jobs and runners are not part of `Registry`.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import (
    aliases,
    checkpoints,
    evaluations,
    experiments,
    jobs,
    runners,
    runs,
    tokens,
)

ROUTERS: tuple[APIRouter, ...] = (
    experiments.router,
    runs.router,
    checkpoints.router,
    evaluations.router,
    aliases.router,
    tokens.router,
    jobs.router,
    runners.router,
)
