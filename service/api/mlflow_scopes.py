"""Which token scope each MLflow route under `/mlflow` needs, (the table).

Owns the route table of the MLflow mount (`service.api.mlflow_mount` asks it). Scopes by
route, not by method:

| routes                                                         | need                |
|----------------------------------------------------------------|---------------------|
| every GET/HEAD (UI, gets, lists, searches, artifact downloads)  | read                |
| read-only POSTs (runs/experiments/traces search, graphql, ...)  | read                |
| telemetry: experiments/create, runs create/update/log-*/tags,   | runner (or write)   |
| logged models, artifact upload under the artifact root          |                     |
| Model Registry writes, every delete/restore, traces, datasets   | write               |
| Model Registry tags named `evalctl.*` (set, delete, create with) | admin              |
| registered-model aliases, stage transitions                     | admin (409 others)  |
| gateway, webhooks, workspaces, scorers, jobs, any route not here | admin              |

Aliases mirror evalctl's registry, the source of truth: they move with `evalctl promote` or
`PUT /api/v1/aliases/...`; a move made only in MLflow is refused (admin may still repair).
A route not in the table needs admin, so a route a new MLflow adds is not silently open.
Paths are matched as Flask routes them (`/ajax-api/` is the UI's spelling of `/api/`).
The checks on a request's body and target live in `service.api.mlflow_guard`.
"""

from __future__ import annotations

import re

from service.api.auth import Need

#: Stands for "admin only; everyone else gets 409 (evalctl's registry owns this)".
MIRROR = "mirror"
MIRROR_DETAIL = (
    "MLflow aliases and stages mirror evalctl's registry: move them with `evalctl promote` "
    "or PUT /api/v1/aliases/{experiment}/{alias}"
)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: GET routes that reveal configuration or secrets rather than experiment data.
ADMIN_GET = re.compile(r"^/api/[23]\.0/mlflow/(gateway|gateway-proxy|webhooks)(/|$)")

MLFLOW_API = "/api/2.0/mlflow"
_M3 = "/api/3.0/mlflow"
_A = "/api/2.0/mlflow-artifacts"
_TABLE: dict[str | Need, list[str]] = {
    Need.read: [
        f"POST {MLFLOW_API}/experiments/search",
        f"POST {MLFLOW_API}/runs/search",
        f"POST {MLFLOW_API}/registered-models/get-latest-versions",
        f"POST {MLFLOW_API}/logged-models/search",
        f"POST {MLFLOW_API}/experiments/search-datasets",
        "POST /api/2.0mlflow/experiments/search-datasets",  # sic, MLflow's spelling
        f"POST {_M3}/traces/search",
        f"POST {_M3}/traces/batchGetInfos",
        f"POST {_M3}/traces/metrics",
        f"POST {_M3}/traces/calculate-filter-correlation",
        f"POST {_M3}/datasets/search",
        f"POST {_M3}/issues/search",
        f"POST {_M3}/ui-telemetry",
        "POST /graphql",  # guard: only MLflow's read-only (search) operations
    ],
    Need.report: [
        f"POST {MLFLOW_API}/experiments/create",  # guard: artifact_location
        *(
            f"POST {MLFLOW_API}/runs/{verb}"
            for verb in (
                "create",
                "update",
                "log-metric",
                "log-parameter",
                "log-batch",
                "log-inputs",
                "log-model",
                "outputs",
                "set-tag",
                "delete-tag",
            )
        ),
        f"POST {MLFLOW_API}/logged-models",
        f"PATCH {MLFLOW_API}/logged-models/<id>",
        f"POST {MLFLOW_API}/logged-models/<id>/params",
        f"PATCH {MLFLOW_API}/logged-models/<id>/tags",
        f"PUT {_A}/artifacts/<path>",
        f"POST {_A}/mpu/create/<path>",
        f"POST {_A}/mpu/complete/<path>",
        f"POST {_A}/mpu/abort/<path>",
        f"POST {MLFLOW_API}/upload-artifact",  # guard: the run's artifact folder
    ],
    Need.write: [
        *(
            f"POST {MLFLOW_API}/experiments/{verb}"
            for verb in ("delete", "restore", "update", "set-experiment-tag")
        ),
        f"POST {MLFLOW_API}/experiments/delete-experiment-tag",
        f"POST {MLFLOW_API}/runs/delete",
        f"POST {MLFLOW_API}/runs/restore",
        f"DELETE {_A}/artifacts/<path>",
        f"DELETE {MLFLOW_API}/logged-models/<id>",
        f"DELETE {MLFLOW_API}/logged-models/<id>/tags/<id>",
        f"POST {MLFLOW_API}/registered-models/create",
        f"POST {MLFLOW_API}/registered-models/rename",
        f"POST {MLFLOW_API}/registered-models/set-tag",
        f"PATCH {MLFLOW_API}/registered-models/update",
        f"DELETE {MLFLOW_API}/registered-models/delete",
        f"DELETE {MLFLOW_API}/registered-models/delete-tag",
        f"POST {MLFLOW_API}/model-versions/create",  # guard: source
        f"POST {MLFLOW_API}/model-versions/set-tag",
        f"PATCH {MLFLOW_API}/model-versions/update",
        f"DELETE {MLFLOW_API}/model-versions/delete",
        f"DELETE {MLFLOW_API}/model-versions/delete-tag",
        f"POST {MLFLOW_API}/traces",
        f"PATCH {MLFLOW_API}/traces/<id>",
        f"PATCH {MLFLOW_API}/traces/<id>/tags",
        f"DELETE {MLFLOW_API}/traces/<id>/tags",
        f"POST {MLFLOW_API}/traces/delete-traces",
        f"POST {MLFLOW_API}/traces/link-prompts",
        f"POST {MLFLOW_API}/traces/link-to-run",
        f"POST {_M3}/traces",
        f"PATCH {_M3}/traces/<id>/tags",
        f"DELETE {_M3}/traces/<id>/tags",
        f"POST {_M3}/traces/delete-traces",
        f"POST {_M3}/traces/<id>/assessments",
        f"PATCH {_M3}/traces/<id>/assessments/<id>",
        f"DELETE {_M3}/traces/<id>/assessments/<id>",
        f"POST {_M3}/datasets/create",
        f"DELETE {_M3}/datasets/<id>",
        f"POST {_M3}/datasets/<id>/add-experiments",
        f"POST {_M3}/datasets/<id>/remove-experiments",
        f"POST {_M3}/datasets/<id>/records",
        f"DELETE {_M3}/datasets/<id>/records",
        f"PATCH {_M3}/datasets/<id>/tags",
        f"DELETE {_M3}/datasets/<id>/tags/<id>",
        f"POST {_M3}/issues",
        f"PATCH {_M3}/issues/<id>",
    ],
    MIRROR: [
        f"POST {MLFLOW_API}/registered-models/alias",
        f"DELETE {MLFLOW_API}/registered-models/alias",
        f"POST {MLFLOW_API}/model-versions/transition-stage",
    ],
}


def _compile(entry: str) -> tuple[str, re.Pattern[str]]:
    method, _, path = entry.partition(" ")
    pattern = re.escape(path).replace("<path>", ".+").replace("<id>", "[^/]+")
    return method, re.compile(f"^{pattern}$")


_ROUTES = [(*_compile(entry), need) for need, entries in _TABLE.items() for entry in entries]
#: Top-level fields of MLflow's GraphQL mutation type that only read (MLflow 3.x).
GRAPHQL_READ_MUTATIONS = frozenset({"mlflowSearchRuns", "mlflowSearchDatasets", "testMutation"})


def canonical(path: str) -> str:
    """Return an MLflow path as the table spells it (`/ajax-api/` -> `/api/`)."""
    return "/api/" + path.removeprefix("/ajax-api/") if path.startswith("/ajax-api/") else path


def route_need(method: str, path: str) -> Need | str:
    """Return what a request to MLflow route `path` needs: a Need, or MIRROR."""
    path = canonical(path)
    if method in READ_METHODS:
        return Need.admin if ADMIN_GET.match(path) else Need.read
    for route_method, pattern, need in _ROUTES:
        if route_method == method and pattern.match(path):
            return need
    return Need.admin
