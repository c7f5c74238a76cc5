"""Reading a connector's cost budget (its ConnectorBudgetWorkflow's `status` query)."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from pdpp_orch.budget import BudgetStatus
from workflows.budget import ConnectorBudgetWorkflow
from workflows.ids import budget_workflow_id


async def budget_status(client: Client, connector: str, now: datetime | None = None) -> BudgetStatus | None:
    """The connector's budget as of `now` (default: this machine's clock), or None if it never
    had a budget workflow. A worker polling the budget's task queue must be up to answer."""
    handle = client.get_workflow_handle_for(ConnectorBudgetWorkflow.run, budget_workflow_id(connector))
    try:
        status = await handle.query(ConnectorBudgetWorkflow.status)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return status.at(now or datetime.now(UTC))
