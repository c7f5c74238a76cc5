"""GapRecoveryWorkflow: executes one retry hint until its gaps are recovered or terminal.

Sleeps on a durable timer until the hint's `not_before`, asks the connector's budget for a
grant, leases that many gaps and runs a recovery run (a child ConnectorRunWorkflow) that is
served exactly them; settles what the run reported; backs off and repeats. A range hint runs
one child per chunk instead. History holds counts and our own ids only; the gaps' upstream ids
stay in the ledger.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from pdpp_orch import policy as rules
    from pdpp_orch import walkcost
    from pdpp_orch.budget import BudgetCall, BudgetConfig, Grant, GrantRequest
    from pdpp_orch.models import (
        HintProgress,
        HintRef,
        LeaseInput,
        Mode,
        RecoveryEnd,
        RecoveryEnding,
        RecoveryInput,
        RecoveryPolicy,
        RecoveryResult,
        RecoveryState,
        RecoveryStep,
        RunInput,
        RunOutcome,
        RunStatus,
        SettleInput,
        StreamScope,
        TimeRange,
        Trigger,
    )
    from workflows import ids, ui
    from workflows.charging import charge_budget
    from workflows.connector_run import ConnectorRunWorkflow
    from workflows.endings import RUN_FAILED
    from workflows.options import DB_RETRY, SHORT
    from workflows.patches import RECOVERY_FATE, WALK_CHARGED, WHOLE_HINT_RUN_IDS

LEASE_WAIT = timedelta(minutes=1)


@workflow.defn
class GapRecoveryWorkflow:
    """One retry hint, executed within the connector's budget."""

    def __init__(self) -> None:
        self._now = False
        self._state = RecoveryState(step=RecoveryStep.WAITING_NOT_BEFORE)

    @workflow.signal
    def run_now(self) -> None:
        """Bring a pending wait forward (`pdpp-orch recover now NAME`); the budget still rules."""
        self._now = True

    @workflow.query
    def phase(self) -> str:
        """What it is doing, in words (`pdpp-orch recover show`)."""
        return ui.recovery_phase(self._state)

    @workflow.query
    def state(self) -> RecoveryState:
        """What it is doing: the step, until when it waits, the recovery run in progress."""
        return self._state

    @workflow.query
    def progress(self) -> HintProgress:
        return self._state.progress

    @workflow.run
    async def run(self, inp: RecoveryInput) -> RecoveryResult:
        try:
            return await self._recover(inp)
        except asyncio.CancelledError:
            said = workflow.cancellation_reason()
            if said is not None and workflow.patched(RECOVERY_FATE):
                end = await self._record_end(inp, RecoveryEnding.CANCELLED, said)
                workflow.set_current_details(ui.recovery_end_details(inp.connector, end))
            raise

    async def _recover(self, inp: RecoveryInput) -> RecoveryResult:
        hint = inp.hint
        self._state.progress = HintProgress(pending=hint.gap_count)  # until the ledger is first read
        if inp.rounds == 0:
            await self._wait(hint.not_before - workflow.now(), RecoveryStep.WAITING_NOT_BEFORE)
        policy: RecoveryPolicy = await workflow.execute_activity(
            "recovery_policy",
            inp.connector,
            result_type=RecoveryPolicy,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
        )
        chunks = hint.scope.time_ranges or []
        passes = 0
        while True:
            # A hint of thousands of gaps under a tight budget loops for days; the counters in
            # `inp` carry over, so the history stays bounded whether or not the server asks.
            if workflow.info().is_continue_as_new_suggested() or passes >= inp.continue_as_new_after:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp)
            passes += 1
            if await self._pass(inp, policy, chunks):
                break
        self._state = RecoveryState(step=RecoveryStep.DONE, round=inp.rounds, progress=self._state.progress)
        p = self._state.progress
        if workflow.patched(RECOVERY_FATE):
            ending = RecoveryEnding.DONE if p.open == 0 else RecoveryEnding.GAVE_UP
            end = await self._record_end(inp, ending, None)
            workflow.set_current_details(ui.recovery_end_details(inp.connector, end))
        else:
            workflow.set_current_details(
                f"**done** · {p.recovered:,} recovered, {p.terminal:,} terminal, "
                f"{p.open:,} open · {inp.runs} recovery run(s), {inp.budget_waits} budget wait(s)"
            )
        return RecoveryResult(
            hint_id=hint.hint_id, runs=inp.runs, rounds=inp.rounds, budget_waits=inp.budget_waits, progress=p
        )

    async def _record_end(self, inp: RecoveryInput, ending: RecoveryEnding, said: str | None) -> RecoveryEnd:
        """How it ended, into PostgreSQL (the present reads it there)."""
        end = RecoveryEnd(
            connector=inp.connector,
            hint_id=inp.hint.hint_id,
            workflow_id=workflow.info().workflow_id,
            ending=ending,
            said=said[:200] if said else said,
            at=workflow.now(),
            progress=self._state.progress,
            runs=inp.runs,
        )
        await workflow.execute_activity(
            "record_recovery_end",
            end,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
            summary=f"record: {ending.value}",
        )
        return end

    async def _pass(self, inp: RecoveryInput, policy: RecoveryPolicy, chunks: list[TimeRange]) -> bool:
        """One pass: read where the gaps stand, ask the budget, lease, run, settle, back off.
        True when the hint is done (or its range keeps failing)."""
        self._state.progress = await workflow.execute_activity(
            "gap_progress",
            HintRef(connector=inp.connector, hint_id=inp.hint.hint_id),
            result_type=HintProgress,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
        )
        if (chunks and inp.chunks_done >= len(chunks)) or (not chunks and self._state.progress.open == 0):
            return True
        items = 1 if chunks else min(self._state.progress.open, inp.batch_size)
        walk = not chunks and walkcost.walks(inp.hint) and workflow.patched(WALK_CHARGED)
        units, least = self._wanted(inp, policy, items, walk)
        grant = await self._grant(inp, policy, units, least)
        if grant.granted < least:
            inp.budget_waits += 1
            wait = (grant.retry_at or workflow.now() + LEASE_WAIT) - workflow.now()
            await self._wait(wait, RecoveryStep.WAITING_BUDGET, least)
            return False
        inp.rounds += 1
        lease_id = None
        if not chunks:
            lease_id = ids.lease_id(inp.hint.hint_id, inp.rounds)
            limit = items if walk else grant.granted // policy.cost_per_item
            if await self._lease(inp, policy, lease_id, limit) == 0:
                await self._wait(LEASE_WAIT, RecoveryStep.WAITING_LEASES)
                return False
        outcome = await self._recovery_run(inp, lease_id, chunks[inp.chunks_done] if chunks else None)
        inp.runs += 1
        if walk and outcome is not None and policy.budget_units is not None:
            await self._charge_overspend(inp, policy, outcome, grant.granted)
        said = workflow.cancellation_reason()
        if said is not None and workflow.patched(RECOVERY_FATE):
            # Cancelled while its run went on: the run was cancelled with it; what it was
            # leased comes back when the lease expires.
            raise asyncio.CancelledError(said)
        clean = outcome is not None and outcome.status is RunStatus.SUCCEEDED
        before = self._state.progress.recovered
        if chunks and clean:
            inp.chunks_done += 1
        run_id = outcome.run_id if outcome else ids.lease_id(inp.hint.hint_id, inp.rounds)
        await self._settle(
            inp, policy, lease_id, run_id, clean, bool(chunks) and inp.chunks_done >= len(chunks)
        )
        p = self._state.progress
        progressed = p.recovered > before or (bool(chunks) and clean)
        inp.idle_rounds = 0 if progressed else inp.idle_rounds + 1
        if not progressed and p.open:
            backoff = max(rules.idle_backoff(inp.idle_rounds), timedelta(seconds=p.wait_seconds))
            await self._wait(backoff, RecoveryStep.BACKING_OFF)
        # A range that keeps failing stays open for the next forward run to see.
        return bool(chunks) and not clean and inp.idle_rounds >= policy.max_attempts

    async def _wait(self, delay: timedelta, step: RecoveryStep, wanted: int | None = None) -> None:
        """A durable timer that `run_now` can cut short (`wanted`: the units a budget wait is for)."""
        if delay <= timedelta(0):
            return
        until: datetime = workflow.now() + delay
        self._state = RecoveryState(
            step=step, until=until, round=self._state.round, progress=self._state.progress, wanted=wanted
        )
        workflow.set_current_details(ui.recovery_wait_details(self._state))
        try:
            await workflow.wait_condition(
                lambda: self._now, timeout=delay, timeout_summary=ui.recovery_wait_why(self._state)
            )
        except TimeoutError:
            pass
        self._now = False
        self._state = RecoveryState(
            step=RecoveryStep.ASKING_BUDGET, round=self._state.round, progress=self._state.progress
        )

    @staticmethod
    def _wanted(inp: RecoveryInput, policy: RecoveryPolicy, items: int, walk: bool) -> tuple[int, int]:
        """The units to ask the budget for and the fewest worth having: a batch of items (one
        is worth having), a range chunk, or a walk's whole estimate (all or nothing)."""
        if walk:
            units = walkcost.walk_grant(inp.hint.estimated_cost, policy.cost_per_item, policy.budget_units)
            return units, units
        return policy.cost_per_item * items, policy.cost_per_item

    async def _grant(self, inp: RecoveryInput, policy: RecoveryPolicy, cost: int, least: int) -> Grant:
        self._state.step = RecoveryStep.ASKING_BUDGET
        info = workflow.info()
        request_id = ids.grant_request_id(
            info.workflow_id, info.first_execution_run_id, inp.rounds, inp.budget_waits
        )
        config = BudgetConfig(units=policy.budget_units, window_seconds=policy.budget_window_seconds)
        grant: Grant = await workflow.execute_activity(
            "request_budget",
            BudgetCall(
                connector=inp.connector,
                request=GrantRequest(request_id=request_id, units=cost, min_units=least, config=config),
            ),
            result_type=Grant,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
        )
        return grant

    async def _charge_overspend(
        self, inp: RecoveryInput, policy: RecoveryPolicy, outcome: RunOutcome, granted: int
    ) -> None:
        """A walk that re-collected more than its grant is charged the rest, as a forward run is
        charged (a recovery run charges nothing of its own)."""
        cost = policy.cost_per_item
        over = walkcost.walk_overspend(outcome.records_emitted, outcome.gaps_opened, cost, granted)
        if over == 0:
            return
        config = BudgetConfig(units=policy.budget_units, window_seconds=policy.budget_window_seconds)
        await charge_budget(
            inp.connector, outcome.run_id, over, config, "charge what the walk re-collected beyond its grant"
        )

    async def _lease(self, inp: RecoveryInput, policy: RecoveryPolicy, lease_id: str, limit: int) -> int:
        leased: int = await workflow.execute_activity(
            "lease_gaps",
            LeaseInput(
                connector=inp.connector,
                hint_id=inp.hint.hint_id,
                lease_id=lease_id,
                limit=limit,
                max_attempts=max(policy.max_attempts, policy.max_no_progress),
                lease_seconds=policy.lease_seconds,
            ),
            result_type=int,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
        )
        return leased

    async def _settle(
        self,
        inp: RecoveryInput,
        policy: RecoveryPolicy,
        lease_id: str | None,
        run_id: str,
        clean: bool,
        close_all: bool,
    ) -> None:
        self._state.progress = await workflow.execute_activity(
            "settle_gaps",
            SettleInput(
                connector=inp.connector,
                hint_id=inp.hint.hint_id,
                lease_id=lease_id,
                run_id=run_id,
                run_clean=clean,
                max_attempts=policy.max_attempts,
                max_no_progress=policy.max_no_progress,
                close_all=close_all,
            ),
            result_type=HintProgress,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
        )

    async def _recovery_run(
        self, inp: RecoveryInput, lease_id: str | None, chunk: TimeRange | None
    ) -> RunOutcome | None:
        hint = inp.hint
        streams = []
        if hint.scope.stream is not None:
            streams = [StreamScope(name=hint.scope.stream, time_range=chunk)]
        if workflow.patched(WHOLE_HINT_RUN_IDS):
            first = workflow.info().first_execution_run_id
            run_id = ids.recovery_run_id(inp.connector, hint.hint_id, first, inp.rounds)
        else:
            run_id = ids.legacy_recovery_run_id(inp.connector, hint.hint_id, inp.rounds)
        self._state = RecoveryState(
            step=RecoveryStep.RECOVERING, run_id=run_id, round=inp.rounds, progress=self._state.progress
        )
        workflow.set_current_details(ui.recovery_run_details(inp.connector, self._state))
        run = RunInput(
            connector=inp.connector,
            run_id=run_id,
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
                static_summary=ui.recovery_run_summary(inp.connector, hint.reason, inp.rounds),
            )
            return outcome
        except ChildWorkflowError as e:
            # A failed run's workflow ends Failed with its outcome in the failure's details; one
            # that failed without an outcome (a reused run id) settles as not clean.
            cause = e.cause
            if isinstance(cause, ApplicationError) and cause.type == RUN_FAILED and cause.details:
                return RunOutcome.model_validate(cause.details[0])
            return None
