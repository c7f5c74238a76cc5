"""What the registry says of a connector's sandbox (activities/sandbox builds it): the paths
its entry grants, its resource limits, and whether it runs sandboxed at all."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field, field_validator

MB = 1 << 20
# The operator's switch for every connector of a worker: PDPP_SANDBOX=off runs them unsandboxed.
SANDBOX_ENV = "PDPP_SANDBOX"
OFF_VALUES = frozenset({"off", "0", "false", "no"})


class GrantedPath(BaseModel):
    """One `paths` item: a path the connector may see, read-only unless `writable`. A
    relative path is relative to the registry file; `~` is the worker's home."""

    path: str
    writable: bool = False

    model_config = {"extra": "forbid"}

    @field_validator("path")
    @classmethod
    def _a_path(cls, v: str) -> str:
        if not v or "\x00" in v:
            raise ValueError("a path is not empty and has no NUL")
        return v


class Limits(BaseModel):
    """`[connectors.NAME.limits]`: what each of the connector's processes may use."""

    memory_mb: int = Field(
        default=2048, gt=0, strict=True, description="data memory per process (RLIMIT_DATA)"
    )
    processes: int = Field(
        default=256, gt=0, strict=True, description="processes and threads of its uid (RLIMIT_NPROC)"
    )
    file_size_mb: int = Field(
        default=4096, gt=0, strict=True, description="largest file it may write (RLIMIT_FSIZE)"
    )
    cpu_seconds: int = Field(
        default=6 * 3600, gt=0, strict=True, description="CPU time per process (RLIMIT_CPU)"
    )
    tmp_mb: int = Field(default=256, gt=0, strict=True, description="its private /tmp and /dev/shm (memory)")

    model_config = {"extra": "forbid"}

    def rlimits(self) -> dict[str, int]:
        """The limits as the sandbox's launcher sets them (soft = hard; no core dumps, which
        would hold the connector's secrets)."""
        return {
            "RLIMIT_DATA": self.memory_mb * MB,
            "RLIMIT_NPROC": self.processes,
            "RLIMIT_FSIZE": self.file_size_mb * MB,
            "RLIMIT_CPU": self.cpu_seconds,
            "RLIMIT_CORE": 0,
        }


def sandbox_switched_off(environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    """Whether the operator opted every connector of this worker out (PDPP_SANDBOX=off)."""
    env = os.environ if environ is None else environ
    return env.get(SANDBOX_ENV, "").strip().lower() in OFF_VALUES
