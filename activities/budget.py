"""Activities that talk to a connector's ConnectorBudgetWorkflow."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from pdpp_orch import telemetry
from pdpp_orch.budget import BudgetCall, BudgetConfig, BudgetInput, ChargeCall, Grant
from workflows.budget import ConnectorBudgetWorkflow
from workflows.ids import budget_workflow_id

T = TypeVar("T")
BudgetHandle = WorkflowHandle[ConnectorBudgetWorkflow, None]


class BudgetActivities:
    """Budget grants and charges through Updates; starts a connector's budget workflow on
    `task_queue` the first time it is needed (or again after it was terminated)."""

    def __init__(self, client: Client, task_queue: str):
        self.client = client
        self.task_queue = task_queue

    @activity.defn
    async def request_budget(self, req: BudgetCall) -> Grant:
        """Ask the connector's budget for units. Retries of this activity reuse the request id,
        so they get the first answer back instead of spending again."""
        grant = await self._update(
            req.connector,
            req.request.config,
            lambda h: h.execute_update(ConnectorBudgetWorkflow.request, req.request),
        )
        telemetry.budget_units.add(grant.granted, {"connector": req.connector, "kind": "granted"})
        return grant

    @activity.defn
    async def charge_budget(self, req: ChargeCall) -> Grant:
        """Report units a run spent; idempotent by the charge's request id."""
        grant = await self._update(
            req.connector,
            req.charge.config,
            lambda h: h.execute_update(ConnectorBudgetWorkflow.charge, req.charge),
        )
        telemetry.budget_units.add(req.charge.units, {"connector": req.connector, "kind": "charged"})
        return grant

    async def _update(
        self, connector: str, config: BudgetConfig, call: Callable[[BudgetHandle], Awaitable[T]]
    ) -> T:
        # Update-with-start would do this in one call, but the time-skipping test server does
        # not support it. Trying the running workflow first keeps the common case one RPC.
        handle: BudgetHandle = self.client.get_workflow_handle_for(
            ConnectorBudgetWorkflow.run, budget_workflow_id(connector)
        )
        try:
            return await call(handle)
        except RPCError as e:
            # NOT_FOUND: never started, or closed (terminated, or caught between runs).
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
        # USE_EXISTING: when two activities race to start it, both end up on the same workflow.
        handle = await self.client.start_workflow(
            ConnectorBudgetWorkflow.run,
            BudgetInput(connector=connector, config=config),
            id=budget_workflow_id(connector),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"cost budget of {connector}",
        )
        # A handle without a run id follows the workflow across continue-as-new.
        return await call(self.client.get_workflow_handle_for(ConnectorBudgetWorkflow.run, handle.id))
