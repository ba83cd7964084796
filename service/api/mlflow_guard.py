"""The checks on an MLflow request's body and target, and the files evalctl serves itself.

Owns what the route table (`service.api.mlflow_scopes`) cannot decide from the path alone.
Body checks (`guard`) read each parameter where, and in the order, MLflow's handler reads
it (query string as werkzeug parses it, or JSON body; `run_id` before `run_uuid`; paths
decoded as `validate_path_is_safe` decodes them), and refuse a request naming two runs:
an experiment's `artifact_location` must lie in the artifact root, a model version's
`source` in the storage roots, and the run whose artifacts are listed or uploaded must
lie in its folder and the roots. A file from a local folder (a model version's source, a
run's local artifacts) is opened, checked and streamed by evalctl (`Download`), never
opened by MLflow after the check (`service.storage.open_served_file`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from service.api.auth import Need
from service.api.mlflow_scopes import GRAPHQL_READ_MUTATIONS, MLFLOW_API, canonical
from service.settings import Settings
from service.storage import (
    NoSuchFile,
    ServedFile,
    StorageError,
    confine_artifact_location,
    confine_checkpoint,
    confine_model_source,
    confine_served_file,
    is_local,
    open_served_file,
)

#: Model Registry routes whose tags `guard` reads: `evalctl.*` tags are evalctl's own.
TAG_ROUTES = frozenset(
    f"{MLFLOW_API}/{noun}/{verb}"
    for noun in ("registered-models", "model-versions")
    for verb in ("create", "set-tag", "delete-tag")
)
EVALCTL_TAG_PREFIX = "evalctl."
#: Routes whose body or target `guard` checks; others skip it (and its thread hop).
GUARDED = frozenset(
    {
        f"{MLFLOW_API}/experiments/create",
        *TAG_ROUTES,
        "/model-versions/get-artifact",
        "/get-artifact",
        f"{MLFLOW_API}/artifacts/list",
        f"{MLFLOW_API}/upload-artifact",
        "/graphql",
    }
)
#: Bytes read from a served file per send.
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class Requires:
    """A scope a request needs beyond its route's, and why."""

    need: Need
    why: str


@dataclass(frozen=True)
class Download:
    """A checked file that evalctl streams itself, with the headers MLflow sends for it."""

    file: ServedFile
    headers: list[tuple[str, str]]


def guarded(path: str) -> bool:
    """Return whether requests to `path` go through `guard`."""
    return canonical(path) in GUARDED


def guard(
    method: str, path: str, query: bytes, body: bytes, settings: Settings
) -> tuple[int, str] | Requires | Download | None:
    """Check a request's body/target against the storage roots and evalctl's own tags.

    Returns None when it may go on, what it additionally needs (a GraphQL write, evalctl's
    tags), a file to stream instead of MLflow, or (status, detail) to answer instead.
    Needs MLflow's stores set up (the mount built).
    """
    from mlflow.exceptions import MlflowException

    path = canonical(path)
    fetch = method in ("GET", "HEAD")  # Flask answers HEAD with the GET handler
    try:
        args = _query_args(query)
        if method == "POST" and path == f"{MLFLOW_API}/experiments/create":
            fields = _json_object(body)
            location = fields.get("artifact_location", fields.get("artifactLocation"))
            confine_artifact_location(None if location is None else str(location), settings)
        elif path in TAG_ROUTES and method in ("POST", "DELETE"):
            fields = _json_object(body)
            if method == "POST" and path == f"{MLFLOW_API}/model-versions/create":
                confine_model_source(str(fields.get("source") or ""), settings)
            if _sets_evalctl_tags(fields):
                why = f"tags named {EVALCTL_TAG_PREFIX}* belong to evalctl's registry"
                return Requires(Need.admin, why)
        elif fetch and path == "/model-versions/get-artifact":
            return _version_file(args, settings)
        elif fetch and path == "/get-artifact":
            return _run_file(args, settings)
        elif (fetch and path == f"{MLFLOW_API}/artifacts/list") or (
            method == "POST" and path == f"{MLFLOW_API}/upload-artifact"
        ):
            _check_run_folder(method, path, args, body, settings)
        elif path == "/graphql" and _graphql_writes(_json_object(body).get("query")):
            # MLflow reads the JSON body whatever the method, so the body is what counts.
            return Requires(Need.write, "a GraphQL mutation other than MLflow's searches")
    except StorageError as exc:
        return 403, str(exc)
    except NoSuchFile as exc:
        return 404, str(exc)
    except MlflowException as exc:  # answered here: MLflow's own lookup could differ by then
        return exc.get_http_status_code(), exc.message
    except ValueError as exc:
        return 400, str(exc)
    return None


def _query_args(query: bytes) -> dict[str, str]:
    """Return the query's parameters as Flask reads them (werkzeug's parsing; first wins)."""
    import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" error handler)

    pairs = parse_qsl(query.decode(), keep_blank_values=True, errors="werkzeug.url_quote")
    return dict(reversed(pairs))


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


def _sets_evalctl_tags(fields: dict[str, object]) -> bool:
    """Return whether a Model Registry body sets or deletes a tag named `evalctl.*`."""
    tags = fields.get("tags")
    keys = [fields.get("key")]
    if isinstance(tags, list):
        keys += [tag.get("key") for tag in tags if isinstance(tag, dict)]
    return any(
        isinstance(key, str) and key.strip().lower().startswith(EVALCTL_TAG_PREFIX) for key in keys
    )


def _version_file(args: dict[str, str], settings: Settings) -> Download | None:
    """Return the model version file to stream, as MLflow's get-artifact handler finds it."""
    from mlflow.server import handlers

    if "path" not in args or not args.get("name") or not args.get("version"):
        return None  # MLflow answers 400
    store = handlers._get_model_registry_store()
    uri = store.get_model_version_download_uri(args["name"], args["version"])
    if is_local(uri):
        return _download(uri, _safe_path(args["path"]), settings, what="model version source")
    if not uri.startswith("mlflow-artifacts:"):
        confine_checkpoint(uri, settings, what="model version source")
    return None


def _run_file(args: dict[str, str], settings: Settings) -> Download | None:
    """Return a run's local artifact to stream (MLflow's get-artifact handler's lookup)."""
    run = _run(args.get("run_id"), args.get("run_uuid"))  # MLflow: run_id or run_uuid
    if run is None or "path" not in args:
        return None
    uri = run.info.artifact_uri
    if not is_local(uri):
        return None  # mlflow-artifacts:/ is served from the artifact root by MLflow
    confine_artifact_location(uri, settings)  # runs of experiments made before the check
    return _download(uri, _safe_path(args["path"]), settings, what="run artifact folder")


def _check_run_folder(
    method: str, path: str, args: dict[str, str], body: bytes, settings: Settings
) -> None:
    """Refuse listing or uploading a run's artifacts when its folder is out of bounds."""
    if path == f"{MLFLOW_API}/upload-artifact":  # MLflow's upload handler reads run_uuid only
        run, relative = _run(args.get("run_uuid"), args.get("run_id")), args.get("path")
    else:  # MLflow's _list_artifacts: the query string if there is one, else the JSON body
        fields: dict[str, object] = dict(args) if method == "GET" and args else _json_object(body)
        run_id = _text(fields, "run_id", "runId")
        run = _run(run_id, _text(fields, "run_uuid", "runUuid"))
        relative = _text(fields, "path", "path")
    if run is None:
        return
    uri = run.info.artifact_uri
    if is_local(uri):
        confine_artifact_location(uri, settings)  # runs of experiments made before the check
        confine_served_file(uri, _safe_path(relative) if relative else ".", settings)


def _run(first: str | None, second: str | None) -> Any:
    """Return the run MLflow picks (`first or second`); None when no run is named."""
    from mlflow.server import handlers

    if first and second and first != second:
        raise ValueError("request names two runs (run_id and run_uuid differ): send one")
    run_id = first or second
    return handlers._get_tracking_store().get_run(run_id) if run_id else None


def _text(fields: dict[str, object], name: str, json_name: str) -> str | None:
    """Return a string field of a request under its proto or JSON name (MLflow takes both)."""
    value = fields.get(name, fields.get(json_name))
    if value is not None and not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string")
    return value


def _safe_path(path: str) -> str:
    """Return an artifact path as MLflow's `validate_path_is_safe` decodes it (or raise)."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.uri import validate_path_is_safe

    try:
        return str(validate_path_is_safe(path))
    except MlflowException as exc:
        raise ValueError(exc.message) from None


def _download(base: str, relative: str, settings: Settings, *, what: str) -> Download:
    """Open a file under a local folder and return it with MLflow's download headers."""
    from mlflow.server.handlers import _content_disposition_attachment
    from mlflow.utils.mime_type_utils import _guess_mime_type

    name = Path(relative).name
    file = open_served_file(base, relative, settings, what=what)
    headers = [
        ("content-type", _guess_mime_type(name)),
        ("content-length", str(file.size)),
        ("content-disposition", _content_disposition_attachment(name)),
        ("x-content-type-options", "nosniff"),
        ("last-modified", formatdate(file.mtime, usegmt=True)),
        ("cache-control", "no-cache"),
    ]
    return Download(file, headers)


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
