"""Waiting for a run's outcome from the client side, whatever comes in between: the outcome
from a Completed, Failed or Canceled workflow, a Temporal server that restarts meanwhile, and a
task queue nobody polls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError, RPCStatusCode

from pdpp_orch.models import RunOutcome
from pdpp_orch.store import Store
from workflows.endings import RUN_FAILED

log = logging.getLogger(__name__)

# An idle worker's last poll can be a minute old; a dead one lingers in the list for ~5 min.
POLLER_STALE = timedelta(seconds=90)
RECONNECT_S = 1.0
# What a lost connection to the server looks like (the server restarting, a network blip).
_TRANSIENT = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED})


class RunEndedWithoutOutcome(Exception):
    """The run's workflow ended without recording an outcome (terminated, or a bug)."""


async def workflow_outcome(handle: Any) -> RunOutcome | None:
    """The outcome of the run's workflow once it has ended: its result, or the outcome in a
    Failed run's failure; None for a Canceled one (its outcome is in the `runs` table)."""
    try:
        outcome: RunOutcome = await handle.result()
        return outcome
    except WorkflowFailureError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError) and cause.type == RUN_FAILED and cause.details:
            return RunOutcome.model_validate(cause.details[0])
        if isinstance(cause, CancelledError):
            return None
        raise RunEndedWithoutOutcome(f"the run's workflow ended without an outcome: {cause or e}") from e


async def until_ended(handle: Any, on_lost: Callable[[str], None] | None = None) -> RunOutcome | None:
    """`workflow_outcome`, waiting through a Temporal server that is down or restarting."""
    lost = False
    while True:
        try:
            return await workflow_outcome(handle)
        except RPCError as e:
            if e.status not in _TRANSIENT:
                raise
            if not lost and on_lost is not None:
                on_lost(f"lost the Temporal server ({e.message}); still waiting for the run")
            lost = True
            await asyncio.sleep(RECONNECT_S)


async def stored_outcome(store: Store, run_id: str, fallback: RunOutcome | None) -> RunOutcome:
    """The outcome as the `runs` table holds it (with the connector's own words), else the
    workflow's."""
    row = await store.runs.get(run_id)
    if row is not None and row.outcome is not None:
        return row.outcome
    if fallback is None:
        raise RunEndedWithoutOutcome(f"run {run_id} ended with no outcome recorded")
    return fallback


async def last_polls(
    client: Client, task_queue: str, kind: TaskQueueType.ValueType = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
) -> list[datetime] | None:
    """When each worker polling `task_queue` for its `kind` of tasks last polled, as far as the
    server remembers (a few minutes); None where the server cannot tell (the time-skipping test
    server)."""
    try:
        r = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind
            )
        )
    except RPCError as e:
        if e.status is RPCStatusCode.UNIMPLEMENTED:
            return None
        raise
    return [p.last_access_time.ToDatetime(UTC) for p in r.pollers]


async def workers_polling(client: Client, task_queue: str) -> bool | None:
    """Whether a worker polled `task_queue` lately; None where the server cannot tell."""
    polls = await last_polls(client, task_queue)
    if polls is None:
        return None
    now = datetime.now(UTC)
    return any(now - t < POLLER_STALE for t in polls)
