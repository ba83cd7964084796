"""Storage roots: checkpoint paths, model version sources and artifact locations confined."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.settings import Settings, StorageSettings
from service.storage import (
    NoSuchFile,
    StorageError,
    confine_artifact_location,
    confine_checkpoint,
    confine_model_source,
    confine_served_file,
    open_checked,
    open_served_file,
    storage_roots,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    (home / "runs" / "1" / "ckpt").mkdir(parents=True)
    (home / "admin-token").write_text("secret")
    roots = [str(tmp_path / "volume"), "s3://models/team"]
    return Settings(home=home, storage=StorageSettings(roots=roots))


def test_paths_inside_a_root_are_accepted(settings: Settings, tmp_path: Path) -> None:
    home = settings.home_dir
    assert storage_roots(settings) == [str(home), str(tmp_path / "volume"), "s3://models/team"]
    assert confine_checkpoint(str(home / "runs/1/ckpt"), settings) == str(home / "runs/1/ckpt")
    assert confine_checkpoint((home / "runs/1/ckpt").as_uri(), settings)
    assert confine_checkpoint(str(tmp_path / "volume/run-7/checkpoint-10"), settings)
    assert confine_checkpoint("s3://models/team/run-7/checkpoint-10", settings)
    assert confine_checkpoint(str(tmp_path / "volume"), settings)  # a root itself
    assert confine_checkpoint("s3://models/team/", settings)
    assert confine_model_source("mlflow-artifacts:/1/abc/artifacts/model", settings)
    assert confine_model_source("runs:/abc/model", settings)


@pytest.mark.parametrize(
    "bad",
    [
        "{home}",  # the defect-1 attack: the server's own state folder
        "{home}/runs/..",
        "{home}/runs/1/ckpt/../../..",
        "{home}/admin-token",
        "/etc",
        "file:///etc",
        "file://other-host{home}/runs/1/ckpt",
        "relative/ckpt",
        "{tmp}/volume-2/x",  # a sibling that shares the prefix
        "{home}/runs/escape",  # a symlink out of the root
        "s3://models/teammate/x",
        "s3://models/team/../other/x",
        "s3://other/team/x",
        "http://127.0.0.1:8080/mlflow",
    ],
)
def test_paths_outside_the_roots_are_refused(settings: Settings, tmp_path: Path, bad: str) -> None:
    home = settings.home_dir
    (home / "runs" / "escape").symlink_to("/etc")
    path = bad.format(home=home, tmp=tmp_path)
    with pytest.raises(StorageError) as refused:
        confine_checkpoint(path, settings)
    message = str(refused.value)
    assert path in message and "\n" not in message
    if "is outside the storage roots" in message:
        assert str(home) in message and "EVALCTL_STORAGE__ROOTS" in message


def test_model_sources_with_hosts_or_dotdot_are_refused(settings: Settings) -> None:
    for source in ("mlflow-artifacts://evil:9/x", "runs:/abc/../../x", "s3://elsewhere/x"):
        with pytest.raises(StorageError):
            confine_model_source(source, settings)


def test_artifact_locations_stay_in_the_artifact_root(settings: Settings) -> None:
    artifacts = settings.home_dir / "mlartifacts"
    for good in (None, "", "mlflow-artifacts:/", "mlflow-artifacts:/team", str(artifacts / "x")):
        confine_artifact_location(good, settings)
    for bad in (
        "file:///etc",
        "/etc",
        str(settings.home_dir / "runs"),
        str(artifacts / ".." / "x"),
        "mlflow-artifacts:/../x",
        "mlflow-artifacts://evil:9/x",
        "s3://models/team/x",
    ):
        with pytest.raises(StorageError, match="outside the server's artifact root"):
            confine_artifact_location(bad, settings)


def test_served_files_stay_in_the_folder(settings: Settings) -> None:
    folder = settings.home_dir / "runs" / "1" / "ckpt"
    (folder / "model.safetensors").write_bytes(b"w")
    (folder / "leak").symlink_to(settings.home_dir / "admin-token")
    confine_served_file(str(folder), "model.safetensors", settings)
    for bad in ("leak", "../../../admin-token", "../../../evalctl.db"):
        with pytest.raises(StorageError):
            confine_served_file(str(folder), bad, settings)


def test_served_files_are_checked_on_the_file_opened(settings: Settings) -> None:
    home = settings.home_dir
    folder = home / "runs" / "1" / "ckpt"
    (folder / "model.safetensors").write_bytes(b"weights")
    served = open_served_file(str(folder), "model.safetensors", settings)
    try:
        assert os.read(served.fd, 100) == b"weights" and served.size == 7
    finally:
        os.close(served.fd)
    os.link(home / "admin-token", folder / "tokenizer.json")  # passes every path check
    confine_served_file(str(folder), "tokenizer.json", settings)
    with pytest.raises(StorageError, match="server's own files"):
        open_served_file(str(folder), "tokenizer.json", settings)
    os.mkfifo(folder / "pipe")  # opening it must not wait for a writer
    with pytest.raises(StorageError, match="not a regular file"):
        open_served_file(str(folder), "pipe", settings)
    with pytest.raises(ValueError, match="directory"):
        open_served_file(str(folder), ".", settings)
    with pytest.raises(NoSuchFile):
        open_served_file(str(folder), "missing.bin", settings)


def test_a_file_swapped_after_it_was_resolved_is_refused(settings: Settings) -> None:
    home = settings.home_dir
    folder = home / "runs" / "1" / "ckpt"
    (folder / "sub").mkdir()
    (folder / "sub" / "weights.bin").write_text("mine")
    other = home / "runs" / "2"  # another run's folder: no protected file, only elsewhere
    other.mkdir(parents=True)
    (other / "weights.bin").write_text("theirs")
    resolved = [folder / "model.bin", folder / "sub" / "weights.bin"]  # what the check saw
    # Then a runner on the shared volume swaps the file, or a folder on its way, for a link.
    (folder / "model.bin").symlink_to(home / "admin-token")
    (folder / "sub").rename(folder / "old-sub")
    (folder / "sub").symlink_to(other)
    for path in resolved:
        with pytest.raises(StorageError, match=r"symbolic link|outside the model version"):
            open_checked(path, folder=folder, settings=settings, shown=path.name)
