"""A cancel at every moment of a run ends it with exactly one true, recorded outcome (DESIGN
§11): `cancelled`, nothing committed, every accepted record kept — or, once checkpoints have
begun to commit, too late, and the outcome says so. The moment is aimed by holding one
activity of the run in a worker interceptor while the cancel is sent."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from pdpp_orch.models import RunStatus
from pdpp_orch.registry import Registry
from tests.conftest import Harness, outcome_of, until
from tests.helpers import cli
from workflows.connector_run import ConnectorRunWorkflow

pytestmark = pytest.mark.faults

QUICK = [{"records": {"stream": "a", "count": 40}}, {"state": "a"}, {"done": "succeeded"}]


class Hold(Interceptor):
    """Holds one activity of a run `before` it runs or `after` it has returned, until released."""

    def __init__(self, name: str, when: str):
        self.name, self.when = name, when
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        hold = self

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                mine = activity.info().activity_type == hold.name
                if mine and hold.when == "before":
                    await hold.wait()
                result = await super().execute_activity(input)
                if mine and hold.when == "after":
                    await hold.wait()
                return result

        return Inbound(next)

    async def wait(self) -> None:
        self.reached.set()
        await self.release.wait()


async def cancel_at(harness: Harness, name: str, hold: Hold) -> tuple[Any, Any]:
    """Start a run of `name`, cancel it when `hold` is reached, release it; (outcome, handle)."""
    inp = harness.run_input(name)
    async with harness.worker(hold):
        handle = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )
        await asyncio.wait_for(hold.reached.wait(), 60)
        await handle.cancel()
        await asyncio.sleep(0.5)  # the request is on record before the step goes on
        hold.release.set()
        o = await asyncio.wait_for(outcome_of(harness.store, handle), 60)
    return o, handle


async def committed(harness: Harness, name: str) -> int:
    return int(
        await harness.store.pool.fetchval("SELECT count(*) FROM stream_state WHERE connector = $1", name)
    )


async def test_a_cancel_before_the_connector_starts_is_a_recorded_cancelled_run(harness: Harness) -> None:
    name = harness.scripted(QUICK)
    o, handle = await cancel_at(harness, name, Hold("prepare_run", "before"))
    assert (o.status, o.reason, o.records_durable) == (RunStatus.CANCELLED, "cancelled", 0)
    assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED
    row = await harness.store.runs.get(handle.id)
    assert row is not None and row.outcome is not None and row.outcome.status is RunStatus.CANCELLED
    assert harness.starts(name) == []  # the connector never ran
    # Its lock went with it: the next run of the connector starts at once.
    assert (await harness.run(name)).status is RunStatus.SUCCEEDED


async def test_a_cancel_while_collect_returns_anyway_commits_nothing(harness: Harness) -> None:
    # The connector was done before the cancel reached the activity: collect returns its facts
    # as if nothing happened (the case where the cancel used to be ignored and all committed).
    name = harness.scripted(QUICK)
    o, handle = await cancel_at(harness, name, Hold("collect", "after"))
    assert (o.status, o.reason, o.records_durable) == (RunStatus.CANCELLED, "cancelled", 40)
    assert o.state_streams_committed == 0 and await committed(harness, name) == 0
    assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED


async def test_a_cancel_between_activities_before_the_commit_still_ends_cancelled(harness: Harness) -> None:
    # Forward runs with a budget are charged between collect and the commit.
    name = harness.scripted(QUICK, budget={"units": 1000, "window": "1h"})
    o, handle = await cancel_at(harness, name, Hold("charge_budget", "before"))
    assert (o.status, o.records_durable, o.state_streams_committed) == (RunStatus.CANCELLED, 40, 0)
    assert await committed(harness, name) == 0
    assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED
    row = await harness.store.runs.get(handle.id)
    assert row is not None and row.status is RunStatus.CANCELLED


async def test_a_cancel_once_checkpoints_commit_is_too_late_and_the_outcome_says_so(
    harness: Harness, pg_url: str
) -> None:
    name = harness.scripted(QUICK)
    o, handle = await cancel_at(harness, name, Hold("commit_checkpoints", "before"))
    assert o.status is RunStatus.SUCCEEDED and o.cancel_too_late
    assert o.state_streams_committed == 1 and await committed(harness, name) == 1
    assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED
    code, out, _ = await cli(harness, pg_url, "status", handle.id)
    assert code == 0 and "a cancel came too late" in out


async def test_a_cancel_while_the_last_batch_waits_on_the_database_ends_once_it_is_written(
    harness: Harness, pg_url: str
) -> None:
    # The final drain waits on a flush blocked by a lock on `records`; the cancel arrives then.
    # It used to cancel the flusher and then wait for it for ever, heartbeating.
    name = harness.scripted(QUICK)
    inp = harness.run_input(name, heartbeat_timeout_seconds=2.0)
    locker = await asyncpg.connect(pg_url)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
        async with harness.worker():
            handle = await harness.client.start_workflow(
                ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
            )

            async def waiting_on_the_lock() -> bool:
                n = await harness.store.pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND state = 'active'"
                )
                return bool(n) and len(harness.starts(name)) == 1

            await until(waiting_on_the_lock, "the flush to wait on the lock")
            await asyncio.sleep(1.5)  # the connector is done: collect is draining
            await handle.cancel()
            await asyncio.sleep(3.0)  # the cancel reaches the activity with its next heartbeat
            await tx.rollback()
            o = await asyncio.wait_for(outcome_of(harness.store, handle), 60)
    finally:
        await locker.close()
    assert (o.status, o.records_durable, o.state_streams_committed) == (RunStatus.CANCELLED, 40, 0)
    n = await harness.store.pool.fetchval("SELECT count(*) FROM records WHERE connector = $1", name)
    assert n == 40
    # Its lock is released: the next run starts, and commits.
    assert (await harness.run(name)).status is RunStatus.SUCCEEDED


@pytest.mark.parametrize("requested", [False, True], ids=["heartbeat-timeout", "operator-cancel"])
async def test_an_attempt_cancelled_by_a_timeout_is_not_a_cancelled_run(
    harness: Harness, requested: bool
) -> None:
    # The SDK cancels an attempt whose heartbeat timed out (a frozen worker thawing) the same way
    # as one the operator cancelled; only the second is `cancelled`. It used to be both, so a run
    # whose every attempt timed out ended `cancelled` with its proven checkpoint skipped.
    from activities.collect import Collector
    from pdpp_orch.models import CollectFacts

    name = harness.scripted([{"records": {"stream": "a", "count": 30}}, {"state": "a"}, {"sleep": 60}])
    entry = Registry.load(harness.registry_path).get(name)
    run = harness.run_input(name)
    await harness.store.runs.start(run.run_id, name, run.trigger, run.mode)
    collector = Collector(
        harness.store,
        entry,
        entry.load_manifest(),
        run,
        1,
        lambda _: None,
        cancel_requested=lambda: requested,
        sandbox=harness.sandbox,
    )
    task = asyncio.create_task(collector.run())

    async def checkpointed() -> bool:
        return bool(await harness.store.state.resume_points(run.run_id))

    await until(checkpointed, "the proven checkpoint")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    saved, _, durable = await harness.store.runs.load_facts(run.run_id)
    assert saved is not None
    facts = CollectFacts.model_validate_json(saved)
    assert facts.cancelled is requested and durable == 30
    assert facts.checkpoints["a"].proven_seq is not None


async def test_a_cancel_while_the_outcome_is_written_is_too_late_and_the_outcome_says_so(
    harness: Harness,
) -> None:
    # It used to be accepted (the history shows it) and told nowhere: the outcome, stored and
    # returned, said `cancel_too_late: false`. finish_run can take minutes in a database outage.
    name = harness.scripted(QUICK)
    o, handle = await cancel_at(harness, name, Hold("finish_run", "before"))
    assert o.status is RunStatus.SUCCEEDED and o.cancel_too_late
    assert (await handle.result()).cancel_too_late
    assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED
    row = await harness.store.runs.get(handle.id)
    assert row is not None and row.outcome is not None and row.outcome.cancel_too_late
    spine = [e.event_type for e in await harness.store.runs.spine_events(handle.id)]
    assert [e for e in spine if e.startswith("run.")] == ["run.started", "run.completed"]
    assert spine[-1] == "cancel_too_late"
