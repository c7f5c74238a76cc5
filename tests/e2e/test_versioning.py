"""Rolling upgrades with Worker Versioning (docs/operations.md, "Upgrades"), on one host: two
builds of the worker side by side, as a rainbow deployment runs them, routed with the
`pdpp-orch deployment` commands an operator types.

Build v2's ConnectorRunWorkflow issues a command v1's does not (an extra activity before its
first step, and no `workflow.patched`): had any of v1's runs been replayed on v2, its workflow
task would fail with a non-determinism error. Each build is a worker of its own (its own
workflow cache, its own deployment version, as the server sees a process); what proves the
routing is where each workflow task ran, which Temporal writes into every history.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.api.enums.v1 import EventType, VersioningBehavior
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkerDeploymentVersion
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from pdpp_orch.budget import BudgetConfig, BudgetInput
from pdpp_orch.control import deployment
from pdpp_orch.models import RecoveryPolicy, RunOutcome, RunStatus
from tests.conftest import Harness, outcome_of, until
from tests.helpers import cli
from workflows.budget import ConnectorBudgetWorkflow
from workflows.connector_run import ConnectorRunWorkflow
from workflows.ids import budget_workflow_id
from workflows.recovery import GapRecoveryWorkflow

EXTRA = "recovery_policy"  # the activity v2 runs first (read-only: the connector's settings)
PINNED = VersioningBehavior.VERSIONING_BEHAVIOR_PINNED
AUTO_UPGRADE = VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE
SETTLE_S = 30.0
T = TypeVar("T")


class ExtraStepInbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if workflow.info().workflow_type == "ConnectorRunWorkflow":
            await workflow.execute_activity(
                EXTRA,
                input.args[0].connector,
                result_type=RecoveryPolicy,
                start_to_close_timeout=timedelta(seconds=30),
                summary="v2's extra step",
            )
        return await super().execute_workflow(input)


class ExtraStep(Interceptor):
    """Build v2's change to ConnectorRunWorkflow: a new first command, unpatched."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return ExtraStepInbound


class Builds:
    """One test's Worker Deployment: its name, and the CLI routing it."""

    def __init__(self, h: Harness, pg_url: str):
        self.h, self.pg_url = h, pg_url
        self.name = f"pdpp-test-{uuid.uuid4().hex[:8]}"

    def version(self, build: str) -> WorkerDeploymentVersion:
        return WorkerDeploymentVersion(self.name, build)

    async def cli(self, *args: str) -> str:
        code, out, err = await cli(self.h, self.pg_url, "deployment", *args, PDPP_WORKER_DEPLOYMENT=self.name)
        assert code == 0, (args, out, err)
        return out

    async def route(self, *args: str) -> dict[str, Any]:
        """A routing command; a build it names must have joined the deployment first (moments
        after its worker first polls: the CLI refuses one Temporal does not know yet)."""
        if len(args) > 1:
            joined = await deployment.joined(self.h.client, self.version(args[1]), wait_s=30)
            assert joined is not None, f"build {args[1]} never joined"
        change: dict[str, Any] = json.loads(await self.cli(*args, "--json"))
        return change


async def history(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    return [e async for e in handle.fetch_history_events()]


async def task_builds(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The build of every completed workflow task, in order; no task failed."""
    events = await history(handle)
    assert not [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    return [
        e.workflow_task_completed_event_attributes.deployment_version.build_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]


async def activities(handle: WorkflowHandle[Any, Any]) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in await history(handle)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def bounded(handle: WorkflowHandle[Any, Any], ending: Awaitable[T]) -> T:
    """What `ending` gives once the workflow ends, within SETTLE_S (else its failed tasks say why)."""
    try:
        return await asyncio.wait_for(ending, SETTLE_S)
    except TimeoutError:
        failed = [
            e.workflow_task_failed_event_attributes.failure.message
            for e in await history(handle)
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        ]
        raise AssertionError(f"{handle.id} did not end in {SETTLE_S} s; its failed tasks: {failed}") from None


async def versioning(handle: WorkflowHandle[Any, Any]) -> tuple[int, str]:
    """(behaviour, build) of a workflow, as `temporal workflow describe` shows them."""
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    return info.behavior, info.deployment_version.build_id


async def run_to_end(h: Harness, connector: str) -> tuple[RunOutcome, WorkflowHandle[Any, Any]]:
    inp = h.run_input(connector)
    handle = await h.client.start_workflow(
        ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=h.task_queue
    )
    return await bounded(handle, outcome_of(h.store, handle)), handle


async def rows(h: Harness, connector: str) -> list[tuple[str, str]]:
    found = await h.store.pool.fetch(
        "SELECT key, first_run_id FROM records WHERE connector = $1 ORDER BY key", connector
    )
    return [(r["key"], r["first_run_id"]) for r in found]


def gaps(n: int) -> list[dict[str, Any]]:
    return [
        {
            "msg": {
                "type": "DETAIL_GAP",
                "stream": "a",
                "record_key": f"g-{i}",
                "reason": "rate_limited",
                "detail_locator": {"item": i},
            }
        }
        for i in range(n)
    ]


async def started_budget(client: Client, h: Harness, connector: str) -> WorkflowHandle[Any, Any]:
    """The connector's budget, started while v1 is current; it continues as new after one update."""
    return await client.start_workflow(
        ConnectorBudgetWorkflow.run,
        BudgetInput(connector=connector, config=BudgetConfig(), max_updates_before_continue=1),
        id=budget_workflow_id(connector),
        task_queue=h.task_queue,
    )


async def test_a_run_ends_on_the_build_that_started_it_while_new_runs_go_to_the_next(
    harness: Harness, pg_url: str
) -> None:
    h = harness
    builds = Builds(h, pg_url)
    gate = h.tmp / "gate"
    recovery_plan = h.tmp / "recovery.plan.json"
    recovery_plan.write_text(json.dumps([{"drain": {}}, {"done": "succeeded"}]))
    long = h.scripted(
        [
            {"records": {"stream": "a", "count": 5}},
            {"state": "a"},
            {"wait_for": str(gate)},
            {"records": {"stream": "a", "count": 5}},
            {"state": "a"},
            *gaps(2),
            {"done": "succeeded"},
        ],
        env={"SCRIPT_RECOVERY_PLAN": str(recovery_plan), "SCRIPT_RESPONSE_LOG": str(h.tmp / "pages")},
    )
    quick = h.scripted([{"records": {"stream": "b", "count": 3}}, {"state": "b"}, {"done": "succeeded"}])

    async with h.worker(deployment=builds.version("v1")):
        assert (await builds.route("set-current", "v1"))["current"] == "v1"
        budget = await started_budget(h.client, h, long)
        inp = h.run_input(long)
        long_run = await h.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=h.task_queue
        )
        await until(lambda: _collecting(h, long), "the long run collecting on v1")

        async with h.worker(ExtraStep(), deployment=builds.version("v2")):
            await _ramp_and_roll_back(h, builds, quick)
            change = await builds.route("set-current", "v2")
            assert (change["current"], change["previous_current"]) == ("v2", "v1")
            new, new_run = await run_to_end(h, quick)
            assert (new.status, new.build_id) == (RunStatus.SUCCEEDED, "v2")
            assert (await activities(new_run))[0] == EXTRA
            assert set(await task_builds(new_run)) == {"v2"}
            assert await versioning(new_run) == (PINNED, "v2")

            shown = json.loads(await builds.cli("show", "--json"))
            by_build = {b["build_id"]: b for b in shown["builds"]}
            assert shown["current"] == "v2" and by_build["v2"]["status"] == "current"
            assert by_build["v1"]["status"] == "draining" and by_build["v1"]["runs"] == [long_run.id]

            gate.touch()
            old = await _ended_on_v1(h, long, long_run)
            await _recovery_follows_the_current_build(h, old, budget)
            assert [k for k, _ in await rows(h, long)] == [*(f"a-{i:06d}" for i in range(10)), "g-0", "g-1"]

            back = await builds.route("rollback")
            assert (back["current"], back["previous_current"]) == ("v1", "v2")
            again, again_run = await run_to_end(h, quick)
            assert (again.status, again.build_id) == (RunStatus.SUCCEEDED, "v1")
            assert EXTRA not in await activities(again_run) and set(await task_builds(again_run)) == {"v1"}


async def _ramp_and_roll_back(h: Harness, builds: Builds, connector: str) -> None:
    """A ramp of all new runs (100%) to v2 sends a run there; rolling back ends the ramp."""
    ramped = await builds.route("ramp", "v2", "100")
    assert (ramped["current"], ramped["ramping"], ramped["ramp_percentage"]) == ("v1", "v2", 100)
    tried, _ = await run_to_end(h, connector)
    assert tried.build_id == "v2"
    unramped = await builds.route("rollback")
    assert (unramped["current"], unramped["ramping"], unramped["previous_ramping"]) == ("v1", None, "v2")


async def _ended_on_v1(h: Harness, connector: str, long_run: WorkflowHandle[Any, Any]) -> RunOutcome:
    """The long run, released once v2 is current, ends on v1 with every record exactly once."""
    old = await bounded(long_run, outcome_of(h.store, long_run))
    assert (old.status, old.build_id) == (RunStatus.PARTIALLY_COMPLETED, "v1")
    assert (old.records_emitted, old.records_durable, old.gaps_opened) == (10, 10, 2)
    # Every task of the long run ran on v1, none failed, and v2's extra step is not in it.
    assert set(await task_builds(long_run)) == {"v1"}
    assert EXTRA not in await activities(long_run)
    assert await versioning(long_run) == (PINNED, "v1")
    # One row per record, each first written by this run, from the one connector process it
    # started (no attempt was retried, nothing replayed elsewhere).
    assert await rows(h, connector) == [(f"a-{i:06d}", long_run.id) for i in range(10)]
    assert len(h.starts(connector)) == 1
    return old


async def _collecting(h: Harness, connector: str) -> bool:
    return len(await rows(h, connector)) == 5


async def _recovery_follows_the_current_build(
    h: Harness, old: RunOutcome, budget: WorkflowHandle[Any, Any]
) -> None:
    """The recovery the v1 run started (a child, ABANDON): its first task inherits the parent's
    pinned build, then it follows the current one, and the recovery run it starts (a child of
    an auto-upgrade parent) inherits nothing: it is pinned to the current build, v2."""
    [wid] = old.recovery_workflow_ids
    recovery = h.client.get_workflow_handle_for(GapRecoveryWorkflow.run, wid)
    started = (await history(recovery))[0]
    assert started.workflow_execution_started_event_attributes.inherited_pinned_version.build_id == "v1"
    await until(lambda: task_builds(recovery), "the recovery's first task")
    await recovery.signal(GapRecoveryWorkflow.run_now)
    result = await bounded(recovery, recovery.result())
    assert result.runs == 1 and result.progress.recovered == 2
    builds = await task_builds(recovery)
    assert builds[0] == "v1" and builds[-1] == "v2", builds
    assert await versioning(recovery) == (AUTO_UPGRADE, "v2")
    [child] = [
        e
        async for e in recovery.fetch_history_events()
        if e.HasField("child_workflow_execution_started_event_attributes")
    ]
    child_run = h.client.get_workflow_handle(
        child.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
    )
    assert await versioning(child_run) == (PINNED, "v2")
    assert (await activities(child_run))[0] == EXTRA
    # The budget, started on v1, answered the recovery on v2 and continued as new there.
    first = await task_builds(h.client.get_workflow_handle(budget.id, run_id=budget.first_execution_run_id))
    assert (first[0], first[-1]) == ("v1", "v2"), first
    latest = h.client.get_workflow_handle(budget.id)
    assert (await latest.describe()).run_id != budget.first_execution_run_id
    assert await versioning(latest) == (AUTO_UPGRADE, "v2")


async def test_the_first_build_made_current_rolls_back_to_the_unversioned_workers(
    harness: Harness, pg_url: str
) -> None:
    """`set-current` says new runs went to unversioned workers before; `rollback` sends them back
    there (the first versioned rollout, undone while the old workers still poll)."""
    h = harness
    builds = Builds(h, pg_url)
    quick = h.scripted([{"records": {"stream": "b", "count": 1}}, {"state": "b"}, {"done": "succeeded"}])
    async with h.worker(), h.worker(deployment=builds.version("v1")):
        first = await builds.route("set-current", "v1")
        assert (first["current"], first["previous_current"]) == ("v1", None)
        back = await builds.route("rollback")
        assert (back["current"], back["previous_current"]) == (None, "v1")
        after, _ = await run_to_end(h, quick)
        assert (after.status, after.build_id) == (RunStatus.SUCCEEDED, None)
