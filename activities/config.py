"""The registry as activities see it: a connector's entry and manifest, or a ConfigError that
Temporal does not retry (a configuration problem does not heal by itself)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio.exceptions import ApplicationError

from pdpp_orch.manifest import ConfigError, Manifest
from pdpp_orch.registry import ConnectorEntry, Registry

RegistryLoader = Callable[[], Registry]


def config_error(e: ConfigError) -> ApplicationError:
    return ApplicationError(str(e), type="ConfigError", non_retryable=True)


def _load(registry: RegistryLoader, name: str) -> tuple[ConnectorEntry, Manifest]:
    entry = registry().get(name)
    return entry, entry.load_manifest()


async def entry_and_manifest(registry: RegistryLoader, name: str) -> tuple[ConnectorEntry, Manifest]:
    """The connector's registry entry and its validated manifest, read afresh — in a thread:
    reading files and validating a manifest of thousands of streams must not stall the
    worker's event loop (and every heartbeat on it)."""
    try:
        return await asyncio.to_thread(_load, registry, name)
    except ConfigError as e:
        raise config_error(e) from e
