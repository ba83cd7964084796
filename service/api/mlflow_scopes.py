"""Which token scope each MLflow route under `/mlflow` needs, and the checks on its body.

Owns the route table of the MLflow mount (`service.api.mlflow_mount` asks it) and the
storage checks that need the request's body or MLflow's stores. Scopes by route, not by
method:

| routes                                                         | need                |
|----------------------------------------------------------------|---------------------|
| every GET/HEAD (UI, gets, lists, searches, artifact downloads)  | read                |
| read-only POSTs (runs/experiments/traces search, graphql, ...)  | read                |
| telemetry: experiments/create, runs create/update/log-*/tags,   | runner (or write)   |
| logged models, artifact upload under the artifact root          |                     |
| Model Registry writes, every delete/restore, traces, datasets   | write               |
| registered-model aliases, stage transitions                     | admin (409 others)  |
| gateway, webhooks, workspaces, scorers, jobs, any route not here | admin              |

Aliases mirror evalctl's registry, the source of truth: they move with `evalctl promote` or
`PUT /api/v1/aliases/...`; a move made only in MLflow is refused (admin may still repair).
A route not in the table needs admin, so a route a new MLflow adds is not silently open.
Paths are matched as Flask routes them (`/ajax-api/` is the UI's spelling of `/api/`).
Body checks (`guard`): an experiment's `artifact_location` must lie in the artifact root,
a model version's `source` in the storage roots, and a file served for a model version or
a run must resolve inside its folder and the roots (`service.storage`).
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

from service.api.auth import Need
from service.settings import Settings
from service.storage import (
    StorageError,
    confine_artifact_location,
    confine_checkpoint,
    confine_model_source,
    confine_served_file,
    is_local,
)

#: Stands for "admin only; everyone else gets 409 (evalctl's registry owns this)".
MIRROR = "mirror"
MIRROR_DETAIL = (
    "MLflow aliases and stages mirror evalctl's registry: move them with `evalctl promote` "
    "or PUT /api/v1/aliases/{experiment}/{alias}"
)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: GET routes that reveal configuration or secrets rather than experiment data.
ADMIN_GET = re.compile(r"^/api/[23]\.0/mlflow/(gateway|gateway-proxy|webhooks)(/|$)")

_M = "/api/2.0/mlflow"
_M3 = "/api/3.0/mlflow"
_A = "/api/2.0/mlflow-artifacts"
_TABLE: dict[str | Need, list[str]] = {
    Need.read: [
        f"POST {_M}/experiments/search",
        f"POST {_M}/runs/search",
        f"POST {_M}/registered-models/get-latest-versions",
        f"POST {_M}/logged-models/search",
        f"POST {_M}/experiments/search-datasets",
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
        f"POST {_M}/experiments/create",  # guard: artifact_location
        *(
            f"POST {_M}/runs/{verb}"
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
        f"POST {_M}/logged-models",
        f"PATCH {_M}/logged-models/<id>",
        f"POST {_M}/logged-models/<id>/params",
        f"PATCH {_M}/logged-models/<id>/tags",
        f"PUT {_A}/artifacts/<path>",
        f"POST {_A}/mpu/create/<path>",
        f"POST {_A}/mpu/complete/<path>",
        f"POST {_A}/mpu/abort/<path>",
        f"POST {_M}/upload-artifact",  # guard: the run's artifact folder
    ],
    Need.write: [
        *(
            f"POST {_M}/experiments/{verb}"
            for verb in ("delete", "restore", "update", "set-experiment-tag")
        ),
        f"POST {_M}/experiments/delete-experiment-tag",
        f"POST {_M}/runs/delete",
        f"POST {_M}/runs/restore",
        f"DELETE {_A}/artifacts/<path>",
        f"DELETE {_M}/logged-models/<id>",
        f"DELETE {_M}/logged-models/<id>/tags/<id>",
        f"POST {_M}/registered-models/create",
        f"POST {_M}/registered-models/rename",
        f"POST {_M}/registered-models/set-tag",
        f"PATCH {_M}/registered-models/update",
        f"DELETE {_M}/registered-models/delete",
        f"DELETE {_M}/registered-models/delete-tag",
        f"POST {_M}/model-versions/create",  # guard: source
        f"POST {_M}/model-versions/set-tag",
        f"PATCH {_M}/model-versions/update",
        f"DELETE {_M}/model-versions/delete",
        f"DELETE {_M}/model-versions/delete-tag",
        f"POST {_M}/traces",
        f"PATCH {_M}/traces/<id>",
        f"PATCH {_M}/traces/<id>/tags",
        f"DELETE {_M}/traces/<id>/tags",
        f"POST {_M}/traces/delete-traces",
        f"POST {_M}/traces/link-prompts",
        f"POST {_M}/traces/link-to-run",
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
        f"POST {_M}/registered-models/alias",
        f"DELETE {_M}/registered-models/alias",
        f"POST {_M}/model-versions/transition-stage",
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


#: Routes whose body or target `guard` checks; others skip it (and its thread hop).
GUARDED = frozenset(
    {
        f"{_M}/experiments/create",
        f"{_M}/model-versions/create",
        "/model-versions/get-artifact",
        "/get-artifact",
        f"{_M}/artifacts/list",
        f"{_M}/upload-artifact",
        "/graphql",
    }
)


def guarded(path: str) -> bool:
    """Return whether requests to `path` go through `guard`."""
    return canonical(path) in GUARDED


def guard(
    method: str, path: str, query: bytes, body: bytes, settings: Settings
) -> tuple[int, str] | Need | None:
    """Check a request's body/target against the storage roots.

    Returns None when it may go on, a Need it additionally needs (a GraphQL write), or
    (status, detail) to answer instead. Needs MLflow's stores set up (the mount built).
    """
    path = canonical(path)
    args = dict(reversed(parse_qsl(query.decode("latin-1"))))  # first value wins, as in Flask
    try:
        if method == "POST" and path == f"{_M}/experiments/create":
            fields = _json_object(body)
            location = fields.get("artifact_location", fields.get("artifactLocation"))
            confine_artifact_location(None if location is None else str(location), settings)
        elif method == "POST" and path == f"{_M}/model-versions/create":
            source = _json_object(body).get("source")
            confine_model_source(str(source or ""), settings)
        elif method == "GET" and path == "/model-versions/get-artifact":
            _check_version_file(args, settings)
        elif (method, path) in {
            ("GET", "/get-artifact"),
            ("GET", f"{_M}/artifacts/list"),
            ("POST", f"{_M}/upload-artifact"),
        }:
            _check_run_folder(args, settings)
        elif path == "/graphql":
            text = args.get("query") if method == "GET" else _json_object(body).get("query")
            return Need.write if _graphql_writes(text) else None
    except StorageError as exc:
        return 403, str(exc)
    except ValueError as exc:
        return 400, str(exc)
    return None


def _json_object(body: bytes) -> dict[str, object]:
    try:
        value = json.loads(body or b"{}")
        if isinstance(value, str):  # old MLflow clients double-encode; MLflow accepts it
            value = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("request body is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError("request body must be a JSON object")
    return value


def _check_version_file(args: dict[str, str], settings: Settings) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.server import handlers

    try:
        uri = handlers._get_model_registry_store().get_model_version_download_uri(
            args.get("name", ""), args.get("version", "")
        )
    except MlflowException:
        return  # MLflow answers the unknown version itself
    if is_local(uri):
        confine_served_file(uri, args.get("path", ""), settings)
    elif not uri.startswith("mlflow-artifacts:"):
        confine_checkpoint(uri, settings, what="model version source")


def _check_run_folder(args: dict[str, str], settings: Settings) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.server import handlers

    run_id = args.get("run_uuid") or args.get("run_id")
    if not run_id:
        return
    try:
        uri = handlers._get_tracking_store().get_run(run_id).info.artifact_uri
    except MlflowException:
        return
    if is_local(uri):
        confine_artifact_location(uri, settings)  # runs of experiments made before the check
        confine_served_file(uri, args.get("path", "") or ".", settings)


def _graphql_writes(text: object) -> bool:
    """Return whether a GraphQL document has a mutation beyond MLflow's read-only ones."""
    from graphql import FieldNode, GraphQLError, OperationDefinitionNode, OperationType, parse

    if not isinstance(text, str):
        return False  # MLflow refuses it
    try:
        document = parse(text)
    except GraphQLError:
        return False
    for node in document.definitions:
        if isinstance(node, OperationDefinitionNode) and node.operation == OperationType.MUTATION:
            for selection in node.selection_set.selections:
                if not isinstance(selection, FieldNode):  # a fragment could hide a write
                    return True
                if selection.name.value not in GRAPHQL_READ_MUTATIONS:
                    return True
    return False
