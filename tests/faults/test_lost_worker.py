"""A worker that stops answering without dying: its collect is retried elsewhere, and a run
is not given up on because a lost worker spent its attempts."""

from __future__ import annotations

import asyncio
import signal

from pdpp_orch.models import RunStatus
from tests.conftest import Harness, outcome_of, until
from tests.faults.test_faults import faulty, pages, rows
from tests.faults.test_worker_crash import Workers
from workflows.connector_run import ConnectorRunWorkflow

# 5 collect attempts with a 1 s heartbeat timeout and back-off from 1 s: about 20 s.
FROZEN_S = 26.0


async def test_a_worker_frozen_through_every_collect_attempt_is_waited_for(
    harness: Harness, pg_url: str
) -> None:
    """A worker that stops answering (frozen here; on another host: powered off, or cut off)
    keeps its polls open on the Temporal server, which hands them the collect's next attempts:
    each times out on its heartbeat. Before, the 5th such attempt ended the run
    `partially_completed` (runtime_error, "heartbeat timeout") though nothing failed; now the
    collect runs again with fresh attempts, and the run succeeds (workflows/collecting.py)."""
    name = faulty(harness, [pages("a", 400, every=20, pause=0.1), {"done": "succeeded"}])
    inp = harness.run_input(name, heartbeat_timeout_seconds=1.0, recover=False)
    with Workers(harness, pg_url) as workers:
        only = workers.start()
        handle = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )
        await until(lambda: _durable_at_least(harness, inp.run_id, 40), "the run collecting", 60)
        only.send_signal(signal.SIGSTOP)
        await asyncio.sleep(FROZEN_S)  # longer than the 5 attempts take with 1 s heartbeats
        only.send_signal(signal.SIGCONT)
        outcome = await outcome_of(harness.store, handle)
    run = await harness.store.runs.get(inp.run_id)
    assert run is not None
    print(f"\nfrozen {FROZEN_S:.0f}s: {outcome.status.value} ({outcome.reason}), attempt {run.attempt}")
    assert outcome.status is RunStatus.SUCCEEDED, (outcome.reason, outcome.error)
    assert run.attempt > 5  # a second round of attempts
    assert await rows(harness.store, name) == {"a": 400}


async def _durable_at_least(h: Harness, run_id: str, n: int) -> bool:
    got = await h.store.pool.fetchval("SELECT records_durable FROM runs WHERE run_id = $1", run_id)
    return bool(got and got >= n)
