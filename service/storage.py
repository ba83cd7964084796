"""Storage roots: where checkpoints, MLflow artifact locations and model versions may live.

Owns one rule, checked wherever a location reported by a client becomes something the
server reads or writes: a checkpoint path (recorded through the API, promoted), an MLflow
model version source, an experiment's `artifact_location`, a file served for a model
version. A location is allowed when it lies inside a storage root (symlinks and `..`
resolved first, so neither escapes) and does not contain the server's own state files
(admin token, session secret, SQLite databases; so `EVALCTL_HOME` itself is refused).
Roots are `EVALCTL_HOME` plus `storage.roots` (env `EVALCTL_STORAGE__ROOTS`, a JSON list of
absolute paths or URI prefixes such as `s3://bucket/prefix`: a shared volume the runners
write to). MLflow artifact locations are narrower: `mlflow-artifacts:/` (served by the
service) or a folder under `EVALCTL_HOME/mlartifacts`.

Decision on serving promoted checkpoints: model versions keep a plain `file://` (or
object-store) source, so MLflow clients on the server's machine or with access to the
shared volume load them as before; a file the service itself serves from a local folder
(`/mlflow/model-versions/get-artifact`, a run's local artifacts) is opened here, not by
MLflow (`open_served_file`): no symlink at the end, a regular file, and the open file
itself checked to lie in the folder and not to be a protected file (by device and inode,
so a hard link is caught too), so a runner that swaps a file between check and read on a
shared volume gains nothing. This module does no I/O beyond resolving, opening and
stat-ing paths.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from service.errors import EvalctlError
from service.settings import Settings

#: URI schemes that name MLflow's own artifact store (the service's artifact root).
ARTIFACT_SCHEMES = ("mlflow-artifacts", "runs", "models")


class StorageError(EvalctlError):
    """A location lies outside the storage roots (or would expose the server's files)."""


class NoSuchFile(EvalctlError):
    """A file to serve does not exist."""


@dataclass(frozen=True)
class ServedFile:
    """A checked regular file, open read-only; whoever streams it closes `fd`."""

    fd: int
    size: int
    mtime: float


def storage_roots(settings: Settings) -> list[str]:
    """Return the storage roots: EVALCTL_HOME, then the configured extra roots."""
    roots = [str(settings.home_dir)]
    for root in settings.storage.roots:
        if root not in roots:
            roots.append(root)
    return roots


def artifact_root(settings: Settings) -> Path:
    """Return the folder behind `mlflow-artifacts:/` (EVALCTL_HOME/mlartifacts)."""
    return settings.home_dir / "mlartifacts"


def protected_files(settings: Settings) -> list[Path]:
    """Return the server's state files no checkpoint or served file may contain or be."""
    home = settings.home_dir
    files = [settings.admin_token_path, home / "admin-token", home / "session-secret"]
    for url in (settings.db_url, settings.tracking_uri):
        if url.startswith("sqlite:///"):
            db = Path(url.removeprefix("sqlite:///"))
            files += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-journal")]
    return [_real(path) for path in files]


def confine_checkpoint(path: str, settings: Settings, *, what: str = "checkpoint path") -> str:
    """Return `path` resolved (path or URI) if it lies inside a storage root; raise otherwise."""
    roots = storage_roots(settings)
    if _is_remote(path):
        if any(_uri_inside(path, root) for root in roots if _is_remote(root)):
            return path
        raise _outside(what, path, roots)
    local = _local_path(path)
    if local is None:
        raise StorageError(f"{what} '{path}' must be an absolute path inside a storage root")
    real = _real(local)
    if not any(real.is_relative_to(_real(Path(r))) for r in roots if not _is_remote(r)):
        raise _outside(what, path, roots)
    exposed = [f for f in protected_files(settings) if f == real or f.is_relative_to(real)]
    if exposed:
        raise StorageError(
            f"{what} '{path}' contains the server's own files ({exposed[0].name}): "
            "record a checkpoint folder, not a folder above it"
        )
    return str(real)


def confine_model_source(source: str, settings: Settings) -> str:
    """Return an MLflow model version source if it is in the artifact store or the roots."""
    if _artifact_uri(source):
        return source
    return confine_checkpoint(source, settings, what="model version source")


def confine_artifact_location(location: str | None, settings: Settings) -> None:
    """Refuse an MLflow experiment artifact_location outside the server's artifact root."""
    if not location or _artifact_uri(location, schemes=("mlflow-artifacts",)):
        return
    root = _real(artifact_root(settings))
    local = None if _is_remote(location) else _local_path(location)
    if local is not None and _strictly_inside(_real(local), root):
        return
    raise StorageError(
        f"artifact_location '{location}' is outside the server's artifact root "
        f"(leave it unset, or use mlflow-artifacts:/ or a folder under {root})"
    )


def confine_served_file(base: str, relative: str, settings: Settings) -> None:
    """Refuse serving `relative` under a local `base` unless it stays inside it and the roots."""
    folder = Path(confine_checkpoint(base, settings, what="model version source"))
    target = _real(folder / relative)
    if not (target == folder or target.is_relative_to(folder)):
        raise StorageError(f"'{relative}' resolves outside the model version's folder")
    if target in protected_files(settings):
        raise StorageError(f"'{relative}' is one of the server's own files")


def open_served_file(
    base: str, relative: str, settings: Settings, *, what: str = "model version source"
) -> ServedFile:
    """Open `relative` under a local `base` to serve it, checking the file actually opened."""
    folder = Path(confine_checkpoint(base, settings, what=what))
    target = _real(folder / relative)
    if not (target == folder or target.is_relative_to(folder)):
        raise StorageError(f"'{relative}' resolves outside the model version's folder")
    return open_checked(target, folder=folder, settings=settings, shown=relative)


def open_checked(path: Path, *, folder: Path, settings: Settings, shown: str) -> ServedFile:
    """Open resolved `path` read-only if the file opened is regular, in `folder`, not protected.

    The checks run on the open descriptor, so whatever `path` turns into after it was
    resolved (a symlink: refused by O_NOFOLLOW; a folder on the way swapped for a symlink:
    caught by the descriptor's own path; a hard link to the admin token: caught by inode)
    is what is checked and then read.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # NONBLOCK: a FIFO must not hang us
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        raise NoSuchFile(f"No such artifact: '{shown}'") from None
    except OSError as exc:  # ELOOP: it became a symlink after it was resolved
        raise StorageError(f"'{shown}' cannot be served ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ValueError(f"Artifact path refers to a directory, not a file: '{shown}'")
        if not stat.S_ISREG(info.st_mode):
            raise StorageError(f"'{shown}' is not a regular file")
        opened = _real(Path(_fd_path(fd)))
        if not opened.is_relative_to(folder):
            raise StorageError(f"'{shown}' resolves outside the model version's folder")
        if (info.st_dev, info.st_ino) in _protected_inodes(settings):
            raise StorageError(f"'{shown}' is one of the server's own files")
    except BaseException:
        os.close(fd)
        raise
    return ServedFile(fd=fd, size=info.st_size, mtime=info.st_mtime)


def is_local(location: str) -> bool:
    """Return whether a location names a file on this machine (a path or a file:// URI)."""
    return not _is_remote(location) and not _artifact_uri(location)


def _outside(what: str, path: str, roots: list[str]) -> StorageError:
    return StorageError(
        f"{what} '{path}' is outside the storage roots ({', '.join(roots)}); "
        "add its shared volume to EVALCTL_STORAGE__ROOTS on the server"
    )


def _scheme(location: str) -> str:
    scheme = urlparse(location).scheme.lower()
    return "" if len(scheme) <= 1 else scheme  # "c:" is a Windows drive, not a scheme


def _is_remote(location: str) -> bool:
    return _scheme(location) not in ("", "file", *ARTIFACT_SCHEMES)


def _artifact_uri(location: str, schemes: tuple[str, ...] = ARTIFACT_SCHEMES) -> bool:
    """Return whether `location` is a URI into MLflow's own store, with no host and no `..`."""
    parsed = urlparse(location)
    if _scheme(location) not in schemes or parsed.netloc:
        return False
    return ".." not in unquote(parsed.path).split("/")


def _local_path(location: str) -> Path | None:
    """Return the absolute path a plain path or file:// URI names, or None."""
    if _scheme(location) == "file":
        parsed = urlparse(location)
        if parsed.netloc not in ("", "localhost"):
            return None
        location = unquote(parsed.path)
    elif _scheme(location):
        return None
    path = Path(location)
    return path if path.is_absolute() and "\x00" not in location else None


def _uri_inside(uri: str, root: str) -> bool:
    scheme, _, rest = uri.partition("://")
    root_scheme, _, root_rest = root.partition("://")
    if scheme.lower() != root_scheme.lower() or not rest:
        return False
    parts = rest.split("/")
    if any(part in (".", "..") for part in parts[1:]) or "//" in rest:
        return False
    prefix = root_rest.rstrip("/")
    return rest.rstrip("/") == prefix or rest.startswith(prefix + "/")


def _strictly_inside(path: Path, root: Path) -> bool:
    return path != root and path.is_relative_to(root)


def _protected_inodes(settings: Settings) -> set[tuple[int, int]]:
    found = set()
    for path in protected_files(settings):
        try:
            info = os.stat(path)
        except OSError:
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def _fd_path(fd: int) -> str:
    """Return the path of the file open as `fd` (Linux: /proc; macOS: F_GETPATH)."""
    if os.path.isdir("/proc/self/fd"):
        return os.path.realpath(f"/proc/self/fd/{fd}")
    import fcntl

    getpath = getattr(fcntl, "F_GETPATH", None)
    if getpath is None:
        raise StorageError("cannot check which file is open on this platform")
    raw = fcntl.fcntl(fd, getpath, bytes(1024))
    return os.fsdecode(raw.rstrip(b"\0"))


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))
