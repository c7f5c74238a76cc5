"""The worker's side of every connector's sandbox: whether there is one, what it shows, and as
whom the connector runs (DESIGN §14). launch.py makes it."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from activities.environment import connector_data_dir, connector_home
from activities.sandbox.identity import connector_uid, give, writable_by
from activities.sandbox.view import interpreter, program, system, view
from pdpp_orch.manifest import ConfigError
from pdpp_orch.models import SandboxMode
from pdpp_orch.registry import ConnectorEntry
from pdpp_orch.sandbox_config import SANDBOX_ENV, sandbox_switched_off

LAUNCHER = Path(__file__).with_name("launch.py")
# Files the worker's own configuration names: its keys, certificates and passwords.
SECRET_FILE_VARS = (
    "PDPP_ENCRYPTION_KEY_FILE",
    "TEMPORAL_CONFIG_FILE",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "PGPASSFILE",
    "PGSSLKEY",
    "PGSSLCERT",
    "PGSERVICEFILE",
)


def unavailable(connector: str, why: str) -> ConfigError:
    """The refusal of a run whose connector cannot be sandboxed here: what failed, what the
    sandbox needs, and the explicit way out (short: a run's error message keeps 300 characters)."""
    return ConfigError(
        f"sandbox_unavailable: {connector!r} cannot be isolated here ({why[:80]}); needs root or user"
        f" namespaces (docs/security.md), or opt out: sandbox = false in its entry, or {SANDBOX_ENV}=off"
    )


def _database_socket_dir(url: str | None) -> list[Path]:
    """The directory of PostgreSQL's unix socket, when the worker's database URL names one."""
    if not url:
        return []
    parts = urlsplit(url)
    hosts = parse_qs(parts.query).get("host", []) + ([parts.hostname] if parts.hostname else [])
    return [Path(h) for h in hosts if h.startswith("/")]


@dataclass(frozen=True)
class Launch:
    """How one connector process is started in its sandbox: the launcher's spec."""

    mode: SandboxMode
    spec: dict[str, Any]

    def command(self, spec_fd: int, err_fd: int) -> list[str]:
        # -I: no PYTHON* variable of the connector's environment applies; -S: no site, faster.
        return [sys.executable, "-I", "-S", str(LAUNCHER), str(spec_fd), str(err_fd)]


@dataclass(frozen=True)
class Sandbox:
    """What every sandbox of this worker hides, and where connectors keep their data."""

    data_dir: Path
    hidden: tuple[Path, ...] = ()

    @classmethod
    def for_worker(cls, data_dir: Path, database_url: str | None = None) -> Sandbox:
        named = [Path(os.environ[v]) for v in SECRET_FILE_VARS if os.environ.get(v)]
        hidden = [
            data_dir,
            *named,
            *_database_socket_dir(database_url or os.environ.get("PDPP_DATABASE_URL")),
        ]
        return cls(data_dir=data_dir.absolute(), hidden=tuple(p.absolute() for p in hidden))

    @property
    def data_root(self) -> Path:
        """Where each connector's persistent data directory is."""
        return self.data_dir / "connectors"

    def mode(self, entry: ConnectorEntry) -> SandboxMode:
        if not entry.sandbox or sandbox_switched_off():
            return SandboxMode.OFF
        if not sys.platform.startswith("linux"):
            raise unavailable(entry.name, f"{sys.platform} is not Linux")
        return SandboxMode.UID if os.geteuid() == 0 else SandboxMode.USERNS

    def prepare(
        self, entry: ConnectorEntry, secrets: list[Path], workdir: Path, env: dict[str, str], made: bool
    ) -> Launch | None:
        """The sandbox of one connector process in `workdir` (`made`: by us, for it), or None
        when it runs unsandboxed. As root, it gets its uid and what it may write becomes its."""
        mode = self.mode(entry)
        if mode is SandboxMode.OFF:
            return None
        uid: int | None = None
        if mode is SandboxMode.UID:
            home, uid = connector_uid(self.data_root, entry.name)
            if made:
                give(workdir, uid)
            # Its HOME, in its data directory, made by the worker before a uid was known.
            own = connector_home(self.data_dir, entry.name)
            if own.exists() and not writable_by(own, uid):
                give(own, uid)
        else:
            home = connector_data_dir(self.data_root, entry.name)
        granted_rw = [Path(g.path) for g in entry.paths if g.writable]
        for path in granted_rw:
            path.mkdir(parents=True, exist_ok=True)
            if uid is not None and not writable_by(path, uid):
                give(path, uid)
        read_only = [
            *system(),
            *interpreter(),
            *program(entry.command, env.get("PATH", os.defpath), workdir),
            *(Path(g.path) for g in entry.paths if not g.writable),
        ]
        steps = view(read_only, [workdir, home, *granted_rw], [*self.hidden, *secrets])
        spec = {
            "argv": entry.command,
            "cwd": str(workdir),
            "uid": uid,
            "userns": mode is SandboxMode.USERNS,
            "tmp_bytes": entry.limits.tmp_mb << 20,
            "limits": entry.limits.rlimits(),
            "ops": steps,
        }
        return Launch(mode, spec)
