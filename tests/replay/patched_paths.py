"""The runs that take the paths behind the newer `workflow.patched` ids (workflows/patches.py),
for tests/replay/record_histories.py: without a history of each, a later change to one of those
paths would break the workflows running it unnoticed.

Most of them need a fault: `Provoke` brings it about inside the recorder's worker, for the runs
named here only, the way tests/faults/ do (an activity interceptor): each history has the
commands the fault gives a workflow in production.
- `defective`: its collect fails for good, then so does reading what it saved (a value that can
  never be read: activities/failures.py), and the run ends `failed` with a recorded outcome
  (STEP_FAILED_FOR_GOOD);
- `lost-worker`: every collect attempt of its first round times out on its heartbeat, as the
  attempts a vanished worker's polls swallowed do (tests/faults/test_lost_worker.py freezes a
  worker process instead), and the collect runs again (LOST_WORKER);
- `cancel-while-recording`: a cancel arrives while the outcome is being written (LATE_CANCEL).
The others need no fault: `placed` collects on a worker of its connector's own task queue
(PLACEMENT), `versioned` runs on a versioned worker (PDPP_WORKER_BUILD_ID: the PINNED class of
workflows/versioning.py), an operator cancels a waiting recovery (RECOVERY_FATE; Case E's
recovery, brought forward, records that it ended done), and `walked` skips its stream whole
after a run that collected it, so its recovery, brought forward, walks the stream: it asks its
budget for the walk's estimate and is charged after for what it re-collected beyond (WALK_CHARGED).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkerDeploymentVersion
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from pdpp_orch.control import deployment
from pdpp_orch.control.recoveries import cancel_recoveries
from pdpp_orch.demo import CaseResult
from pdpp_orch.models import RunInput
from pdpp_orch.registry import Registry
from pdpp_orch.store import Store
from pdpp_orch.worker import build_worker
from tests.connectors import append_scripted
from workflows.connector_run import ConnectorRunWorkflow
from workflows.options import COLLECT_RETRY
from workflows.recovery import GapRecoveryWorkflow

QUICK = [{"records": {"stream": "a", "count": 3}}, {"state": "a"}, {"done": "succeeded"}]
CONNECTORS = ("placed", "defective", "stalled", "late_cancel", "versioned", "walked")
# `walked`: QUICK, then a run that skips `a` whole (and collects `b`: it partly completes), then
# a walk of `a` that finds more than QUICK did.
SKIP_A = [
    {"records": {"stream": "b", "count": 1}},
    {"state": "b"},
    {"msg": {"type": "SKIP_RESULT", "stream": "a", "reason": "temporary_unavailable"}},
    {"done": "succeeded"},
]
GREW = [{"records": {"stream": "a", "count": 5}}, {"state": "a"}, {"done": "succeeded"}]
DEFECTIVE, LOST, LATE = "defective", "lost-worker", "cancel-while-recording"
STALLED_ATTEMPTS = COLLECT_RETRY.maximum_attempts  # one whole round, not more
HEARTBEAT_S = 1.0
ASKED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED


def register(registry: Path, work: Path) -> str:
    """Add this module's connectors to the recorder's registry; `placed` names a task queue of
    its own, which is returned."""
    laptop = f"record-laptop-{uuid.uuid4().hex[:6]}"
    for name in CONNECTORS:
        append_scripted(registry, name, QUICK, work)
        if name == "placed":  # still its table
            with registry.open("a") as f:
                f.write(f'task_queue = "{laptop}"\n')
        if name == "walked":  # a budget: a walking recovery is charged only against one
            with registry.open("a") as f:
                f.write("\n[connectors.walked.budget]\nunits = 1000\n")
    return laptop


class Provoke(Interceptor):
    """The faults of the runs named in the module's docstring, for those runs only."""

    def __init__(self) -> None:
        self.stalled = 0
        self.recording = asyncio.Event()  # the late-cancel run is writing its outcome
        self.release = asyncio.Event()  # ...and may finish writing it

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, provoke: Provoke):
        super().__init__(next)
        self.provoke = provoke

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info, p = activity.info(), self.provoke
        step = (info.workflow_id, info.activity_type)
        if step == (DEFECTIVE, "collect"):
            raise ApplicationError("collect cannot go on", non_retryable=True)
        if step == (DEFECTIVE, "load_facts"):
            raise ValueError("load_facts cannot go on")  # Honest: failed for good
        if step == (LOST, "collect") and p.stalled < STALLED_ATTEMPTS:
            p.stalled += 1
            await asyncio.sleep(HEARTBEAT_S * 3)  # no heartbeat: the server times it out
            raise ApplicationError("timed out on its heartbeat already")
        if step == (LATE, "finish_run"):
            p.recording.set()
            await p.release.wait()
        return await super().execute_activity(input)


async def record_patched_paths(
    client: Client, store: Store, queue: str, laptop: str, registry: Callable[[], Registry], provoke: Provoke
) -> None:
    """Each run of the module's docstring, to its end (the recorder's worker, with `provoke`
    among its interceptors, polls `queue`)."""
    async with build_worker(client, store, laptop, registry):
        await _run(client, queue, RunInput(connector="placed", run_id="placed"))
    await _run(client, queue, RunInput(connector="defective", run_id=DEFECTIVE, recover=False))
    lost = RunInput(connector="stalled", run_id=LOST, heartbeat_timeout_seconds=HEARTBEAT_S, recover=False)
    await _run(client, queue, lost)
    assert provoke.stalled == STALLED_ATTEMPTS, provoke.stalled
    await _cancelled_while_recording(client, queue, provoke)
    await _versioned_run(client, store, registry)
    await _walked(client, queue, Path(registry().get("walked").env["SCRIPT_PLAN"]))


async def _run(client: Client, queue: str, inp: RunInput) -> WorkflowHandle[Any, Any]:
    handle = await client.start_workflow(ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=queue)
    with contextlib.suppress(WorkflowFailureError):  # a failed run's workflow ends Failed
        await asyncio.wait_for(handle.result(), 120)
    return handle


async def _cancelled_while_recording(client: Client, queue: str, provoke: Provoke) -> None:
    """Cancel the run once its outcome is being written, and let it finish writing once the
    workflow has taken the cancel in (it is too late: the run completes)."""
    inp = RunInput(connector="late_cancel", run_id=LATE, recover=False)
    handle = await client.start_workflow(ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=queue)
    await asyncio.wait_for(provoke.recording.wait(), 60)
    await handle.cancel(reason="the recorder, while the outcome is being written")
    for _ in range(300):
        types = [e.event_type async for e in handle.fetch_history_events()]
        if ASKED in types and EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in types[types.index(ASKED) :]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the workflow never took the cancel in")
    provoke.release.set()
    await asyncio.wait_for(handle.result(), 60)


async def _versioned_run(client: Client, store: Store, registry: Callable[[], Registry]) -> None:
    """A run on a versioned worker, its build made current (`pdpp-orch deployment set-current`)."""
    version = WorkerDeploymentVersion(f"record-{uuid.uuid4().hex[:6]}", "v1")
    queue = f"record-versioned-{uuid.uuid4().hex[:6]}"
    async with build_worker(client, store, queue, registry, deployment=version):
        assert await deployment.joined(client, version, wait_s=30) is not None, "build v1 never joined"
        await deployment.set_current(client, version.deployment_name, version.build_id)
        await _run(client, queue, RunInput(connector="versioned", run_id="versioned", recover=False))


async def _walked(client: Client, queue: str, plan: Path) -> None:
    """A stream collected, then skipped whole: its recovery, brought forward (`pdpp-orch recover
    now`), walks it and finds more than it held last time."""
    await _run(client, queue, RunInput(connector="walked", run_id="walked-1", recover=False))
    await asyncio.to_thread(plan.write_text, json.dumps(SKIP_A))
    outcome = await (await _run(client, queue, RunInput(connector="walked", run_id="walked-2"))).result()
    [wid] = outcome.recovery_workflow_ids
    await asyncio.to_thread(plan.write_text, json.dumps(GREW))
    handle = client.get_workflow_handle_for(GapRecoveryWorkflow.run, wid)
    await handle.signal(GapRecoveryWorkflow.run_now)
    done = await asyncio.wait_for(handle.result(), 120)
    assert (done.runs, done.progress.recovered) == (1, 1), done


async def operator_cancels_a_recovery(client: Client, store: Store, results: list[CaseResult]) -> None:
    """`pdpp-orch recover cancel` on the first case whose recovery still waits for its
    not_before (Case E's was brought forward and is done by now)."""
    waiting = [r for r in results if r.outcome.recovery_workflow_ids and r.case.key != "E"]
    found = await cancel_recoveries(store, client, waiting[0].case.connector)
    cancelled = [r for r in found if r.state == "cancel requested"]
    assert cancelled, f"no recovery of {waiting[0].case.connector} to cancel"
    for r in cancelled:
        with contextlib.suppress(WorkflowFailureError):
            await asyncio.wait_for(client.get_workflow_handle(r.workflow_id).result(), 30)
