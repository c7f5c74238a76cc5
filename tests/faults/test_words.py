"""A connector's words are a stranger's (issue 26, DESIGN §14): whatever it says is bounded before
it reaches facts or Temporal history, a step that fails for good ends the run with an outcome,
and a cancel always reaches the run. Each test plays a hostile connector of ours."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from pdpp_orch import words
from pdpp_orch.models import RunStatus
from tests.conftest import Harness, history_text, outcome_of, until
from workflows.connector_run import ConnectorRunWorkflow

pytestmark = pytest.mark.faults

HUGE = "x" * 3_000_000  # past Temporal's 2 MiB payload limit on its own


def hostile_misses(wait_for: str | None = None) -> list[dict[str, Any]]:
    """Records, then misses whose words are too long and too many for any history: a 3 MB skip
    reason, a 3 MB gap reason, 200 distinct reasons, a time range that is no range."""
    skip = {"type": "SKIP_RESULT", "stream": "b"}
    skips = [
        {"msg": {**skip, "reason": f"why-{i}-" + "y" * 500, "resource_ids": [f"r{i}"]}} for i in range(200)
    ]
    gap = {"type": "DETAIL_GAP", "stream": "a", "record_key": "k1", "reason": HUGE, "last_error": HUGE}
    ranges = [
        {"since": "yesterday", "until": HUGE[:5000]},
        {"since": "0001-01-01", "until": "9999-12-31"},
    ]
    days = {"longest_accepted_days": 1}
    steps: list[dict[str, Any]] = [
        {"records": {"stream": "a", "count": 5}},
        {"state": "a"},
        {"msg": {"type": "SKIP_RESULT", "stream": "a", "reason": HUGE}},
        {"msg": gap},
        *skips,
        *(
            {"msg": {**skip, "stream": "c", "reason": "range_cut", "time_range": r, "diagnostics": days}}
            for r in ranges
        ),
    ]
    if wait_for:
        steps.append({"wait_for": wait_for})
    return [*steps, {"done": "succeeded"}]


async def test_a_connector_s_huge_and_many_reasons_end_in_a_bounded_outcome_at_the_first_attempt(
    harness: Harness,
) -> None:
    name = harness.scripted(hostile_misses(), reasons={"range_cut": "transient"})
    started = time.monotonic()
    o = await asyncio.wait_for(harness.run(name), 60)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.records_durable == 5
    assert time.monotonic() - started < 30
    # Collected once: the facts were never too large to hand back (before: five attempts, each
    # running the connector again, then a wedge).
    assert len(harness.starts(name)) == 1
    assert all(len(r) <= words.MAX_REASON_CHARS for r in o.skipped_by_reason)
    assert words.OTHER_REASONS in o.skipped_by_reason and sum(o.skipped_by_reason.values()) == 204
    # The ledger keeps every miss with its own reason, bounded (the two 3 MB ones are one).
    reasons = await harness.store.pool.fetch("SELECT DISTINCT reason FROM gaps WHERE connector = $1", name)
    assert len(reasons) == 202 and max(len(r["reason"]) for r in reasons) <= words.MAX_REASON_CHARS
    # A range of centuries is a bounded number of chunks; one that is no range, the stream.
    chunks = [len(h.scope.time_ranges or []) for h in o.retry_hints if h.scope.time_ranges]
    assert chunks and max(chunks) <= 100
    history = await harness.client.get_workflow_handle(o.run_id).fetch_history()
    assert len(history_text(history)) < 400_000


async def test_a_cancel_reaches_a_run_whose_connector_said_too_much_and_frees_its_connector(
    harness: Harness,
) -> None:
    go = harness.tmp / "go"
    name = harness.scripted(hostile_misses(wait_for=str(go)))
    inp = harness.run_input(name)
    async with harness.worker():
        handle = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )

        async def has_gaps() -> bool:
            n = await harness.store.pool.fetchval("SELECT count(*) FROM gaps WHERE connector = $1", name)
            return bool(n and n >= 200)

        await until(has_gaps, "the connector's misses in the ledger")
        await handle.cancel()
        # Before: the saved facts were past the payload limit, `load_facts` was retried for
        # ever in a step a cancel does not interrupt, and the connector's lock stayed held.
        o = await asyncio.wait_for(outcome_of(harness.store, handle), 30)
    assert o.status is RunStatus.CANCELLED and o.records_durable == 5
    lock = await harness.store.pool.fetchval("SELECT run_id FROM connector_locks WHERE connector = $1", name)
    assert lock is None


class FailForGood(Interceptor):
    """Makes the named activities raise a defect (what a value that can never be read or
    stored raises), every attempt."""

    def __init__(self, *names: str):
        self.names = names

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        names = self.names

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                name = activity.info().activity_type
                if name == "collect" and name in names:  # its own few retries aside
                    raise ApplicationError("collect cannot go on", non_retryable=True)
                if name in names:
                    raise ValueError(f"{name} cannot go on")
                return await super().execute_activity(input)

        return Inbound(next)


@pytest.mark.parametrize(
    ("failing", "why"),
    [
        (("commit_checkpoints",), "ValueError: commit_checkpoints failed"),
        (("plan_retries",), "ValueError: plan_retries failed"),
        (("collect", "load_facts"), "collect cannot go on"),  # the first cause is told
    ],
    ids=["commit", "plan", "load_facts"],
)
async def test_a_step_that_fails_for_good_ends_the_run_with_a_recorded_outcome(
    harness: Harness, failing: tuple[str, ...], why: str
) -> None:
    name = harness.scripted([{"records": {"stream": "a", "count": 5}}, {"state": "a"}, {"done": "succeeded"}])
    inp = harness.run_input(name)
    async with harness.worker(FailForGood(*failing)):
        handle = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )
        # Before: the step was retried for ever (DB_RETRY has no maximum of attempts).
        o = await asyncio.wait_for(outcome_of(harness.store, handle), 40)
    assert o.status is not RunStatus.SUCCEEDED and o.reason == "runtime_error"
    assert o.error is not None and why in (o.error.message or "")
    row = await harness.store.runs.get(inp.run_id)
    assert row is not None and row.finished_at is not None and row.status == o.status
    lock = await harness.store.pool.fetchval("SELECT run_id FROM connector_locks WHERE connector = $1", name)
    assert lock is None
