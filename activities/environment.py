"""A connector's environment: a minimal base, the keys the reference's runtime gives a run, and
what its registry entry declares (secrets resolved at spawn); its persistent home.

The reference composes a connector's environment (its runtime/connector-child-environment.ts)
from a fixed list of the platform's variables, the connection's credentials and its run keys.
Here a connector gets:

- PATH, LANG, TZ (and LC_ALL when the worker has it), and the worker variables its entry passes
  through (`pass_env`): nothing else of the worker's environment (database URLs, cloud
  credentials, other connectors' tokens) reaches it;
- HOME: its own persistent directory (`connector_home`), the same in every run on this worker,
  so what it keeps between runs (a browser profile, `~/.pdpp/...`, a downloaded archive) is
  still there next time, and no other connector sees it;
- the run keys: PDPP_RUN_ID, PDPP_CONNECTOR_ID (the manifest's connector key),
  PDPP_RUN_TRIGGER_KIND (`manual`, `scheduled`, `retry` for a recovery run) and
  PDPP_RUN_AUTOMATION_MODE (`assisted` when someone started it, else `unattended`);
- its entry's `env`, last, with `env:NAME` / `file:/path` references resolved.

Not given, because nothing here serves them (docs/pdpp-compatibility.md, *Environment*): the
reference's resource server and owner token (PDPP_RS_URL, PDPP_OWNER_TOKEN: records go over
stdout), its streaming registration and browser surfaces (PDPP_REFERENCE_BASE_URL,
PDPP_STREAMING_REGISTRATION_TOKEN, PDPP_BROWSER_SURFACE_*), PDPP_CONNECTOR_INSTANCE_ID.
"""

from __future__ import annotations

import os
from pathlib import Path

from pdpp_orch.manifest import ConfigError
from pdpp_orch.models import RunInput, Trigger
from pdpp_orch.registry import SECRET_REF, ConnectorEntry

# The reference's trigger kinds (its runtime/run-automation-policy.ts) for ours.
TRIGGER_KINDS = {Trigger.MANUAL: "manual", Trigger.SCHEDULED: "scheduled", Trigger.RECOVERY: "retry"}


def connector_home(data_dir: Path, connector: str) -> Path:
    """The persistent home of `connector` on a worker whose data directory is `data_dir`: its
    HOME in every run. The one place that says where it is (the sandbox mounts it)."""
    return data_dir / "connectors" / connector / "home"


def ensure_home(data_dir: Path, connector: str) -> Path:
    """`connector_home`, created (for the connector's user only) if it is not there yet."""
    home = connector_home(data_dir, connector)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


def run_keys(run: RunInput, connector_id: str) -> dict[str, str]:
    """The keys the reference's runtime gives a run of a connector, for this run."""
    return {
        "PDPP_RUN_ID": run.run_id,
        "PDPP_CONNECTOR_ID": connector_id,
        "PDPP_RUN_TRIGGER_KIND": TRIGGER_KINDS[run.trigger],
        "PDPP_RUN_AUTOMATION_MODE": "assisted" if run.trigger is Trigger.MANUAL else "unattended",
    }


def connector_env(entry: ConnectorEntry, home: Path, run: RunInput, connector_id: str) -> dict[str, str]:
    """The environment a connector runs with (see the module's docstring). A reference that
    cannot be resolved is a ConfigError naming the connector and the variable, never a value."""
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
    env.update(run_keys(run, connector_id))
    for key, value in entry.env.items():
        env[key] = resolve(entry.name, key, value)
    return env


def resolve(connector: str, key: str, value: str) -> str:
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
