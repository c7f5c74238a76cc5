"""Which Temporal and PostgreSQL a command talks to, whether they answer, and the web UI's
links to what they hold."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from pdpp_orch.control import UsageError
from pdpp_orch.devstack import Endpoints, alive, read_stack_file
from pdpp_orch.registry import Registry, unknown_connector
from pdpp_orch.settings import Settings
from pdpp_orch.store import Store, ping

# The web UI's list of runs alone (budget workflows are long-lived entities, not runs).
RUNS_QUERY = 'WorkflowType = "ConnectorRunWorkflow"'


@dataclass(frozen=True)
class Stack:
    """The servers a command uses, and how it found them."""

    temporal_address: str
    database_url: str
    ui_url: str | None
    source: str
    ignored: str | None = None
    registries: tuple[Path, ...] = ()

    def describe(self) -> str:
        """`Temporal 127.0.0.1:7233, PostgreSQL postgres@/tmp/x:5432/postgres (the dev stack …)`."""
        return f"Temporal {self.temporal_address}, PostgreSQL {safe_dsn(self.database_url)} ({self.source})"


def safe_dsn(dsn: str) -> str:
    """A database URL without its password."""
    u = urlsplit(dsn)
    host = u.hostname or ""
    if "host=" in u.query:  # a socket directory given as a parameter
        host = u.query.split("host=", 1)[1].split("&", 1)[0]
    port = f":{u.port}" if u.port else ""
    user = f"{u.username}@" if u.username else ""
    return f"{user}{host}{port}{u.path}"


def stack(s: Settings) -> Stack:
    """The environment's servers (Temporal's address from TEMPORAL_ADDRESS or the Temporal
    profile, PDPP_DATABASE_URL), else the dev stack serving from the data directory. A
    `devstack.json` whose process is gone is ignored (and said so)."""
    if s.temporal_address and s.database_url:
        source = "the environment's Temporal and PDPP_DATABASE_URL"
        return Stack(s.temporal_address, s.database_url, None, source)
    ep, ignored = _dev_stack(s)
    address = s.temporal_address or (ep.temporal_address if ep else None)
    database = s.database_url or (ep.database_url if ep else None)
    if not address or not database:
        why = f" ({ignored})" if ignored else ""
        raise UsageError(
            "no Temporal/PostgreSQL to talk to: start `pdpp-orch dev` in another shell, or set "
            f"TEMPORAL_ADDRESS (or a Temporal profile) and PDPP_DATABASE_URL{why}"
        )
    source = f"the dev stack in {s.data_dir}, pid {ep.pid}" if ep else "TEMPORAL_ADDRESS / PDPP_DATABASE_URL"
    served = tuple(Path(p) for p in ep.connectors) if ep else ()
    return Stack(address, database, ep.ui_url if ep else None, source, ignored, served)


def _served_registries(s: Settings) -> tuple[Path, ...]:
    """The registries a live dev stack's workers serve besides the CLI's own."""
    ep, _ = _dev_stack(s)
    return tuple(Path(p) for p in ep.connectors) if ep else ()


def _dev_stack(s: Settings) -> tuple[Endpoints | None, str | None]:
    """The dev stack serving from the data directory, if its process lives; else what was
    ignored, to say."""
    ep = read_stack_file(s.data_dir)
    if ep is not None and not alive(ep):
        return None, f"ignored {s.data_dir / 'devstack.json'}: its `pdpp-orch dev` (pid {ep.pid}) is gone"
    return ep, None


def database_url(s: Settings) -> str:
    """PostgreSQL alone, for a command that needs nothing else (`migrate`, run where no
    Temporal is reachable or named: a deployment's migration job): PDPP_DATABASE_URL, else the
    dev stack's."""
    if s.database_url:
        return s.database_url
    ep, ignored = _dev_stack(s)
    if ep is None:
        why = f" ({ignored})" if ignored else ""
        raise UsageError(
            f"no PostgreSQL to talk to: set PDPP_DATABASE_URL, or start `pdpp-orch dev` in another shell{why}"
        )
    return ep.database_url


def registry(s: Settings, found: Stack | None = None) -> Registry:
    """The registry a command reads: --connectors / PDPP_CONNECTORS (else ./connectors.toml),
    and the registries the dev stack's workers serve besides (the demo's, while `demo --serve`
    serves), so a command acts on every connector that stack can run."""
    reg = Registry.load(s.connectors)
    for extra in found.registries if found else _served_registries(s):
        if extra.exists():
            more = Registry.load(extra)
            reg.entries.update({k: v for k, v in more.entries.items() if k not in reg.entries})
            reg.sources.append(extra)
    return reg


async def known_connector(store: Store, name: str, registry: Callable[[], Registry]) -> None:
    """A UsageError (exit 2, as `run` gives) when `name` is neither held by the store nor
    registered, so a misspelt name never reads as an empty answer. A connector with stored data
    and no entry here (registered elsewhere, or no longer) stays readable: the store is asked
    first, and the registry (read only then) cannot stand in the way of its data."""
    if await store.runs.holds(name):
        return
    reg = registry()
    if name not in reg.entries:
        raise UsageError(unknown_connector(name, reg.entries, await store.runs.connectors()))


def demo_registry(s: Settings) -> Path:
    """Where `pdpp-orch demo` writes the registry of its connectors."""
    return s.data_dir / "demo" / "connectors.toml"


def endpoints(s: Settings) -> tuple[str, str]:
    """Temporal address and database URL of `stack(s)`."""
    found = stack(s)
    return found.temporal_address, found.database_url


def workflows_url(ui: str, query: str, namespace: str = "default") -> str:
    """The web UI's workflow list filtered by a visibility query."""
    return f"{ui}/namespaces/{namespace}/workflows?query={quote(query)}"


def run_url(ui: str, run_id: str, namespace: str = "default") -> str:
    """The web UI's page of one run (its workflow id is the run id)."""
    return f"{ui}/namespaces/{namespace}/workflows/{quote(run_id)}"


@contextlib.asynccontextmanager
async def command_store(database: str) -> AsyncIterator[Store]:
    """A one-connection store for a command."""
    store = await Store.connect(database, max_size=1)
    try:
        yield store
    finally:
        await store.close()


async def health(s: Settings, wait_s: float) -> list[str]:
    """What does not answer within `wait_s` seconds: empty when Temporal and PostgreSQL do."""
    from pdpp_orch.control.connect import connect  # Temporal's SDK: for the commands that talk to it

    address, database = endpoints(s)
    problems = []
    try:
        client = await asyncio.wait_for(connect(address, s.temporal_namespace), wait_s)
        await asyncio.wait_for(client.service_client.check_health(), wait_s)
    except Exception as e:
        problems.append(f"Temporal at {address}: {type(e).__name__}: {e}"[:300])
    try:
        await ping(database, wait_s)
    except Exception as e:
        # Never print the DSN: it may hold a password.
        problems.append(f"PostgreSQL: {type(e).__name__}: {e}"[:300])
    return problems
