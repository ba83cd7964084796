"""Settings: one `Settings` object read from the environment (prefix `EVALCTL_`).

Owns where evalctl keeps its state (`EVALCTL_HOME`, default `./.evalctl`), the registry
database URL, the MLflow tracking URI and the `evalctl serve` options (nested group
`server`, set as `EVALCTL_SERVER__PORT` etc.). It does not open connections; `service.db`
does.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseModel):
    """Options of `evalctl serve` (the registry API); env `EVALCTL_SERVER__<NAME>`."""

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on.")
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
    url: str | None = Field(
        default=None, description="URL of `evalctl serve`; with `token`, record over HTTP."
    )
    token: str | None = Field(default=None, description="API token for `url`.", repr=False)
    retry_seconds: float = Field(
        default=60.0, ge=0, description="How long HTTP calls retry an unreachable service."
    )

    @property
    def home_dir(self) -> Path:
        """Return the absolute state folder, created if missing."""
        home = self.home.expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        return home

    @property
    def db_url(self) -> str:
        """Return the registry database URL (embedded SQLite by default)."""
        return self.database_url or f"sqlite:///{self.home_dir / 'evalctl.db'}"

    @property
    def tracking_uri(self) -> str:
        """Return the MLflow tracking URI (embedded SQLite by default)."""
        return self.mlflow_uri or f"sqlite:///{self.home_dir / 'mlflow.db'}"

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


def get_settings() -> Settings:
    """Return the settings as the environment says now (cheap; tests change the env)."""
    return Settings()
