"""Starting, finding and cancelling connector runs."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from pdpp_orch.control import UsageError
from pdpp_orch.models import Mode, RunInput, RunOutcome, StreamScope, TimeRange, Trigger
from pdpp_orch.registry import Registry
from workflows import ids, ui
from workflows.connector_run import ConnectorRunWorkflow

RunHandle = WorkflowHandle[ConnectorRunWorkflow, RunOutcome]


def _iso(value: str | None) -> None:
    if value:
        try:
            datetime.fromisoformat(value)
        except ValueError as e:
            raise UsageError(f"not an ISO time: {value!r}") from e


def new_run(
    registry: Registry,
    name: str,
    streams: list[str],
    since: str | None = None,
    until: str | None = None,
    *,
    heartbeat_timeout_seconds: float = 30.0,
    allow_concurrent: bool = False,
    trigger: Trigger = Trigger.MANUAL,
) -> RunInput:
    """A forward run of connector `name`, validated before anything starts: the connector,
    its manifest, the streams asked for and the time range."""
    _iso(since)
    _iso(until)
    manifest = registry.get(name).load_manifest()
    for st in streams:
        if manifest.stream(st) is None:
            known = ", ".join(x.name for x in manifest.streams)
            raise UsageError(f"connector {name!r} has no stream {st!r} (streams: {known})")
    tr = TimeRange(since=since, until=until) if since or until else None
    if tr and not streams:
        streams = [x.name for x in manifest.streams]
    return RunInput(
        connector=name,
        run_id=ids.run_id(name, datetime.now(UTC), secrets.token_hex(3)),
        trigger=trigger,
        mode=Mode.FORWARD,
        streams=[StreamScope(name=st, time_range=tr) for st in streams],
        heartbeat_timeout_seconds=heartbeat_timeout_seconds,
        allow_concurrent=allow_concurrent,
        registry=registry.describe(),
    )


async def start_run(client: Client, task_queue: str, inp: RunInput) -> RunHandle:
    """Start the run's workflow (its id is the run id), labelled as every run is."""
    return await client.start_workflow(
        ConnectorRunWorkflow.run,
        inp,
        id=inp.run_id,
        task_queue=task_queue,
        static_summary=ui.run_summary(inp),
        static_details=ui.run_details(inp),
        search_attributes=ui.start_attributes(inp),
    )


async def running_runs(client: Client, connector: str) -> list[str]:
    """Forward runs of `connector` that are in progress (recoveries run alongside them)."""
    query = (
        f"WorkflowType = 'ConnectorRunWorkflow' AND ExecutionStatus = 'Running' "
        f"AND PdppConnector = '{connector}' AND PdppTrigger != '{Trigger.RECOVERY.value}'"
    )
    return [w.id async for w in client.list_workflows(query)]


async def refuse_concurrent(client: Client, connector: str) -> None:
    """A clear refusal while another forward run of `connector` is in progress."""
    running = await running_runs(client, connector)
    if running:
        raise UsageError(
            f"connector {connector!r} has a run in progress: {', '.join(running)} "
            "(wait for it, cancel it with `pdpp-orch cancel RUN_ID`, or pass --allow-concurrent)"
        )


def run_handle(client: Client, run_id: str) -> RunHandle:
    return client.get_workflow_handle_for(ConnectorRunWorkflow.run, run_id)


async def existing_run(client: Client, run_id: str) -> RunHandle:
    """The handle of a run that exists, or a UsageError."""
    handle = run_handle(client, run_id)
    try:
        await handle.describe()
    except RPCError as e:
        raise UsageError(f"no run {run_id!r}") from e
    return handle


class RunAlreadyEnded(UsageError):
    """A cancel of a run whose workflow had already ended (`status`: Temporal's word for how)."""

    def __init__(self, run_id: str, status: str):
        super().__init__(f"run {run_id} had already ended ({status}): nothing to cancel")
        self.run_id = run_id
        self.status = status


async def cancel_run(client: Client, run_id: str) -> RunHandle:
    """Request the run's cancellation; RunAlreadyEnded if it had ended, a UsageError if there is
    no such run."""
    handle = run_handle(client, run_id)
    try:
        described = await handle.describe()
    except RPCError as e:
        raise UsageError(f"no run {run_id!r}") from e
    status = described.status
    if status is not None and status is not WorkflowExecutionStatus.RUNNING:
        raise RunAlreadyEnded(run_id, status.name.lower())
    try:
        await handle.cancel()
    except RPCError as e:
        if e.status is RPCStatusCode.NOT_FOUND:  # it ended between the two calls
            raise RunAlreadyEnded(run_id, "ended") from e
        raise UsageError(f"cannot cancel {run_id!r}: {e.message}") from e
    return handle
