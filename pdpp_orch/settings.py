"""Configuration from the environment (and CLI flags that override it)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Temporal's SDK (≈0.1 s to import) is loaded when Temporal's configuration is first asked
# for: a command that needs PostgreSQL only (`records`, `migrate`, completion) never loads it.
if TYPE_CHECKING:
    from temporalio.common import WorkerDeploymentVersion
    from temporalio.envconfig import ClientConfigProfile


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("pdpp-orchestrator", appauthor=False))


class TemporalConfigError(Exception):
    """Temporal's environment configuration cannot be read (a bad profile file, an unknown
    profile, a certificate file that is not there)."""


def temporal_profile() -> ClientConfigProfile:
    """Temporal's environment configuration, read as the temporal CLI reads it: the TEMPORAL_*
    variables (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS,
    TEMPORAL_TLS_CLIENT_CERT_PATH, …) over the profile TEMPORAL_PROFILE (default `default`) of
    the file TEMPORAL_CONFIG_FILE (default ~/.config/temporalio/temporal.toml)."""
    from temporalio.envconfig import ClientConfigProfile

    try:
        return ClientConfigProfile.load()
    except RuntimeError as e:
        raise TemporalConfigError(f"Temporal's environment configuration: {e}") from e


class Settings(BaseSettings):
    """Every knob, by its environment variable name. Temporal's address and namespace come from
    Temporal's own environment configuration (`temporal_profile`): the variable, else the
    profile file, read when first asked for."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    temporal_address_set: str | None = Field(default=None, alias="TEMPORAL_ADDRESS")
    temporal_namespace_set: str | None = Field(default=None, alias="TEMPORAL_NAMESPACE")
    database_url: str | None = Field(default=None, alias="PDPP_DATABASE_URL")
    task_queue: str = Field(default="pdpp-orchestrator", alias="PDPP_TASK_QUEUE")
    data_dir: Path = Field(default_factory=default_data_dir, alias="PDPP_DATA_DIR")
    connectors: Path | None = Field(default=None, alias="PDPP_CONNECTORS")
    heartbeat_timeout_seconds: float = Field(default=30.0, alias="PDPP_HEARTBEAT_TIMEOUT")
    # Worker Versioning (docs/operations.md, "Upgrades"): with a build id the worker joins the
    # deployment as that version; without one it is unversioned.
    worker_build_id: str | None = Field(default=None, alias="PDPP_WORKER_BUILD_ID")
    worker_deployment: str = Field(default="pdpp-orchestrator", alias="PDPP_WORKER_DEPLOYMENT")

    @field_validator("worker_build_id")
    @classmethod
    def _build_id(cls, v: str | None) -> str | None:
        v = (v or "").strip()
        if v and (len(v) > 255 or not v.isprintable()):
            raise ValueError("at most 255 printable characters")
        return v or None

    @field_validator("worker_deployment")
    @classmethod
    def _deployment(cls, v: str) -> str:
        # Temporal writes a version as DEPLOYMENT.BUILD: the name cannot hold a dot.
        if not v or "." in v or not v.isprintable():
            raise ValueError(f"{v!r} is not a name without a dot")
        return v

    @cached_property
    def temporal_address(self) -> str | None:
        """TEMPORAL_ADDRESS (set empty: none), else the Temporal profile's."""
        if self.temporal_address_set is not None:
            return self.temporal_address_set
        return temporal_profile().address

    @cached_property
    def temporal_namespace(self) -> str:
        """TEMPORAL_NAMESPACE, else the Temporal profile's, else `default`."""
        if self.temporal_namespace_set is not None:
            return self.temporal_namespace_set
        return temporal_profile().namespace or "default"

    def worker_version(self) -> WorkerDeploymentVersion | None:
        """The deployment version a worker joins, or None: an unversioned worker."""
        from temporalio.common import WorkerDeploymentVersion

        if self.worker_build_id is None:
            return None
        return WorkerDeploymentVersion(self.worker_deployment, self.worker_build_id)
