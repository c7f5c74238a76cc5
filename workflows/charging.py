"""Charging a connector's budget after the fact, from either workflow that spends it upstream: a
forward run for what it collected, a walking recovery for what it re-collected beyond its grant."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pdpp_orch.budget import BudgetConfig, Charge, ChargeCall
    from workflows import ids
    from workflows.options import DB_RETRY, SHORT


async def charge_budget(connector: str, run_id: str, units: int, config: BudgetConfig, summary: str) -> None:
    """Charge `units` for run `run_id`, once however often the activity is retried."""
    await workflow.execute_activity(
        "charge_budget",
        ChargeCall(
            connector=connector,
            charge=Charge(request_id=ids.charge_request_id(run_id), units=units, config=config),
        ),
        start_to_close_timeout=SHORT,
        retry_policy=DB_RETRY,
        summary=summary,
    )
