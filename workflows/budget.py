"""ConnectorBudgetWorkflow: one cost budget per connector, as a long-lived entity workflow.

Forward runs and gap recoveries ask it for cost units through Updates and report what they
actually spent. It holds counters and our own request ids only (DESIGN §5).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pdpp_orch.budget import BudgetInput, BudgetState, BudgetStatus, Charge, Grant, GrantRequest
    from pdpp_orch.times import utc


@workflow.defn
class ConnectorBudgetWorkflow:
    """Grants cost units per fixed window; runs until history grows, then continues as new."""

    @workflow.init
    def __init__(self, inp: BudgetInput) -> None:
        # Built in __init__ so updates delivered with the first task find the state ready.
        self._connector = inp.connector
        self._state = inp.state or BudgetState(config=inp.config, window_started=workflow.now())
        self._state.configure(inp.config, workflow.now())
        self._handled = 0

    @workflow.run
    async def run(self, inp: BudgetInput) -> None:
        await workflow.wait_condition(
            lambda: (
                workflow.info().is_continue_as_new_suggested()
                or self._handled >= inp.max_updates_before_continue
            )
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            BudgetInput(
                connector=self._connector,
                config=self._state.config,
                state=self._state,
                max_updates_before_continue=inp.max_updates_before_continue,
            )
        )

    # The handlers are synchronous: each runs to completion before the next, so concurrent
    # requests cannot both see the same remaining units.
    @workflow.update
    def request(self, req: GrantRequest) -> Grant:
        """Grant up to the units wanted; the same request id always gets the same answer."""
        self._handled += 1
        grant = self._state.grant(req, workflow.now())
        self._show(grant)
        return grant

    @workflow.update
    def charge(self, c: Charge) -> Grant:
        """Record units spent outside a grant; idempotent by request id."""
        self._handled += 1
        grant = self._state.charge(c, workflow.now())
        self._show(grant)
        return grant

    def _show(self, g: Grant) -> None:
        """What the web UI shows for this budget: what is left of the window, and until when."""
        units = self._state.config.units
        left = (
            "unlimited"
            if g.remaining is None or units is None
            else f"{g.remaining:,} of {units:,} units left"
        )
        workflow.set_current_details(
            f"**{left}** in this window (until {utc(g.window_ends)})\n\n"
            f"- granted so far: {self._state.granted_total:,} in {self._state.requests_total:,} requests\n"
            f"- charged by forward runs: {self._state.charged_total:,}"
            f" (overspent {self._state.overspent_total:,})\n"
        )

    @workflow.query
    def status(self) -> BudgetStatus:
        """The budget as of the workflow's last task (see BudgetStatus.at): window, spent,
        remaining and totals."""
        return self._state.status(self._connector, workflow.now())
