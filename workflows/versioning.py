"""The Worker Versioning behaviour of each workflow (docs/operations.md, "Upgrades").

A workflow class that declares a behaviour cannot run on an unversioned worker (the server
rejects its workflow tasks), so the classes in connector_run.py, recovery.py and budget.py
declare none, and a versioned worker (`PDPP_WORKER_BUILD_ID`) registers these subclasses: the
same code under the same workflow names, with the behaviour written down here.

- ResolveConnectorWorkflow (a worker's answer before a run starts, ten seconds at most) is PINNED.
- ConnectorRunWorkflow is PINNED: a run, even a five-hour dump, finishes on the build that
  started it, so a change to its commands needs no `workflow.patched`.
- GapRecoveryWorkflow and ConnectorBudgetWorkflow AUTO_UPGRADE: they sleep for days and live for
  ever, so pinning them would keep an old build alive for as long; they move to the current
  build at their next workflow task and keep the patch discipline (tests/unit/test_replay.py).

What a new execution inherits, as Temporal defines it (checked by tests/e2e/test_versioning.py):
- a recovery started by a pinned run (a child, ABANDON) runs its first workflow task on the
  run's build, then follows the current build like every auto-upgrade workflow;
- a recovery run started by a recovery (an auto-upgrade parent) inherits nothing: it starts on
  the current build (or the ramping one, by its workflow id) and is pinned there;
- continue-as-new of an auto-upgrade workflow inherits nothing either: the next run starts on
  the current build; a budget workflow started by an activity, and a scheduled run, likewise.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from pdpp_orch.budget import BudgetInput
    from pdpp_orch.models import RecoveryInput, RecoveryResult, Resolution, ResolveInput, RunInput, RunOutcome
    from workflows.budget import ConnectorBudgetWorkflow
    from workflows.connector_run import ConnectorRunWorkflow
    from workflows.recovery import GapRecoveryWorkflow
    from workflows.resolve import ResolveConnectorWorkflow


@workflow.defn(name="ConnectorRunWorkflow", versioning_behavior=VersioningBehavior.PINNED)
class PinnedConnectorRunWorkflow(ConnectorRunWorkflow):
    @workflow.run
    async def run(self, inp: RunInput) -> RunOutcome:
        return await super().run(inp)


@workflow.defn(name="GapRecoveryWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AutoUpgradeGapRecoveryWorkflow(GapRecoveryWorkflow):
    @workflow.run
    async def run(self, inp: RecoveryInput) -> RecoveryResult:
        return await super().run(inp)


@workflow.defn(name="ConnectorBudgetWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AutoUpgradeConnectorBudgetWorkflow(ConnectorBudgetWorkflow):
    @workflow.run
    async def run(self, inp: BudgetInput) -> None:
        await super().run(inp)


@workflow.defn(name="ResolveConnectorWorkflow", versioning_behavior=VersioningBehavior.PINNED)
class PinnedResolveConnectorWorkflow(ResolveConnectorWorkflow):
    @workflow.run
    async def run(self, inp: ResolveInput) -> Resolution:
        return await super().run(inp)


UNVERSIONED: list[type] = [
    ConnectorRunWorkflow,
    GapRecoveryWorkflow,
    ConnectorBudgetWorkflow,
    ResolveConnectorWorkflow,
]
VERSIONED: list[type] = [
    PinnedConnectorRunWorkflow,
    AutoUpgradeGapRecoveryWorkflow,
    AutoUpgradeConnectorBudgetWorkflow,
    PinnedResolveConnectorWorkflow,
]
