"""Gathering the present (pdpp_orch.present) of a run or a connector: the ledger per hint from
PostgreSQL, what each recovery is doing from Temporal (described; asked, when running and a
worker polls its queue), how recoveries ended as they recorded it, and the runs that came after.
The derivation itself is pure; this is its I/O."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from pdpp_orch.control.waiting import workers_polling
from pdpp_orch.models import Mode, RecoveryState, RunOutcome
from pdpp_orch.present.derive import present
from pdpp_orch.present.model import HintLedger, Present, RecoveryLook, WorkflowState
from pdpp_orch.registry import Registry
from pdpp_orch.store import Store
from workflows import ids
from workflows.recovery import GapRecoveryWorkflow

# A query waits for a worker; a present that cannot ask says so instead of hanging.
QUERY_TIMEOUT = timedelta(seconds=5)
_STATES = {
    WorkflowExecutionStatus.RUNNING: WorkflowState.RUNNING,
    WorkflowExecutionStatus.COMPLETED: WorkflowState.COMPLETED,
    WorkflowExecutionStatus.CANCELED: WorkflowState.CANCELLED,
    WorkflowExecutionStatus.FAILED: WorkflowState.FAILED,
    WorkflowExecutionStatus.TERMINATED: WorkflowState.TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT: WorkflowState.TIMED_OUT,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: WorkflowState.RUNNING,
}


async def _ask(client: Client, wid: str, task_queue: str) -> tuple[RecoveryState | None, str | None]:
    """What a running recovery says it is doing, or why it could not say (its task queue)."""
    handle = client.get_workflow_handle_for(GapRecoveryWorkflow.run, wid)
    try:
        if await workers_polling(client, task_queue) is False:
            return None, task_queue
        state: RecoveryState = await handle.query(GapRecoveryWorkflow.state, rpc_timeout=QUERY_TIMEOUT)
        return state, None
    except RPCError:
        return None, task_queue


async def look(client: Client | None, wid: str) -> RecoveryLook:
    """One recovery as Temporal sees it now (None: Temporal could not be reached)."""
    if client is None:
        return RecoveryLook(workflow_id=wid, state=WorkflowState.UNREACHABLE)
    try:
        desc = await client.get_workflow_handle(wid).describe()
    except RPCError as e:
        gone = e.status is RPCStatusCode.NOT_FOUND
        return RecoveryLook(
            workflow_id=wid, state=WorkflowState.ABSENT if gone else WorkflowState.UNREACHABLE
        )
    state = _STATES.get(desc.status, WorkflowState.UNREACHABLE) if desc.status else WorkflowState.UNREACHABLE
    if state is not WorkflowState.RUNNING:
        return RecoveryLook(workflow_id=wid, state=state)
    live, no_worker = await _ask(client, wid, desc.task_queue)
    return RecoveryLook(workflow_id=wid, state=state, live=live, no_worker=no_worker)


async def looks(
    store: Store, client: Client | None, connector: str, hints: list[HintLedger]
) -> dict[str, RecoveryLook]:
    """Every hint's recovery with its recorded end; Temporal is asked only where gaps are open."""
    wids = {h.hint_id: ids.recovery_workflow_id(h.hint_id) for h in hints}
    ends = await store.recoveries.ends(connector, list(wids.values()))
    asked = [h.hint_id for h in hints if h.open]
    found = await asyncio.gather(*(look(client, wids[hint_id]) for hint_id in asked))
    out = {
        hint_id: RecoveryLook(workflow_id=wid, state=WorkflowState.UNASKED) for hint_id, wid in wids.items()
    }
    out.update(zip(asked, found, strict=True))
    for lk in out.values():
        lk.ended = ends.get(lk.workflow_id)
    return out


def _own_hints(o: RunOutcome) -> list[str]:
    own = [h.hint_id for h in o.retry_hints]
    if o.mode is Mode.RECOVERY:
        hint = ids.recovery_run_hint(o.connector, o.run_id)
        own += [hint] if hint else []
    return own


async def run_present(
    store: Store, client: Client | None, o: RunOutcome, started: datetime, now: datetime, runnable: str = ""
) -> Present:
    """What became of run `o` (started at `started`, the `runs` row's time): its hints, the gaps
    of its streams open now or open at its end and settled since, the forward runs after it."""
    streams = [s.stream for s in o.streams]
    hints = await store.present.hints(o.connector, _own_hints(o), streams, started, o.finished_at)
    return present(
        o.connector,
        hints,
        await looks(store, client, o.connector, hints),
        await store.present.open_gaps(o.connector),
        await store.present.unplanned(o.connector),
        now,
        later=await store.present.later_runs(o.connector, o.run_id),
        outcome=o,
        runnable=runnable,
    )


async def connector_present(
    store: Store,
    client: Client | None,
    connector: str,
    since: datetime | None,
    now: datetime,
    runnable: str = "",
) -> Present:
    """Where `connector` stands now: every hint with gaps open, or settled since `since` (its
    latest forward run's start)."""
    hints = await store.present.hints(connector, [], None, since)
    return present(
        connector,
        hints,
        await looks(store, client, connector, hints),
        await store.present.open_gaps(connector),
        await store.present.unplanned(connector),
        now,
        runnable=runnable,
    )


def runnable(registry: Registry, connector: str, demo_registry: Path | None = None) -> str:
    """ "" when commands that act on `connector` work here (it is in the registry the CLI reads),
    else what to do so they do — said after each such command."""
    if connector in registry.entries:
        return ""
    sources = ", ".join(str(p) for p in registry.sources)
    if (
        demo_registry is not None
        and demo_registry.exists()
        and connector in Registry.load(demo_registry).entries
    ):
        return (
            f" (once {connector} is known: it is one of the demo's connectors, which `pdpp-orch demo --serve`"
            " serves until Ctrl-C)"
        )
    return (
        f" (once {connector} is known: it is not in the registry this command reads: {sources};"
        " --connectors FILE)"
    )
