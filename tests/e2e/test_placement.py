"""Placement (issue 23): a connector whose data lives on one machine names a task queue
(`[connectors.NAME] task_queue`), and its collect — the only activity that spawns it or
touches its files — runs only on workers of that queue, for forward runs, scheduled runs and
recoveries alike; the workflows and every other activity run anywhere. Without a worker of
that queue the run waits, saying so on every surface, then fails `worker_unavailable`.

The "laptop" is a `pdpp-orch worker` subprocess started with PDPP_TASK_QUEUE (and a variable
only it has, which the connector sees); the test's own worker polls the default queue.
tests/hosts/ places a connector across network namespaces.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from pdpp_orch.control import schedules
from pdpp_orch.control.placement import worker_wait
from pdpp_orch.models import Mode, RunProgress, RunStatus, Trigger
from pdpp_orch.store import Store
from tests.conftest import ROOT, Harness, outcome_of, until
from tests.faults.test_faults import faulty, pages
from tests.helpers import cli, cli_env, current_details
from workflows.connector_run import ConnectorRunWorkflow

pytestmark = pytest.mark.slow


@pytest.fixture
def h(tmp_path: Path, client: Client, store: Store) -> Harness:
    return Harness(tmp_path, client, store)


@pytest.fixture
def laptop(h: Harness, pg_url: str) -> Iterator[str]:
    """A worker of its own queue, as on the owner's laptop; yields the queue."""
    queue = f"laptop-{uuid.uuid4().hex[:8]}"
    env = {**cli_env(h, pg_url, LAPTOP_MARK="the owner's laptop"), "PDPP_TASK_QUEUE": queue}
    log = open(h.tmp / "laptop.log", "wb")  # the worker writes to it
    proc = subprocess.Popen([sys.executable, "-m", "pdpp_orch.cli", "worker"], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        yield queue
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def collect_queues(history: Any) -> dict[str, set[str]]:
    """The task queue of every activity the run scheduled, by activity type."""
    out: dict[str, set[str]] = {}
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            a = e.activity_task_scheduled_event_attributes
            out.setdefault(a.activity_type.name, set()).add(a.task_queue.name)
    return out


async def test_a_placed_connector_runs_only_on_workers_of_its_queue(h: Harness, laptop: str) -> None:
    dump = h.tmp / "env.json"
    name = faulty(h, [{"env_dump": str(dump)}, pages("a", 30, every=10), {"done": "succeeded"}],
                  task_queue=laptop, pass_env=["LAPTOP_MARK"])  # fmt: skip
    async with h.worker():
        # A forward run, a scheduled one (a real Schedule) and a recovery run: one code path.
        inp = h.run_input(name)
        forward = await h.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=h.task_queue
        )
        assert (await outcome_of(h.store, forward)).status is RunStatus.SUCCEEDED
        assert json.loads(dump.read_text())["env"]["LAPTOP_MARK"] == "the owner's laptop"
        dump.unlink()

        spec = schedules.spec("24h", None, None)
        schedule = schedules.build(name, h.task_queue, spec, [], "skip", True, 30.0)
        await schedules.create(h.client, name, schedule)
        await schedules.act(h.client, name, "trigger")
        scheduled = await until(lambda: _scheduled_run(h, name), "the scheduled run", 30)
        assert (await outcome_of(h.store, scheduled)).status is RunStatus.SUCCEEDED
        assert json.loads(dump.read_text())["env"]["LAPTOP_MARK"] == "the owner's laptop"
        await schedules.act(h.client, name, "delete")
        dump.unlink()

        inp = h.run_input(name, mode=Mode.RECOVERY, trigger=Trigger.RECOVERY)
        recovery = await h.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=h.task_queue
        )
        assert (await outcome_of(h.store, recovery)).status is RunStatus.SUCCEEDED
        assert json.loads(dump.read_text())["env"]["LAPTOP_MARK"] == "the owner's laptop"

    for handle in (forward, scheduled, recovery):
        queues = collect_queues(await handle.fetch_history())
        assert queues.pop("collect") == {laptop}, handle.id
        assert queues and all(q == {h.task_queue} for q in queues.values()), (handle.id, queues)
    assert len(h.starts(name)) == 3


async def _scheduled_run(h: Harness, name: str) -> Any:
    async for wf in h.client.list_workflows(f'WorkflowId STARTS_WITH "{schedules.schedule_id(name)}"'):
        return h.client.get_workflow_handle(wf.id)
    return None


async def test_without_a_worker_of_its_queue_a_run_says_so_then_fails_worker_unavailable(
    h: Harness, pg_url: str
) -> None:
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    name = faulty(h, [pages("a", 30, every=10), {"done": "succeeded"}], task_queue=queue,
                  placement_timeout_seconds=10.0)  # fmt: skip
    async with h.worker():
        code, out, err = await cli(h, pg_url, "run", name, "--json")
        assert code == 0, err
        run_id = json.loads(out)["run_id"]
        handle = h.client.get_workflow_handle(run_id)
        p = await until(lambda: _placed(handle), "the run waiting for a worker", 30)
        assert p.placement is not None and p.placement.task_queue == queue
        assert p.phase == f"waiting for a worker on task queue {queue}"
        details = await current_details(h, run_id)
        assert f"**waiting for a worker** on task queue `{queue}`" in details
        assert "worker_unavailable" in details
        waits = await worker_wait(h.client, handle)
        assert waits is not None and waits.task_queue == queue and waits.last_poll is None
        status, watch = await asyncio.gather(
            cli(h, pg_url, "status", run_id), cli(h, pg_url, "watch", run_id, "--json")
        )
    print(f"\nstatus:\n{status[1]}\nwatch (stderr):\n{watch[2]}")
    assert status[0] == 0 and f"waits for a worker on task queue '{queue}'" in status[1]
    assert "none has taken it" in status[1]
    assert watch[0] == 1, watch[2]
    assert f"waits for a worker on task queue '{queue}'" in watch[2]
    o = json.loads(watch[1])
    assert (o["status"], o["reason"], o["records_durable"]) == ("failed", "worker_unavailable", 0)
    assert f"task queue {queue!r}" in o["error"]["message"]
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED
    row = await h.store.runs.get(run_id)
    assert row is not None and row.finished_at is not None and row.reason == "worker_unavailable"
    assert await h.store.pool.fetchval("SELECT count(*) FROM connector_locks WHERE connector = $1", name) == 0
    assert h.starts(name) == []


async def _placed(handle: Any) -> RunProgress | None:
    p: RunProgress = await handle.query("progress", result_type=RunProgress)
    return p if p.placement is not None else None
