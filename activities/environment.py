"""A connector's environment: only what its registry entry declares, secrets resolved at spawn."""

from __future__ import annotations

import os
from pathlib import Path

from pdpp_orch.manifest import ConfigError
from pdpp_orch.registry import SECRET_REF, ConnectorEntry


def connector_env(entry: ConnectorEntry, home: Path) -> dict[str, str]:
    """The environment a connector runs with: a minimal base, the worker variables its entry
    passes through, then its own `env` with `env:NAME` / `file:/path` references resolved.

    Nothing else of the worker's environment (database URLs, cloud credentials, other
    connectors' tokens) reaches a connector. A reference that cannot be resolved is a
    ConfigError naming the connector and the variable, never a value."""
    worker = os.environ
    env = {
        "PATH": worker.get("PATH") or os.defpath,
        "HOME": str(home),
        "LANG": worker.get("LANG") or "C.UTF-8",
        "TZ": worker.get("TZ") or "UTC",
    }
    if worker.get("LC_ALL"):
        env["LC_ALL"] = worker["LC_ALL"]
    for name in entry.pass_env:
        if name in worker:
            env[name] = worker[name]
    for key, value in entry.env.items():
        env[key] = _resolve(entry.name, key, value)
    return env


def _resolve(connector: str, key: str, value: str) -> str:
    ref = SECRET_REF.match(value)
    if ref is None:
        return value
    kind, target = ref.group(1), ref.group(2)
    where = f"connector {connector!r}: env {key}"
    if kind == "env":
        if target not in os.environ:
            raise ConfigError(f"{where}: the worker's environment has no {target}")
        return os.environ[target]
    try:
        text = Path(target).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise ConfigError(f"{where}: secret file {target} cannot be read ({reason})") from None
    # Secret files are usually written with a trailing newline that is not part of the secret.
    return text.removesuffix("\n").removesuffix("\r")


def connector_data_dir(data_root: Path, connector: str) -> Path:
    """The connector's persistent data directory (kept from run to run), created if missing:
    `data_root/NAME`, readable by its owner only. A sandboxed connector sees it, writable, at
    the same path."""
    data_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_root / connector
    path.mkdir(exist_ok=True, mode=0o700)
    return path
