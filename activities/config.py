"""The registry as activities see it: a connector's entry and manifest, or a ConfigError that
Temporal does not retry (a configuration problem does not heal by itself).

A worker that cannot resolve a connector says which registry it reads and, when the run was
started from another one, that one too. It is an expected condition, not a crash: the error is
benign to the SDK (no traceback in the worker's log) and logged here in one line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from pdpp_orch.manifest import ConfigError, Manifest
from pdpp_orch.models import Resolution, ResolveInput
from pdpp_orch.registry import ConnectorEntry, Registry

RegistryLoader = Callable[[], Registry]
log = logging.getLogger(__name__)


def config_error(e: ConfigError) -> ApplicationError:
    """The non-retryable, benign failure of a configuration problem, logged in one line."""
    if activity.in_activity():
        info = activity.info()
        log.warning("%s of %s: %s", info.activity_type, info.workflow_id, e)
    return ApplicationError(
        str(e), type="ConfigError", non_retryable=True, category=ApplicationErrorCategory.BENIGN
    )


class Unresolved(ConfigError):
    """A connector this worker cannot resolve: the registry it reads (None: one it cannot read,
    which `why` names), and why. Told with the registry first, then the run starter's when that
    is another one, then the cause (its own words can be long, and a run's error is bounded)."""

    def __init__(self, name: str, registry: str | None, why: ConfigError, started_with: str | None):
        self.registry = registry
        self.why = why
        reads = f"it reads {registry}" if registry else "its registry is unreadable"
        other = (
            f"; the run was started with {started_with}" if started_with and started_with != registry else ""
        )
        super().__init__(f"this worker cannot resolve connector {name!r}: {reads}{other}: {why}")


def resolve(
    registry: RegistryLoader, name: str, started_with: str | None = None, streams: Sequence[str] = ()
) -> tuple[ConnectorEntry, Manifest]:
    """The connector's entry and its validated manifest as this worker reads them, with every
    stream asked for, or Unresolved."""
    try:
        reg = registry()
    except ConfigError as e:
        raise Unresolved(name, None, e, started_with) from e
    try:
        entry = reg.get(name)
        manifest = entry.load_manifest()
        for s in streams:
            if manifest.stream(s) is None:
                raise ConfigError(f"connector {name!r} has no stream {s!r} in {entry.manifest}")
    except ConfigError as e:
        raise Unresolved(name, reg.describe(), e, started_with) from e
    return entry, manifest


async def entry_and_manifest(
    registry: RegistryLoader, name: str, started_with: str | None = None, streams: Sequence[str] = ()
) -> tuple[ConnectorEntry, Manifest]:
    """`resolve`, afresh and in a thread: reading files and validating a manifest of thousands
    of streams must not stall the worker's event loop (and every heartbeat on it)."""
    try:
        return await asyncio.to_thread(resolve, registry, name, started_with, streams)
    except ConfigError as e:
        raise config_error(e) from e


class ResolveActivities:
    """Whether this worker can run a connector, asked before a run starts; given the registry."""

    def __init__(self, registry: RegistryLoader):
        self.registry = registry

    @activity.defn
    async def resolve_connector(self, inp: ResolveInput) -> Resolution:
        """What this worker makes of the connector, read as prepare_run reads it."""
        worker = activity.client().identity
        try:
            await asyncio.to_thread(resolve, self.registry, inp.connector, None, inp.streams)
        except Unresolved as e:
            return Resolution(worker=worker, registry=e.registry, problem=str(e.why))
        return Resolution(worker=worker)
