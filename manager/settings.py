"""Manager settings: ``FRAMEFARM_*`` environment variables, overridden by CLI flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ManagerSettings(BaseSettings):
    """Process settings; runtime configuration that admins change lives in the database."""

    model_config = SettingsConfigDict(env_prefix="FRAMEFARM_", extra="ignore")

    port: int = Field(8080, ge=1, le=65535, description="TCP port the manager listens on")
    host: str = Field("0.0.0.0", description="address the manager listens on")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="manager processes serving the one port; more than one needs PostgreSQL",
    )
    db: str = Field(
        "framefarm.db",
        description="a file path (SQLite) or a SQLAlchemy URL such as postgresql+psycopg://…",
    )
    storage: Path = Field(Path("framefarm-storage"), description="folder for blobs and outputs")
    log_file: Path | None = Field(None, description="also write logs to this file")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    verbose: bool = Field(False, description="log every request and SQL statement at DEBUG")
    runner_timeout: float = Field(
        30.0, gt=0, description="seconds without a heartbeat before a runner is offline"
    )
    heartbeat_interval: float = Field(5.0, gt=0, description="seconds between runner heartbeats")
    job_types_dir: Path | None = Field(
        None, description="folder of job type modules that add to or override the built-ins"
    )
    max_upload_bytes: int = Field(
        50 * 1024**3, gt=0, description="largest file accepted in one upload, in bytes"
    )
    secret_key: SecretStr | None = Field(
        None,
        description="signs sessions and encrypts OAuth client secrets; "
        "default: a key file created in the storage folder",
    )

    @property
    def database_url(self) -> str:
        return database_url(self.db)


def database_url(db: str) -> str:
    """A SQLAlchemy URL stays as it is; anything else is a path to a SQLite file."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"
