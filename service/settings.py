"""Settings: one `Settings` object read from the environment (prefix `EVALCTL_`).

Owns where evalctl keeps its state (`EVALCTL_HOME`, default `./.evalctl`), the registry
database URL and the MLflow tracking URI. It does not open connections; `service.db` does.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings; every field can be set as `EVALCTL_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="EVALCTL_", extra="ignore")

    home: Path = Field(default=Path(".evalctl"), description="State folder (SQLite, caches).")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the registry; SQLite under home if unset."
    )
    mlflow_uri: str | None = Field(
        default=None, description="MLflow tracking URI; SQLite under home if unset."
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
    def cache_dir(self) -> Path:
        """Return the cache folder for converted models and generations."""
        path = self.home_dir / "cache"
        path.mkdir(parents=True, exist_ok=True)
        return path


def get_settings() -> Settings:
    """Return the settings as the environment says now (cheap; tests change the env)."""
    return Settings()
