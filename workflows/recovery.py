"""GapRecoveryWorkflow: executes one retry hint until its gaps are recovered or terminal.

Sleeps on a durable timer until the hint's `not_before`, asks the connector's budget for a
grant, leases that many gaps and runs a recovery run (a child ConnectorRunWorkflow) that is
served exactly them; settles what the run reported; backs off and repeats. A range hint runs
one child per chunk instead. History holds counts and our own ids only; the gaps' upstream ids
stay in the ledger.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from pdpp_orch.budget import BudgetCall, BudgetConfig, Grant, GrantRequest
    from pdpp_orch.models import (
        HintProgress,
        HintRef,
        LeaseInput,
        Mode,
        RecoveryInput,
        RecoveryPolicy,
        RecoveryResult,
        RunInput,
        RunOutcome,
        RunStatus,
        SettleInput,
        StreamScope,
        TimeRange,
        Trigger,
    )
    from workflows.connector_run import DB_RETRY, SHORT, ConnectorRunWorkflow

# Without an upstream signal, a round that recovered nothing waits this long, doubling, capped.
IDLE_BACKOFF = timedelta(minutes=5)
IDLE_BACKOFF_CAP = timedelta(hours=6)
LEASE_WAIT = timedelta(minutes=1)


def recovery_workflow_id(hint_id: str) -> str:
    return f"recovery-{hint_id}"


@workflow.defn
class GapRecoveryWorkflow:
    """One retry hint, executed within the connector's budget."""

    def __init__(self) -> None:
        self._now = False
        self._phase = "waiting"
        self._progress = HintProgress()

    @workflow.signal
    def run_now(self) -> None:
        """Bring a pending wait forward (`pdpp-orch recover NAME --now`); the budget still rules."""
        self._now = True

    @workflow.query
    def phase(self) -> str:
        return self._phase

    @workflow.query
    def progress(self) -> HintProgress:
        return self._progress

    @workflow.run
    async def run(self, inp: RecoveryInput) -> RecoveryResult:
        hint = inp.hint
        self._progress = HintProgress(pending=hint.gap_count)  # until the ledger is first read
        if inp.rounds == 0:
            await self._wait(
                hint.not_before - workflow.now(), f"until not_before {hint.not_before:%Y-%m-%d %H:%M}Z"
            )
        policy: RecoveryPolicy = await workflow.execute_activity(
            "recovery_policy",
            inp.connector,
            result_type=RecoveryPolicy,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
        )
        ref = HintRef(connector=inp.connector, hint_id=hint.hint_id)
        chunks = hint.scope.time_ranges or []
        passes = 0
        while True:
            # A hint of thousands of gaps under a tight budget loops for days; the counters in
            # `inp` carry over, so the history stays bounded whether or not the server asks.
            if workflow.info().is_continue_as_new_suggested() or passes >= inp.continue_as_new_after:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp)
            passes += 1
            self._progress = await workflow.execute_activity(
                "gap_progress",
                ref,
                result_type=HintProgress,
                start_to_close_timeout=SHORT,
                retry_policy=DB_RETRY,
            )
            if (chunks and inp.chunks_done >= len(chunks)) or (not chunks and self._progress.open == 0):
                break
            items = 1 if chunks else min(self._progress.open, inp.batch_size)
            cost = policy.cost_per_item * items
            grant = await self._grant(inp, policy, cost)
            if grant.granted < policy.cost_per_item:
                inp.budget_waits += 1
                wait = (grant.retry_at or workflow.now() + LEASE_WAIT) - workflow.now()
                await self._wait(wait, "for the budget's next window")
                continue
            inp.rounds += 1
            lease_id = None
            if not chunks:
                lease_id = f"{hint.hint_id}-r{inp.rounds}"
                leased = await workflow.execute_activity(
                    "lease_gaps",
                    LeaseInput(
                        connector=inp.connector,
                        hint_id=hint.hint_id,
                        lease_id=lease_id,
                        limit=grant.granted // policy.cost_per_item,
                        max_attempts=max(policy.max_attempts, policy.max_no_progress),
                        lease_seconds=policy.lease_seconds,
                    ),
                    result_type=int,
                    start_to_close_timeout=SHORT,
                    retry_policy=DB_RETRY,
                )
                if leased == 0:
                    await self._wait(LEASE_WAIT, "for leased gaps to come back")
                    continue
            chunk = chunks[inp.chunks_done] if chunks else None
            outcome = await self._recovery_run(inp, lease_id, chunk)
            inp.runs += 1
            clean = outcome is not None and outcome.status is RunStatus.SUCCEEDED
            before = self._progress.recovered
            if chunks and clean:
                inp.chunks_done += 1
            run_id = outcome.run_id if outcome else f"{hint.hint_id}-r{inp.rounds}"
            self._progress = await workflow.execute_activity(
                "settle_gaps",
                SettleInput(
                    connector=inp.connector,
                    hint_id=hint.hint_id,
                    lease_id=lease_id,
                    run_id=run_id,
                    run_clean=clean,
                    max_attempts=policy.max_attempts,
                    max_no_progress=policy.max_no_progress,
                    close_all=bool(chunks) and inp.chunks_done >= len(chunks),
                ),
                result_type=HintProgress,
                start_to_close_timeout=SHORT,
                retry_policy=DB_RETRY,
            )
            progressed = self._progress.recovered > before or (bool(chunks) and clean)
            inp.idle_rounds = 0 if progressed else inp.idle_rounds + 1
            if not progressed and self._progress.open:
                backoff = min(IDLE_BACKOFF * 2 ** (inp.idle_rounds - 1), IDLE_BACKOFF_CAP)
                await self._wait(max(backoff, timedelta(seconds=self._progress.wait_seconds)), "backing off")
            if chunks and not clean and inp.idle_rounds >= policy.max_attempts:
                break  # the range keeps failing: its gap stays open for the next forward run to see
        self._phase = "done"
        workflow.set_current_details(
            f"**done** · {self._progress.recovered:,} recovered, {self._progress.terminal:,} terminal, "
            f"{self._progress.open:,} open · {inp.runs} recovery run(s), {inp.budget_waits} budget wait(s)"
        )
        return RecoveryResult(
            hint_id=hint.hint_id,
            runs=inp.runs,
            rounds=inp.rounds,
            budget_waits=inp.budget_waits,
            progress=self._progress,
        )

    async def _wait(self, delay: timedelta, why: str) -> None:
        """A durable timer that `run_now` can cut short."""
        if delay <= timedelta(0):
            return
        self._phase = f"waiting {why}"
        until = workflow.now() + delay
        p = self._progress
        workflow.set_current_details(
            f"**waiting {why}** — until {until:%Y-%m-%d %H:%M} UTC\n\n"
            f"- gaps: {p.open:,} open, {p.recovered:,} recovered, {p.terminal:,} terminal\n"
        )
        try:
            await workflow.wait_condition(lambda: self._now, timeout=delay, timeout_summary=why)
        except TimeoutError:
            pass
        self._now = False
        self._phase = "recovering"

    async def _grant(self, inp: RecoveryInput, policy: RecoveryPolicy, cost: int) -> Grant:
        self._phase = "asking the budget"
        grant: Grant = await workflow.execute_activity(
            "request_budget",
            BudgetCall(
                connector=inp.connector,
                request=GrantRequest(
                    # Stable per round, so a retried activity gets the same grant, not a second one.
                    request_id=f"{workflow.info().workflow_id}/{inp.rounds}/{inp.budget_waits}",
                    units=cost,
                    min_units=policy.cost_per_item,
                    config=BudgetConfig(
                        units=policy.budget_units, window_seconds=policy.budget_window_seconds
                    ),
                ),
            ),
            result_type=Grant,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
        )
        return grant

    async def _recovery_run(
        self, inp: RecoveryInput, lease_id: str | None, chunk: TimeRange | None
    ) -> RunOutcome | None:
        hint = inp.hint
        self._phase = f"recovery run {inp.rounds}"
        streams = []
        if hint.scope.stream is not None:
            streams = [StreamScope(name=hint.scope.stream, time_range=chunk)]
        run = RunInput(
            connector=inp.connector,
            run_id=f"{inp.connector}-recovery-{hint.hint_id[5:13]}-{inp.rounds}",
            trigger=Trigger.RECOVERY,
            mode=Mode.RECOVERY,
            streams=streams,
            heartbeat_timeout_seconds=inp.heartbeat_timeout_seconds,
            hint_id=hint.hint_id,
            lease_id=lease_id,
        )
        try:
            outcome: RunOutcome = await workflow.execute_child_workflow(
                ConnectorRunWorkflow.run,
                run,
                id=run.run_id,
                static_summary=f"{inp.connector} · recovery · {hint.reason} · round {inp.rounds}",
            )
            return outcome
        except ChildWorkflowError:
            return None  # the run itself failed (configuration, database): settle as not clean
