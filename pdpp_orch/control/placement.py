"""Whether a run waits for a worker of its connector's task queue (`[connectors.NAME]
task_queue`), as Temporal knows it: the run's collect scheduled on that queue and not yet
taken — the first attempt, or a later one after the worker that ran it vanished — and whether
any worker polls the queue. What `watch` and `status` say while a run waits so."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState, TaskQueueType
from temporalio.client import Client
from temporalio.service import RPCError

from pdpp_orch.control.connect import connect
from pdpp_orch.control.waiting import last_polls
from pdpp_orch.times import utc

COLLECT = "collect"


@dataclass(frozen=True)
class WorkerWait:
    """A collect waiting on `task_queue` since `since`; it gives up at `until`."""

    task_queue: str
    since: datetime
    until: datetime | None
    attempt: int
    last_poll: datetime | None  # the last poll of a worker of the queue the server remembers

    def as_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}

    def line(self) -> str:
        """`waits for a worker on task queue 'laptop' since 2026-12-04 12:00 UTC (collect attempt 1): …`.
        A worker that polls the queue takes a task at once, so a task still waiting has none,
        whatever poll the server still remembers."""
        last = f" (one last polled it at {utc(self.last_poll)})" if self.last_poll else ""
        until = (
            f"; without one it fails at {utc(self.until)} (worker_unavailable), nothing lost"
            if self.until
            else ""
        )
        return (
            f"waits for a worker on task queue {self.task_queue!r} since {utc(self.since)}"
            f" (collect attempt {self.attempt}): none has taken it{last}{until}; start one where the"
            f" connector's data is with `PDPP_TASK_QUEUE={self.task_queue} pdpp-orch worker`"
        )


async def worker_wait(client: Client, handle: Any) -> WorkerWait | None:
    """The run's collect waiting for a worker of another queue than the run's own, or None."""
    desc = await handle.describe()
    own = desc.task_queue
    for p in desc.raw_description.pending_activities:
        queue = p.activity_options.task_queue.name
        if (
            p.activity_type.name != COLLECT
            or p.state != PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
            or not queue
            or queue == own
        ):
            continue
        since = p.scheduled_time.ToDatetime(UTC)
        if p.attempt > 1 and p.HasField("last_attempt_complete_time"):
            since = p.last_attempt_complete_time.ToDatetime(UTC)
        timeout = p.activity_options.schedule_to_start_timeout.ToTimedelta()
        last = await _last_poll(client, queue)
        return WorkerWait(queue, since, since + timeout if timeout else None, p.attempt, last)
    return None


async def _last_poll(client: Client, task_queue: str) -> datetime | None:
    """The last poll of `task_queue`'s activities the server remembers (a few minutes)."""
    polls = await last_polls(client, task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    return max(polls, default=None) if polls else None


async def run_worker_wait(address: str, namespace: str, run_id: str, wait_s: float) -> WorkerWait | None:
    """`worker_wait` of run `run_id` for a command that reads the run from PostgreSQL: best
    effort within `wait_s` (None when Temporal does not answer in time)."""
    try:
        async with asyncio.timeout(wait_s):
            client = await connect(address, namespace)
            return await worker_wait(client, client.get_workflow_handle(run_id))
    except (TimeoutError, RuntimeError, RPCError):
        return None
