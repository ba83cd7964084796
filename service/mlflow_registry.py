"""MLflow Model Registry bridge: promoted checkpoints as model versions, aliases moved along.

Owns the MLflow side of a promotion: one registered model per experiment (named after
it), one model version per promoted checkpoint (source: the checkpoint folder as a
`file://` URI; linked to the run's MLflow run when it has one; tagged
`evalctl.checkpoint_id` so promoting the same checkpoint again reuses its version, but only
a version whose source is that folder and whose `evalctl.sha256` is the checkpoint's), and
the registered model alias. The registry DB stays the source of truth for aliases; this
module only mirrors them. A checkpoint whose path lies outside the storage roots (or holds
the server's own files) is refused before anything is created or moved, also for rows
recorded before paths were checked (`service.storage`): MLflow serves a version's source to
read tokens. mlflow is imported inside the functions (it is slow to import).
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

from sqlmodel import Session

from service.errors import EvalctlError, NotFoundError
from service.models import CheckpointPublic, RunPublic
from service.settings import Settings, get_settings
from service.storage import confine_checkpoint

CHECKPOINT_TAG = "evalctl.checkpoint_id"
SHA256_TAG = "evalctl.sha256"


def register_promotion(
    *,
    tracking_uri: str,
    experiment: str,
    checkpoint: CheckpointPublic,
    run: RunPublic,
    alias: str,
    settings: Settings | None = None,
) -> int:
    """Point MLflow alias `alias` of model `experiment` at the checkpoint's version; return it."""
    from mlflow.exceptions import MlflowException

    what = f"checkpoint {checkpoint.id} path"
    confine_checkpoint(checkpoint_source(checkpoint), settings or get_settings(), what=what)
    client = _client(tracking_uri)
    try:
        version = checkpoint_version(client, experiment, checkpoint)
        if version is None:
            version = _create_version(client, experiment, checkpoint, run)
        client.set_registered_model_alias(experiment, alias, str(version))
    except MlflowException as exc:
        raise EvalctlError(f"MLflow at {tracking_uri}: {_first_line(exc.message)}") from None
    return version


def mirror_alias_move(
    *, session: Session, settings: Settings, experiment_id: int, name: str, checkpoint_id: int
) -> int:
    """Mirror an alias move in the service's own MLflow registry; return the model version.

    What `PUT /api/v1/aliases/...` does before it records the move, so a remote `evalctl
    promote` moves the server's MLflow alias (checked against the server's storage roots),
    never one in the client's own tracking store.
    """
    from service import crud

    experiment = crud.get_experiment(session=session, experiment_id=experiment_id)
    checkpoint = crud.get_checkpoint(session=session, checkpoint_id=checkpoint_id)
    run = crud.get_run(session=session, run_id=checkpoint.run_id)
    if run.experiment_id != experiment_id:
        raise EvalctlError(
            f"checkpoint {checkpoint_id} does not belong to experiment '{experiment.name}'"
        )
    return register_promotion(
        tracking_uri=settings.tracking_uri,
        experiment=experiment.name,
        checkpoint=CheckpointPublic.model_validate(checkpoint),
        run=RunPublic.model_validate(run),
        alias=name,
        settings=settings,
    )


def restore_mlflow_alias(
    *, session: Session, settings: Settings, experiment_id: int, name: str
) -> None:
    """Point MLflow's alias back where evalctl's registry has it (remove it if unset)."""
    from mlflow.exceptions import MlflowException

    from service import crud

    session.rollback()  # a fresh read: the move being undone may have committed meanwhile
    experiment = crud.get_experiment(session=session, experiment_id=experiment_id)
    try:
        alias = crud.get_alias(session=session, experiment_id=experiment_id, name=name)
    except NotFoundError:
        with suppress(MlflowException):
            _client(settings.tracking_uri).delete_registered_model_alias(experiment.name, name)
        return
    mirror_alias_move(
        session=session,
        settings=settings,
        experiment_id=experiment_id,
        name=name,
        checkpoint_id=alias.checkpoint_id,
    )


def checkpoint_version(client: Any, model: str, checkpoint: CheckpointPublic) -> int | None:
    """Return the version of `model` registered for a checkpoint, or None.

    A version only counts when its source is the checkpoint's folder and its
    `evalctl.sha256` tag (if any) the checkpoint's hash: a tag alone could have been set
    on any version by whoever could write to MLflow.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model)
    except MlflowException:
        return None
    query = f"name = '{_quote(model)}' and tag.`{CHECKPOINT_TAG}` = '{checkpoint.id}'"
    source = checkpoint_source(checkpoint)
    found = [
        int(v.version)
        for v in client.search_model_versions(query)
        if v.source == source and v.tags.get(SHA256_TAG, checkpoint.sha256) == checkpoint.sha256
    ]
    # Two processes may both have created one; the oldest is the one to keep using.
    return min(found, default=None)


def checkpoint_source(checkpoint: CheckpointPublic) -> str:
    """Return the model version source for a checkpoint: its folder as a file:// URI."""
    path = Path(checkpoint.path)
    return path.resolve().as_uri() if path.is_absolute() or path.exists() else checkpoint.path


def _create_version(client: Any, model: str, checkpoint: CheckpointPublic, run: RunPublic) -> int:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model, tags={"evalctl.experiment": model})
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {
        CHECKPOINT_TAG: str(checkpoint.id),
        "evalctl.run_id": str(run.id),
        "evalctl.step": str(checkpoint.step),
        SHA256_TAG: checkpoint.sha256,
    }
    created = client.create_model_version(
        model,
        checkpoint_source(checkpoint),
        run_id=_existing_run_id(client, run.mlflow_run_id),
        tags=tags,
        description=f"evalctl run {run.id} ({run.name}), checkpoint {checkpoint.id} "
        f"at step {checkpoint.step}",
    )
    return int(created.version)


def _existing_run_id(client: Any, run_id: str | None) -> str | None:
    """Return `run_id` if this tracking store has that run (it may live elsewhere)."""
    from mlflow.exceptions import MlflowException

    if run_id is None:
        return None
    try:
        client.get_run(run_id)
    except MlflowException:
        return None
    return run_id


def _client(tracking_uri: str) -> Any:
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "error"
