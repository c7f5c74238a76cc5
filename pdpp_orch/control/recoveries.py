"""Starting and steering gap recoveries: one GapRecoveryWorkflow per retry hint with open gaps."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from pdpp_orch import policy
from pdpp_orch.control import UsageError
from pdpp_orch.control.resolve import refuse_unknown
from pdpp_orch.models import RecoveryInput, RetryHint
from pdpp_orch.registry import Registry
from pdpp_orch.store import HintGaps, Store
from workflows import ids, ui
from workflows.recovery import GapRecoveryWorkflow

# Who cancelled a recovery, as the recovery records it and every surface says it.
OPERATOR_CANCEL = "an operator (`pdpp-orch recover cancel`)"
QUERY_TIMEOUT = timedelta(seconds=5)


class Recovery(BaseModel):
    """A hint with open gaps and what its recovery workflow is doing."""

    workflow_id: str
    hint: HintGaps
    running: bool
    state: str


async def start_recovery(
    client: Client, task_queue: str, connector: str, hint: RetryHint, found_run_id: str
) -> str:
    """Start the recovery of `hint` (labelled as a run starts it); returns its workflow id."""
    wid = ids.recovery_workflow_id(hint.hint_id)
    await client.start_workflow(
        GapRecoveryWorkflow.run,
        RecoveryInput(connector=connector, hint=hint, found_run_id=found_run_id),
        id=wid,
        task_queue=task_queue,
        static_summary=ui.recovery_summary(connector, hint),
    )
    return wid


async def due_hint(
    store: Store, registry: Registry, connector: str, hint_id: str, *, retryable_only: bool = True
) -> RetryHint | None:
    """The hint that covers the open gaps of `hint_id` now, due at once (None: none open)."""
    group = await store.hints.hint_group(
        connector, hint_id, policy.MAX_NO_PROGRESS, retryable_only=retryable_only
    )
    if group is None:
        return None
    entry = registry.get(connector)
    now = datetime.now(UTC)
    hint = policy.hint_for(
        hint_id, group, entry.retry, entry.budget.cost_per_item, now, policy.MAX_NO_PROGRESS
    )
    hint.not_before = now
    return hint


async def requeue(store: Store, client: Client, registry: Registry, task_queue: str, gap_id: str) -> str:
    """Give a terminal (or stuck) gap a fresh start and a recovery of its own; returns the
    recovery's workflow id. The gap gets a new hint at every requeue, so its recovery runs never
    reuse an earlier one's run ids."""
    hint_id = policy.requeue_hint_id(gap_id, secrets.token_hex(4))
    gap = await store.hints.requeue(gap_id, hint_id)
    if gap is None:
        raise UsageError(f"no gap {gap_id!r}")
    hint = await due_hint(store, registry, gap.connector, hint_id, retryable_only=False)
    assert hint is not None  # the gap was just made pending under this hint
    return await start_recovery(client, task_queue, gap.connector, hint, gap.last_seen_run_id)


async def recoveries(store: Store, client: Client, connector: str, *, ask: bool = True) -> list[Recovery]:
    """The connector's hints with open gaps, each with its recovery's state (with `ask`, the
    phase a running one reports)."""
    out = []
    for h in await store.hints.open_hints(connector):
        wid = ids.recovery_workflow_id(h.hint_id)
        handle = client.get_workflow_handle_for(GapRecoveryWorkflow.run, wid)
        try:
            desc = await handle.describe()
            running = desc.status == WorkflowExecutionStatus.RUNNING
            state = desc.status.name.lower() if desc.status else "unknown"
        except RPCError:
            running, state = False, "not started"
        if running and ask:
            try:
                state = await handle.query(GapRecoveryWorkflow.phase, rpc_timeout=QUERY_TIMEOUT)
            except RPCError:
                state = "running (no worker to ask)"
        out.append(Recovery(workflow_id=wid, hint=h, running=running, state=state))
    return out


async def recover_now(
    store: Store, client: Client, registry: Registry, task_queue: str, connector: str
) -> list[Recovery]:
    """End the waits of the connector's recoveries (the budget still rules), and start again,
    due now, those that ended (cancelled, failed) or never started while their gaps are open —
    refused when the worker would not know the connector (a recovery's first step reads it)."""
    out = []
    found = await recoveries(store, client, connector, ask=False)
    if not all(r.running for r in found):
        await refuse_unknown(client, task_queue, registry, connector)
    for r in found:
        if r.running:
            await client.get_workflow_handle(r.workflow_id).signal(GapRecoveryWorkflow.run_now)
            r.state = "brought forward"
        else:
            hint = await due_hint(store, registry, connector, r.hint.hint_id)
            if hint is not None:
                await start_recovery(client, task_queue, connector, hint, r.hint.run_id)
                r.state = "started"
        out.append(r)
    return out


async def cancel_recoveries(
    store: Store, client: Client, connector: str, reason: str = OPERATOR_CANCEL
) -> list[Recovery]:
    """Cancel the connector's running recoveries, saying who did (the recovery records it, and
    every surface tells it); their gaps stay open."""
    out = []
    for r in await recoveries(store, client, connector, ask=False):
        if r.running:
            await client.get_workflow_handle(r.workflow_id).cancel(reason=reason)
            r.state = "cancel requested"
        out.append(r)
    return out
