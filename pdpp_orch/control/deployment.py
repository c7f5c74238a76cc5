"""Worker Versioning from the operator's side (`pdpp-orch deployment`): a Worker Deployment's
builds, what each still runs, and where new runs go — the current build, a ramp, a rollback.

Temporal keeps the routing; this module reads it (DescribeWorkerDeployment), counts the open
workflows of each build in visibility (`TemporalWorkerDeploymentVersion`), and changes it with
the same RPCs as `temporal worker deployment set-current-version|set-ramping-version`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field
from temporalio.api.deployment.v1 import WorkerDeploymentInfo
from temporalio.api.enums.v1 import WorkerDeploymentVersionStatus
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode

from pdpp_orch.control import UsageError

RUNS = "ConnectorRunWorkflow"
WORKFLOW_TYPES = (RUNS, "GapRecoveryWorkflow", "ConnectorBudgetWorkflow")
# The open runs of a build listed by name (the rest are counted).
LISTED_RUNS = 10


class BuildStatus(StrEnum):
    """Temporal's status of a deployment version, in its own words."""

    CURRENT = "current"  # takes new runs, and every recovery and budget at its next step
    RAMPING = "ramping"  # takes that percentage of them
    DRAINING = "draining"  # neither, but runs pinned to it are still open
    DRAINED = "drained"  # no run is pinned to it any more: its workers may stop
    INACTIVE = "inactive"  # its workers poll, it has never taken new runs


STATUSES = {
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: BuildStatus.CURRENT,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: BuildStatus.RAMPING,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: BuildStatus.DRAINING,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: BuildStatus.DRAINED,
}


class Build(BaseModel):
    """One build (deployment version) and the workflows open on it."""

    build_id: str
    status: BuildStatus
    created_at: datetime
    last_current_at: datetime | None = None
    last_deactivated_at: datetime | None = None
    open: dict[str, int] = Field(
        default_factory=dict,
        description="open workflows whose last workflow task ran on this build, by type: runs are "
        "pinned to it; recoveries and budgets move to the current build at their next step",
    )
    runs: list[str] = Field(default_factory=list, description=f"up to {LISTED_RUNS} open run ids")


class Deployment(BaseModel):
    """What `pdpp-orch deployment` shows."""

    name: str
    current: str | None = Field(description="the build new runs go to; None: unversioned workers")
    ramping: str | None = None
    ramp_percentage: float = 0.0
    builds: list[Build] = Field(default_factory=list, description="newest first")

    def build(self, build_id: str) -> Build | None:
        return next((b for b in self.builds if b.build_id == build_id), None)


class Change(BaseModel):
    """What a routing command did."""

    current: str | None
    ramping: str | None = None
    ramp_percentage: float = 0.0
    previous_current: str | None = None
    previous_ramping: str | None = None


# A routing command, given a client.
Act = Callable[[Client], Awaitable[Change]]


def _time(ts: Timestamp) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds else None


async def _info(client: Client, name: str) -> WorkerDeploymentInfo:
    try:
        resp = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name)
        )
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UsageError(
                f"no Worker Deployment {name!r} in namespace {client.namespace!r}: no worker with "
                "PDPP_WORKER_BUILD_ID set has polled it (without it, workers are unversioned)"
            ) from e
        raise
    return resp.worker_deployment_info


async def _open_on(client: Client, name: str, build_id: str) -> tuple[dict[str, int], list[str]]:
    """Open workflows on one build, by type, and the ids of its first open runs."""
    on = f'TemporalWorkerDeploymentVersion = "{name}:{build_id}" AND ExecutionStatus = "Running"'
    counts = await asyncio.gather(
        *(client.count_workflows(f'{on} AND WorkflowType = "{t}"') for t in WORKFLOW_TYPES)
    )
    listed = client.list_workflows(f'{on} AND WorkflowType = "{RUNS}"', limit=LISTED_RUNS)
    runs = [wf.id async for wf in listed]
    return {t: c.count for t, c in zip(WORKFLOW_TYPES, counts, strict=True)}, runs


async def describe(client: Client, name: str) -> Deployment:
    """The deployment's routing, and every build of it with what it still runs."""
    info = await _info(client, name)
    routing = info.routing_config
    found = Deployment(
        name=name,
        current=routing.current_deployment_version.build_id or None,
        ramping=routing.ramping_deployment_version.build_id or None,
        ramp_percentage=routing.ramping_version_percentage,
    )
    summaries = sorted(info.version_summaries, key=lambda v: v.create_time.ToNanoseconds(), reverse=True)
    opened = await asyncio.gather(*(_open_on(client, name, v.deployment_version.build_id) for v in summaries))
    for v, (counts, runs) in zip(summaries, opened, strict=True):
        created = _time(v.create_time)
        assert created is not None
        found.builds.append(
            Build(
                build_id=v.deployment_version.build_id,
                status=STATUSES.get(v.status, BuildStatus.INACTIVE),
                created_at=created,
                last_current_at=_time(v.last_current_time),
                last_deactivated_at=_time(v.last_deactivation_time),
                open=counts,
                runs=runs,
            )
        )
    return found


def _refused(e: RPCError, build_id: str) -> UsageError:
    """A routing change the server refused, with what to do about it."""
    hint = ""
    if e.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
        hint = f" (start workers with PDPP_WORKER_BUILD_ID={build_id} first; they must be polling)"
    return UsageError(f"Temporal refused to route to build {build_id!r}: {e.message}{hint}")


async def set_current(client: Client, name: str, build_id: str) -> Change:
    """Make `build_id` current: new runs, and every recovery and budget at its next step, go
    to it; runs pinned to other builds finish where they are."""
    before = await describe(client, name)
    if before.build(build_id) is None:
        raise UsageError(
            f"deployment {name!r} has no build {build_id!r} (builds: "
            f"{', '.join(b.build_id for b in before.builds)}): start its workers first"
        )
    try:
        await client.workflow_service.set_worker_deployment_current_version(
            SetWorkerDeploymentCurrentVersionRequest(
                namespace=client.namespace, deployment_name=name, build_id=build_id, identity=client.identity
            )
        )
    except RPCError as e:
        raise _refused(e, build_id) from e
    # Making the ramping build current ends its ramp.
    ramping = None if before.ramping == build_id else before.ramping
    return Change(
        current=build_id,
        ramping=ramping,
        ramp_percentage=before.ramp_percentage if ramping else 0.0,
        previous_current=before.current,
        previous_ramping=before.ramping,
    )


async def ramp(client: Client, name: str, build_id: str | None, percentage: float) -> Change:
    """Send `percentage` of new runs (and of recoveries and budgets, by workflow id) to
    `build_id`, the rest to the current build; None ends the ramp."""
    if not 0 <= percentage <= 100:
        raise UsageError(f"a ramp is a percentage from 0 to 100, not {percentage:g}")
    before = await describe(client, name)
    if build_id is not None and before.build(build_id) is None:
        raise UsageError(f"deployment {name!r} has no build {build_id!r}: start its workers first")
    if build_id is not None and build_id == before.current:
        raise UsageError(f"build {build_id!r} is already current: it takes every new run")
    try:
        await client.workflow_service.set_worker_deployment_ramping_version(
            SetWorkerDeploymentRampingVersionRequest(
                namespace=client.namespace,
                deployment_name=name,
                build_id=build_id or "",
                percentage=percentage if build_id else 0.0,
                identity=client.identity,
            )
        )
    except RPCError as e:
        raise _refused(e, build_id or "") from e
    return Change(
        current=before.current,
        ramping=build_id,
        ramp_percentage=percentage if build_id else 0.0,
        previous_current=before.current,
        previous_ramping=before.ramping,
    )


def previous_build(d: Deployment) -> str | None:
    """The build that was current before the current one: the one that stopped being current
    (or ramping) last."""
    earlier = [b for b in d.builds if b.build_id != d.current and b.last_current_at is not None]
    earlier.sort(key=lambda b: b.last_deactivated_at or b.last_current_at or b.created_at, reverse=True)
    return earlier[0].build_id if earlier else None


async def _to_unversioned(client: Client, name: str, d: Deployment) -> Change:
    """New runs back to the unversioned workers: what came before the first build made current."""
    try:
        await client.workflow_service.set_worker_deployment_current_version(
            SetWorkerDeploymentCurrentVersionRequest(
                namespace=client.namespace, deployment_name=name, build_id="", identity=client.identity
            )
        )
    except RPCError as e:
        raise UsageError(f"Temporal refused to route to unversioned workers: {e.message}") from e
    return Change(current=None, previous_current=d.current)


async def rollback(client: Client, name: str, to: str | None) -> Change:
    """Undo the last routing change: end a ramp in progress, else make `to` (by default the
    previously current build; the unversioned workers when no other build ever was) current
    again."""
    d = await describe(client, name)
    if d.ramping is not None and to is None:
        return await ramp(client, name, None, 0.0)
    target = to or previous_build(d)
    if target is None and d.current is not None:
        return await _to_unversioned(client, name, d)
    if target is None:
        raise UsageError(f"deployment {name!r} has had no other current build to roll back to")
    if target == d.current:
        raise UsageError(f"build {target!r} is already current")
    change = await set_current(client, name, target)
    if d.ramping is not None and d.ramping != target:
        await ramp(client, name, None, 0.0)
        change.ramping, change.ramp_percentage = None, 0.0
    return change


async def joined(client: Client, version: WorkerDeploymentVersion, wait_s: float) -> Deployment | None:
    """The deployment once `version` is in it (Temporal adds a version moments after its first
    worker polls), or None after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            info = await _info(client, version.deployment_name)
            if any(v.deployment_version.build_id == version.build_id for v in info.version_summaries):
                return await describe(client, version.deployment_name)
        except UsageError:
            pass
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.5)
