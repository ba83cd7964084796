"""Settings: one `Settings` object read from the environment (prefix `EVALCTL_`).

Owns where evalctl keeps its state (`EVALCTL_HOME`, default `./.evalctl`), the registry
database URL, the MLflow tracking URI and the `evalctl serve` options (nested group
`server`, set as `EVALCTL_SERVER__PORT` etc.). It does not open connections; `service.db`
does.
"""

from __future__ import annotations

import functools
import json
import os
import stat
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Host names the dashboard always answers to (besides the bind address).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class ServerSettings(BaseModel):
    """Options of `evalctl serve` (the registry API); env `EVALCTL_SERVER__<NAME>`."""

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on.")
    trusted_hosts: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description="Host names the dashboard answers to (400 otherwise, against DNS "
        "rebinding): a comma-separated or JSON list, '*.example.com' for subdomains, '*' "
        "for any. Default: localhost, 127.0.0.1, [::1] and the bind host; any when bound "
        "to 0.0.0.0 or ::. The API and /mlflow (bearer tokens) are not checked.",
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1, description="Largest request body accepted (413 above)."
    )
    admin_token_file: Path | None = Field(
        default=None, description="Where the first-start admin token goes; home/admin-token."
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs dashboard session cookies; home/session-secret if unset.",
    )
    max_lease_seconds: float = Field(
        default=600.0,
        ge=3,
        description="Longest job lease a runner gets per claim or heartbeat; longer asks "
        "are shortened to it (a dead runner's job is queued again within this time).",
    )

    @field_validator("trusted_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    def dashboard_hosts(self) -> list[str]:
        """Return the Host names the dashboard answers to (`['*']`: any)."""
        if self.trusted_hosts is not None:
            return [host.lower() for host in self.trusted_hosts]
        if self.host in ("0.0.0.0", "::", ""):
            return ["*"]
        bind = f"[{self.host}]" if ":" in self.host else self.host
        return list(dict.fromkeys([*LOOPBACK_HOSTS, bind.lower()]))


class StorageSettings(BaseModel):
    """Where checkpoints may live (`service.storage`); env `EVALCTL_STORAGE__<NAME>`."""

    roots: list[str] = Field(
        default_factory=list,
        description="Storage roots besides EVALCTL_HOME (absolute paths or URI prefixes "
        'such as s3://bucket/prefix); env value a JSON list, e.g. ["/mnt/ckpts"].',
    )


class Settings(BaseSettings):
    """Process-wide settings; every field can be set as `EVALCTL_<NAME>`."""

    model_config = SettingsConfigDict(
        env_prefix="EVALCTL_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(default=Path(".evalctl"), description="State folder (SQLite, caches).")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the registry; SQLite under home if unset."
    )
    mlflow_uri: str | None = Field(
        default=None, description="MLflow tracking URI; SQLite under home if unset."
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    url: str | None = Field(
        default=None, description="URL of `evalctl serve`; with `token`, record over HTTP."
    )
    token: str | None = Field(default=None, description="API token for `url`.", repr=False)
    retry_seconds: float = Field(
        default=60.0, ge=0, description="How long HTTP calls retry an unreachable service."
    )

    @property
    def home_dir(self) -> Path:
        """Return the absolute state folder, created if missing (mode 0700: tokens live there)."""
        home = self.home.expanduser().resolve()
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return home

    @property
    def db_url(self) -> str:
        """Return the registry database URL (embedded SQLite by default).

        `service.db.make_engine` creates (or tightens) a SQLite file 0600 when it opens it.
        """
        return self.database_url or f"sqlite:///{self.home_dir / 'evalctl.db'}"

    @property
    def tracking_uri(self) -> str:
        """Return the MLflow tracking URI (embedded SQLite by default, made 0600 once).

        MLflow opens this file with engines of its own, so it is made private here, the
        one place every caller resolves it; once per process, as this is read per request.
        """
        if self.mlflow_uri:
            return self.mlflow_uri
        return f"sqlite:///{_private_once(str(self.home_dir / 'mlflow.db'))}"

    @property
    def admin_token_path(self) -> Path:
        """Return where `evalctl serve` writes the admin token it creates on first start."""
        configured = self.server.admin_token_file
        return configured.expanduser().resolve() if configured else self.home_dir / "admin-token"

    @property
    def cache_dir(self) -> Path:
        """Return the cache folder for converted models and generations."""
        path = self.home_dir / "cache"
        path.mkdir(parents=True, exist_ok=True)
        return path


def private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 unless it exists; return it.

    For the embedded SQLite files: SQLite gives its -wal, -shm and -journal files the
    mode of the database file, so they are private too. A database that an older evalctl
    created group- or world-readable (and owned by this user) is made 0600 with its
    sidecar files. Any other failure is left for SQLite to report when it opens the file.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        for file in (path, *(path.with_name(path.name + s) for s in SQLITE_SIDECARS)):
            _make_private(file)
    except OSError:
        pass
    return path


@functools.cache
def _private_once(path: str) -> str:
    private_file(Path(path))
    return path


#: The files SQLite keeps beside a database.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def _make_private(path: Path) -> None:
    with suppress(OSError):
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            path.chmod(stat.S_IMODE(info.st_mode) & 0o700)


def get_settings() -> Settings:
    """Return the settings as the environment says now (cheap; tests change the env)."""
    return Settings()
