"""Configuration from the environment (and CLI flags that override it)."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("pdpp-orchestrator", appauthor=False))


class Settings(BaseSettings):
    """Every knob, by its environment variable name."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    temporal_address: str | None = Field(default=None, alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", alias="TEMPORAL_NAMESPACE")
    database_url: str | None = Field(default=None, alias="PDPP_DATABASE_URL")
    task_queue: str = Field(default="pdpp-orchestrator", alias="PDPP_TASK_QUEUE")
    data_dir: Path = Field(default_factory=default_data_dir, alias="PDPP_DATA_DIR")
    connectors: Path | None = Field(default=None, alias="PDPP_CONNECTORS")
    heartbeat_timeout_seconds: float = Field(default=30.0, alias="PDPP_HEARTBEAT_TIMEOUT")
