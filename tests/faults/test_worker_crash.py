"""A worker killed with SIGKILL mid-collect: another worker resumes the run from its last proven
checkpoint and the run ends with exact counts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import psutil
import pytest

from pdpp_orch.control.budget import budget_status
from pdpp_orch.models import RecoveryInput, RunOutcome, RunStatus
from pdpp_orch.upstream.process import UpstreamProcess
from tests.conftest import ROOT, Harness, outcome_of
from tests.helpers import live
from workflows.connector_run import ConnectorRunWorkflow
from workflows.ids import recovery_workflow_id
from workflows.recovery import GapRecoveryWorkflow

EXAMPLE_MANIFEST = ROOT / "pdpp_orch" / "connectors" / "example.json"
PER_STREAM = 20_000
EVERY = 1_000


def start_worker(h: Harness, pg_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": h.client.service_client.config.target_host,
        "PDPP_DATABASE_URL": pg_url,
        "PDPP_TASK_QUEUE": h.task_queue,
        "PDPP_CONNECTORS": str(h.registry_path),
    }
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, cwd=ROOT)


class Workers:
    """One test's worker subprocesses; those still running at the end are stopped (SIGINT)."""

    def __init__(self, h: Harness, pg_url: str):
        self.h, self.pg_url = h, pg_url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        self.procs.append(start_worker(self.h, self.pg_url))
        return self.procs[-1]

    @staticmethod
    def kill(p: subprocess.Popen[bytes]) -> None:
        p.send_signal(signal.SIGKILL)
        p.wait()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                p.wait(30)


async def test_sigkilled_worker_is_replaced_and_counts_stay_exact(harness: Harness, pg_url: str) -> None:
    name = harness.register(
        "crashy",
        [sys.executable, "-m", "pdpp_orch.connectors.example"],
        EXAMPLE_MANIFEST,
        {
            "EXAMPLE_RECORDS": str(PER_STREAM),
            "EXAMPLE_CHECKPOINT_EVERY": str(EVERY),
            "EXAMPLE_PAUSE_MS": "60",
        },
    )
    inp = harness.run_input(name, heartbeat_timeout_seconds=2.0)
    with Workers(harness, pg_url) as workers:
        first = workers.start()
        handle = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )
        # Kill the worker once part of the first stream is durable and checkpointed.
        for _ in range(600):
            durable = await harness.store.pool.fetchval(
                "SELECT records_durable FROM runs WHERE run_id = $1", inp.run_id
            )
            if durable and durable > 5_000:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the run never got going")
        workers.kill(first)
        resume_offset = await harness.store.pool.fetchval(
            "SELECT (cursor->>'offset')::int FROM run_checkpoints WHERE run_id = $1 AND stream = 'notes'",
            inp.run_id,
        )
        assert resume_offset and resume_offset % EVERY == 0

        workers.start()
        outcome: RunOutcome = await asyncio.wait_for(handle.result(), 120)

    total = 2 * PER_STREAM + 6
    assert outcome.status is RunStatus.SUCCEEDED
    assert (outcome.records_emitted, outcome.records_durable) == (total, total)
    assert outcome.state_streams_committed == 3
    rows = await harness.store.pool.fetchval("SELECT count(*) FROM records WHERE connector = $1", name)
    assert rows == total
    run = await harness.store.runs.get(inp.run_id)
    assert run is not None and run.attempt == 2
    # Re-read work is bounded by one checkpoint interval: every flushed record counted once,
    # plus at most what came after the resume point before the kill.
    events = await harness.store.runs.spine_events(inp.run_id)
    flushed = sum(e.payload["records"] for e in events if e.event_type == "batch_ingested")
    assert total <= flushed <= total + EVERY


async def test_worker_killed_mid_recovery_resumes_without_double_spending(
    harness: Harness, pg_url: str
) -> None:
    plan = {"faults": [{"route": "chatgpt.conversation", "sample": {"count": 4188, "seed": 7}, "status": 429,
                        "retry_after": 86400, "times": 1}]}  # fmt: skip
    with UpstreamProcess(world="seed", plan=plan) as up:
        name = harness.register(
            "recovering",
            [sys.executable, "-m", "pdpp_orch.connectors.chatgpt"],
            ROOT / "pdpp_orch" / "connectors" / "chatgpt.json",
            {"PDPP_UPSTREAM_URL": up.url},
            budget={"units": 100_000, "window": "24h"},
        )
        o = await harness.run(name, recover=False)
        [hint] = o.retry_hints
        before = up.counters("chatgpt.conversation", ids=True)["ids"]
        inp = RecoveryInput(
            connector=name,
            hint=hint.model_copy(update={"not_before": datetime.now(UTC)}),  # due now
            found_run_id=o.run_id,
            batch_size=500,
            heartbeat_timeout_seconds=2.0,
        )
        with Workers(harness, pg_url) as workers:
            first = workers.start()
            handle = await harness.client.start_workflow(
                GapRecoveryWorkflow.run,
                inp,
                id=recovery_workflow_id(hint.hint_id),
                task_queue=harness.task_queue,
            )
            for _ in range(600):  # kill it once recovery runs are under way
                n = await harness.store.pool.fetchval(
                    "SELECT coalesce(sum(records_durable), 0) FROM runs "
                    "WHERE connector = $1 AND mode = 'recovery'",
                    name,
                )
                if n > 0:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the recovery never got going")
            workers.kill(first)
            workers.start()
            result = await asyncio.wait_for(handle.result(), 180)
            status = await budget_status(harness.client, name)  # a query: needs the live worker
        after = up.counters("chatgpt.conversation", ids=True)["ids"]
    assert (result.progress.recovered, result.progress.open) == (4_188, 0)
    rows = await harness.store.pool.fetchval("SELECT count(*) FROM records WHERE connector = $1", name)
    assert rows == 14_784
    # Budget: one grant per round, however many times an activity was retried.
    assert status is not None and status.granted_total == 4_188
    # Fetches: every gap once; only what was in flight in the killed attempt (fetched, not yet
    # flushed as recovered) is fetched a second time — at most one lease of 500.
    fetched = {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}
    assert len(fetched) == 4_188 and max(fetched.values()) <= 2
    assert sum(fetched.values()) - 4_188 <= 500


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "unsandboxed"])
async def test_what_a_connector_started_dies_with_its_sigkilled_worker(
    harness: Harness, pg_url: str, sandboxed: bool
) -> None:
    """The kernel ends the connector of a worker killed with SIGKILL. What the connector
    started (a browser, say) goes with it when it is sandboxed (its PID namespace ends); an
    unsandboxed one's is ended by the next worker on the machine."""
    marker = f"300.{uuid.uuid4().int % 10**9:09d}"  # sleep's argument: how the test finds it
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 5}},
            {"state": "a"},
            {"spawn": ["sleep", marker]},
            {"sleep": 120},
            {"done": "succeeded"},
        ],
        env={"SCRIPT_SPAWN_LOG": str(harness.tmp / "spawned.pids")},
        **({} if sandboxed else {"sandbox": False}),
    )
    inp = harness.run_input(name, heartbeat_timeout_seconds=2.0)
    with Workers(harness, pg_url) as workers:
        first = workers.start()
        handle = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )
        for _ in range(600):
            if live(marker):
                break
            await asyncio.sleep(0.05)
        [helper] = live(marker)
        connector = psutil.Process(helper).ppid()
        workers.kill(first)
        for _ in range(100):  # the connector goes with its worker (PR_SET_PDEATHSIG) ...
            if gone(connector) and (gone(helper) or not sandboxed):
                break
            await asyncio.sleep(0.05)
        assert gone(connector)
        assert gone(helper) is sandboxed  # ... what it started with its sandbox, if it has one

        workers.start()
        for _ in range(300):
            if gone(helper):
                break
            await asyncio.sleep(0.05)
        assert gone(helper)
        await handle.cancel()
        outcome: RunOutcome = await asyncio.wait_for(outcome_of(harness.store, handle), 60)
        assert outcome.status is RunStatus.CANCELLED and outcome.records_durable >= 5
        # The second attempt's own helper went with its process group at the cancel.
        for _ in range(100):
            if not live(marker):
                break
            await asyncio.sleep(0.05)
        assert live(marker) == []
