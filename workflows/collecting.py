"""The collect step of a run: where it runs and what a lost worker may cost it.

Placement: a connector whose data lives on one machine names a task queue
(`[connectors.NAME] task_queue`); its collect activity, the only one that spawns it or touches
its files, is scheduled there, with the connector's placement timeout as the activity's
schedule-to-start timeout (which Temporal does not retry): no worker of that queue in time ends
collection with `worker_unavailable`. Every other activity, and the workflow, runs anywhere.

A lost worker: a host that vanishes leaves its open polls on the Temporal server until the
server notices (a minute or more), and each may swallow an activity task, which then times out
on its heartbeat. Those attempts are not the connector failing: when a collect has spent all
its attempts so, it runs again with fresh ones (at most LOST_WORKER_ROUNDS times).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from pdpp_orch.models import CollectFacts, PlacementWait, PreparedRun, RunError, RunInput
    from pdpp_orch.outcome import WORKER_UNAVAILABLE
    from workflows.options import COLLECT_GRACE, COLLECT_RETRY
    from workflows.patches import LOST_WORKER, PLACEMENT

LOST_WORKER_ROUNDS = 3


def placement(prepared: PreparedRun, now: datetime) -> PlacementWait | None:
    """Where the connector must run, if it must run somewhere: its queue, and until when a run
    waits for a worker of it."""
    if prepared.task_queue is None or not workflow.patched(PLACEMENT):
        return None
    until = now + timedelta(seconds=prepared.placement_timeout_seconds)
    return PlacementWait(task_queue=prepared.task_queue, since=now, until=until)


async def collect(inp: RunInput, where: PlacementWait | None) -> CollectFacts:
    """The collect activity's facts (raises what ended it otherwise)."""
    rounds = 0
    while True:
        try:
            facts: CollectFacts = await workflow.execute_activity(
                "collect",
                inp,
                result_type=CollectFacts,
                task_queue=where.task_queue if where else None,
                schedule_to_start_timeout=(where.until - where.since) if where else None,
                start_to_close_timeout=timedelta(seconds=inp.max_run_seconds) + COLLECT_GRACE,
                heartbeat_timeout=timedelta(seconds=inp.heartbeat_timeout_seconds),
                retry_policy=COLLECT_RETRY,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"run connector {inp.connector}" + (f" on {where.task_queue}" if where else ""),
            )
            return facts
        except ActivityError as e:
            if not (_lost_worker(e) and rounds < LOST_WORKER_ROUNDS and workflow.patched(LOST_WORKER)):
                raise
        rounds += 1
        spent = inp.attempts_before + COLLECT_RETRY.maximum_attempts
        inp = inp.model_copy(update={"attempts_before": spent})


def _lost_worker(e: ActivityError) -> bool:
    """Every attempt timed out on its heartbeat: a worker that vanished (or whose polls did)."""
    return isinstance(e.cause, TimeoutError) and e.cause.type is TimeoutType.HEARTBEAT


def unplaced(err: BaseException | None, where: PlacementWait | None) -> RunError | None:
    """`worker_unavailable` when no worker of the connector's queue took the collect in time."""
    if where is None or not isinstance(err, TimeoutError) or err.type is not TimeoutType.SCHEDULE_TO_START:
        return None
    seconds = (where.until - where.since).total_seconds()
    waited = f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"
    return RunError(
        kind=WORKER_UNAVAILABLE,
        message=(
            f"no worker polled task queue {where.task_queue!r} for {waited}: start "
            f"`PDPP_TASK_QUEUE={where.task_queue} pdpp-orch worker` on the machine with the connector's data"
        ),
    )
