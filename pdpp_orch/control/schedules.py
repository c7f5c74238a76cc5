"""Recurring syncs on Temporal Schedules: one schedule per connector (id `sync-<NAME>`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from pdpp_orch.budget import format_window, parse_window
from pdpp_orch.control import UsageError
from pdpp_orch.models import RunInput, StreamScope, Trigger
from workflows import ui
from workflows.connector_run import ConnectorRunWorkflow
from workflows.ids import schedule_id

T = TypeVar("T")

OVERLAP = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
}


def spec(every: str | None, cron: str | None, jitter: str | None) -> ScheduleSpec:
    """`--every 6h` or `--cron "0 */6 * * *"` (exactly one), with an optional `--jitter 5m`."""
    if (every is None) == (cron is None):
        raise ValueError("give exactly one of --every and --cron")
    return ScheduleSpec(
        intervals=[ScheduleIntervalSpec(every=timedelta(seconds=parse_window(every)))] if every else [],
        cron_expressions=[cron] if cron else [],
        jitter=timedelta(seconds=parse_window(jitter)) if jitter else None,
    )


def build(
    connector: str,
    task_queue: str,
    schedule_spec: ScheduleSpec,
    streams: list[str],
    overlap: str,
    paused: bool,
    heartbeat_timeout_seconds: float,
    registry: str | None = None,
) -> Schedule:
    """A schedule that starts ConnectorRunWorkflow with `trigger: scheduled` (`registry`: the
    one its creator read, which a worker reading another one names)."""
    inp = RunInput(
        connector=connector,
        trigger=Trigger.SCHEDULED,
        streams=[StreamScope(name=s) for s in streams],
        heartbeat_timeout_seconds=heartbeat_timeout_seconds,
        registry=registry,
    )
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ConnectorRunWorkflow.run,
            inp,
            id=schedule_id(connector),
            task_queue=task_queue,
            static_summary=ui.run_summary(inp),
            typed_search_attributes=ui.start_attributes(inp),
        ),
        spec=schedule_spec,
        policy=SchedulePolicy(overlap=OVERLAP[overlap]),
        state=ScheduleState(paused=paused, note="created by pdpp-orch"),
    )


async def update(
    client: Client,
    connector: str,
    schedule_spec: ScheduleSpec | None,
    overlap: str | None,
) -> None:
    """Change the timing or overlap policy of an existing schedule, keeping everything else.

    The input of the runs it starts is decoded and written again, so it ends up encrypted under
    the keyring's first key: after a key rotation this is what moves a schedule off the old key
    (a plain update would carry the stored, still encrypted input over as it is)."""

    async def change(current: ScheduleUpdateInput) -> ScheduleUpdate:
        s = current.description.schedule
        if schedule_spec is not None:
            s.spec = schedule_spec
        if overlap is not None:
            s.policy.overlap = OVERLAP[overlap]
        action = s.action
        if isinstance(action, ScheduleActionStartWorkflow) and action.args:
            stored = [a for a in action.args if isinstance(a, Payload)]
            if len(stored) == len(action.args):
                action.args = await client.data_converter.decode(stored, [RunInput])
        return ScheduleUpdate(schedule=s)

    await client.get_schedule_handle(schedule_id(connector)).update(change)


def _field(ranges: Sequence[ScheduleRange], low: int, high: int) -> str:
    parts = []
    for r in ranges:
        end = max(r.end, r.start)
        step = f"/{r.step}" if r.step > 1 else ""
        if r.start == low and end == high:
            parts.append("*" + step)
        elif end == r.start:
            parts.append(str(r.start))
        else:
            parts.append(f"{r.start}-{end}{step}")
    return ",".join(parts) or "*"


def _cron(s: ScheduleSpec) -> str | None:
    """The schedule's cron expression: the server stores cron strings as calendar specs, so a
    described schedule gives them back in that form."""
    if s.cron_expressions:
        return s.cron_expressions[0]
    if not s.calendars:
        return None
    c = s.calendars[0]
    return " ".join(
        (
            _field(c.minute, 0, 59),
            _field(c.hour, 0, 23),
            _field(c.day_of_month, 1, 31),
            _field(c.month, 1, 12),
            _field(c.day_of_week, 0, 6),
        )
    )


def summary(d: ScheduleDescription) -> dict[str, Any]:
    """What an operator wants to know of a schedule, as plain data."""
    s = d.schedule
    spec_ = s.spec
    every = [format_window(i.every.total_seconds()) for i in spec_.intervals]
    recent = d.info.recent_actions[-1] if d.info.recent_actions else None
    return {
        "schedule_id": d.id,
        "every": every[0] if every else None,
        "cron": _cron(spec_),
        "jitter": format_window(spec_.jitter.total_seconds()) if spec_.jitter else None,
        "overlap": s.policy.overlap.name.lower(),
        "paused": s.state.paused,
        "note": s.state.note,
        "next_run": d.info.next_action_times[0].isoformat() if d.info.next_action_times else None,
        "runs": d.info.num_actions,
        "skipped_overlaps": d.info.num_actions_skipped_overlap,
        "running": [getattr(a, "workflow_id", "?") for a in d.info.running_actions],
        "last_run": getattr(recent.action, "workflow_id", None) if recent else None,
    }


async def create(client: Client, connector: str, schedule: Schedule) -> str:
    """Create the connector's schedule (made by `build`); returns its id."""
    sid = schedule_id(connector)
    try:
        await client.create_schedule(sid, schedule)
    except ScheduleAlreadyRunningError as e:
        raise UsageError(
            f"connector {connector!r} has a schedule already ({sid}): change it with "
            f"`pdpp-orch schedule update {connector}`, or delete it first"
        ) from e
    except RPCError as e:
        raise UsageError(f"cannot create schedule {sid}: {e.message}") from e
    return sid


async def call(coro: Awaitable[T], connector: str) -> T:
    """A call on the connector's schedule; one that does not exist is a UsageError."""
    try:
        return await coro
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UsageError(f"no schedule for connector {connector!r}") from e
        raise


async def describe(client: Client, connector: str | None) -> list[dict[str, Any]]:
    """The summary of one connector's schedule, or of every `sync-*` schedule."""
    if connector is not None:
        ids = [schedule_id(connector)]
    else:
        ids = sorted([e.id async for e in await client.list_schedules() if e.id.startswith("sync-")])
    rows = []
    for sid in ids:
        desc = await call(client.get_schedule_handle(sid).describe(), sid.removeprefix("sync-"))
        rows.append(summary(desc))
    return rows


ACTIONS = {
    "pause": "Pause a schedule (no runs start until unpaused).",
    "unpause": "Unpause a schedule.",
    "trigger": "Start a scheduled run now (the overlap policy applies).",
    "delete": "Delete a schedule (runs already started go on).",
}


async def act(client: Client, connector: str, action: str) -> None:
    """One of ACTIONS on the connector's schedule."""
    handle = client.get_schedule_handle(schedule_id(connector))
    calls: dict[str, Callable[[], Awaitable[None]]] = {
        "pause": lambda: handle.pause(note="paused by pdpp-orch"),
        "unpause": lambda: handle.unpause(note="unpaused by pdpp-orch"),
        "trigger": lambda: handle.trigger(),
        "delete": lambda: handle.delete(),
    }
    await call(calls[action](), connector)
