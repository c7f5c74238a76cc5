"""ConnectorRunWorkflow: one honest run of one connector.

Deterministic: it sees counts, sizes and our own row ids, never records or cursors. The
outcome is derived here by the pure function in pdpp_orch.outcome. `run` reads as its steps:
claim the connector, prepare, collect, charge the budget, commit, plan retries, start the
recoveries, record the outcome.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from pdpp_orch import search_attributes as sa
    from pdpp_orch.budget import BudgetConfig
    from pdpp_orch.models import (
        AssistanceNotice,
        ClaimInput,
        ClaimResult,
        CollectFacts,
        CommitInput,
        CommitResult,
        FinishInput,
        InteractionClosed,
        InteractionRequest,
        LiveProgress,
        LiveStatus,
        Mode,
        PlacementWait,
        PlanInput,
        PreparedRun,
        RecoveryInput,
        RespondInput,
        RespondResult,
        RetryHint,
        RetryPlan,
        RunError,
        RunFacts,
        RunInput,
        RunOutcome,
        RunProgress,
    )
    from pdpp_orch.outcome import derive_outcome, failed_retryably
    from workflows import collecting, ids, owner, ui
    from workflows.charging import charge_budget
    from workflows.endings import describe_error, end, settled, whole
    from workflows.options import COMMIT_TIMEOUT, DB_RETRY, SHORT
    from workflows.patches import LATE_CANCEL, ONE_RUN_PER_CONNECTOR, TEMPORAL_STATUS

# Polls for the other run's end: soon at first, then every minute.
CLAIM_FIRST_WAIT = timedelta(seconds=5)
CLAIM_MAX_WAIT = timedelta(minutes=1)


@workflow.defn
class ConnectorRunWorkflow:
    """Prepare, collect, commit what is proven, derive and record the outcome."""

    @workflow.init
    def __init__(self, inp: RunInput) -> None:
        self._phase = "starting"
        # A Schedule starts every run with the same input; its workflow id (the schedule's id
        # plus the scheduled time) is the run id.
        self._run_id = inp.run_id or workflow.info().workflow_id
        self._connector = inp.connector
        self._live = LiveProgress()
        self._waiting: dict[str, InteractionRequest] = {}
        self._assistance: dict[str, AssistanceNotice] = {}
        self._status: str | None = None
        self._build = ids.build_id(workflow.info().get_current_deployment_version())
        self._placement: PlacementWait | None = None

    @workflow.query
    def phase(self) -> str:
        return self._phase

    @workflow.query
    def progress(self) -> RunProgress:
        """Live progress: counts per stream, checkpoints, and what the run waits on."""
        return RunProgress(
            run_id=self._run_id,
            connector=self._connector,
            phase=self._phase,
            live=self._live,
            waiting=list(self._waiting.values()),
            assistance=list(self._assistance.values()),
            status=self._status,
            build_id=self._build,
            placement=self._placement,
        )

    @workflow.signal
    def report_progress(self, live: LiveProgress) -> None:
        """From the collect activity, as it starts and then every few seconds to a minute."""
        self._live = live
        if self._placement is not None:  # a worker of the connector's queue took it
            self._phase, self._placement = "collecting", None
        if not self._waiting:
            self._show_live()

    def _show_live(self) -> None:
        asks = ui.assistance_details(self._run_id, list(self._assistance.values()))
        workflow.set_current_details(ui.live_details(self._live) + asks + ui.build_line(self._build))

    @workflow.signal
    def interaction_requested(self, req: InteractionRequest) -> None:
        """The connector waits on its owner (the prompt itself stays in PostgreSQL)."""
        self._waiting[req.request_id] = req
        self._phase = "waiting on the owner"
        workflow.upsert_search_attributes([sa.RUN_STATUS.value_set(LiveStatus.WAITING_ON_OWNER.value)])
        workflow.set_current_details(ui.waiting_details(self._run_id, req.kind, req.expires_at))

    @workflow.signal
    def assistance_changed(self, notice: AssistanceNotice) -> None:
        """The connector opened or ended a notice to its owner (the message stays in
        PostgreSQL); the run goes on either way."""
        if notice.status == "open":
            self._assistance[notice.assistance_id] = notice
        else:
            self._assistance.pop(notice.assistance_id, None)
        if not self._waiting and self._phase == "collecting":
            self._show_live()

    @workflow.signal
    def interaction_closed(self, closed: InteractionClosed) -> None:
        self._waiting.pop(closed.request_id, None)
        if not self._waiting and self._phase == "waiting on the owner":
            self._phase = "collecting"
            workflow.upsert_search_attributes([sa.RUN_STATUS.value_set(LiveStatus.RUNNING.value)])
            self._show_live()

    @workflow.update
    def respond(self, req: RespondInput) -> RespondResult:
        """`pdpp-orch respond`: name the request being answered. The answer's data goes to
        PostgreSQL, never through here."""
        pending = owner.answered(self._waiting, req.request_id, self._run_id, self._phase)
        return RespondResult(request_id=pending.request_id, kind=pending.kind, expires_at=pending.expires_at)

    @respond.validator
    def _validate_respond(self, req: RespondInput) -> None:
        owner.answered(self._waiting, req.request_id, self._run_id, self._phase)

    @workflow.run
    async def run(self, inp: RunInput) -> RunOutcome:
        inp.run_id = self._run_id
        started = workflow.now()
        workflow.upsert_search_attributes(
            [
                sa.CONNECTOR.value_set(inp.connector),
                sa.TRIGGER.value_set(inp.trigger.value),
                sa.RUN_STATUS.value_set(LiveStatus.RUNNING.value),
            ]
        )
        prepared, facts, error = await self._collection(inp)
        if prepared is not None and prepared.budget_units is not None and inp.mode is Mode.FORWARD:
            await settled(self._charge(inp, prepared, facts), lambda: None)  # a budget left uncharged
        # The point of no return: a cancel requested until now makes the run `cancelled`, and
        # nothing commits; once checkpoints begin to commit, the run finishes honestly.
        cancelled = workflow.cancellation_reason() is not None
        facts.cancelled = cancelled
        self._waiting.clear()
        self._assistance.clear()
        self._live = self._live.model_copy(
            update={
                "records_emitted": facts.records_emitted,
                "records_durable": facts.records_durable,
                "records_rejected": facts.records_rejected,
            }
        )
        commit, why = await settled(self._commit(inp, facts), CommitResult)
        error = error or why
        failed = failed_retryably(facts, commit, cancelled, error)
        plan, why = await settled(self._plan(inp, facts, commit, failed), RetryPlan)
        error = error or why
        outcome = derive_outcome(
            RunFacts(
                input=inp,
                collect=facts,
                commit=commit,
                plan=plan,
                started_at=started,
                finished_at=workflow.now(),
                cancelled=cancelled,
                error=error,
            )
        )
        if inp.mode is Mode.FORWARD and inp.recover:
            outcome.recovery_workflow_ids = [
                await whole(self._start_recovery(inp, h)) for h in outcome.retry_hints
            ]
        outcome.cancel_too_late = not cancelled and workflow.cancellation_reason() is not None
        outcome.build_id = self._build
        await whole(self._record(outcome, facts))
        if (
            not cancelled
            and not outcome.cancel_too_late
            and workflow.cancellation_reason() is not None
            and workflow.patched(LATE_CANCEL)
        ):
            await whole(self._note_cancel_too_late(outcome))
        if workflow.patched(TEMPORAL_STATUS):
            end(outcome)
        return outcome

    async def _collection(self, inp: RunInput) -> tuple[PreparedRun | None, CollectFacts, RunError | None]:
        """Claim the connector, prepare and collect: what came of it, or of a cancel or a
        configuration error on the way."""
        prepared = None
        try:
            if (
                inp.mode is Mode.FORWARD
                and not inp.allow_concurrent
                and workflow.patched(ONE_RUN_PER_CONNECTOR)
            ):
                await self._claim_connector(inp)
            prepared = await self._prepare(inp)
            facts, error = await self._collect(inp, prepared)
            return prepared, facts, error
        except (ActivityError, asyncio.CancelledError) as e:
            if is_cancelled_exception(e):
                return prepared, CollectFacts(cancelled=True), None
            cause = e.cause if isinstance(e, ActivityError) else None
            if isinstance(cause, ApplicationError) and cause.type == "ConfigError":
                return prepared, CollectFacts(), describe_error(cause)
            raise

    async def _claim_connector(self, inp: RunInput) -> None:
        """Wait, on a durable timer, while another forward run of the connector is going
        (started by hand while a scheduled one runs, or the other way round)."""
        wait = CLAIM_FIRST_WAIT
        while True:
            claim: ClaimResult = await workflow.execute_activity(
                "claim_connector",
                ClaimInput(connector=inp.connector, run_id=inp.run_id),
                result_type=ClaimResult,
                start_to_close_timeout=SHORT,
                retry_policy=DB_RETRY,
                summary="one run per connector",
            )
            if claim.holder is None:
                return
            self._phase = f"waiting for run {claim.holder}"
            workflow.set_current_details(ui.claim_wait_details(claim.holder, inp.connector))
            await workflow.sleep(wait, summary=f"wait for {claim.holder}")
            wait = min(wait * 2, CLAIM_MAX_WAIT)

    async def _prepare(self, inp: RunInput) -> PreparedRun:
        self._phase = "preparing"
        prepared: PreparedRun = await workflow.execute_activity(
            "prepare_run",
            inp,
            result_type=PreparedRun,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
            summary="validate manifest, open run",
        )
        workflow.set_current_details(
            f"collecting {len(prepared.streams)} stream(s): {', '.join(prepared.streams)}"
        )
        return prepared

    async def _collect(self, inp: RunInput, prepared: PreparedRun) -> tuple[CollectFacts, RunError | None]:
        """The facts of the collect activity, and the error that ended collection early, if any
        (then the facts are what it saved)."""
        where = self._placement = collecting.placement(prepared, workflow.now())
        self._phase = f"waiting for a worker on task queue {where.task_queue}" if where else "collecting"
        if where is not None:
            workflow.set_current_details(ui.placement_details(inp.connector, where))
        try:
            return await collecting.collect(inp, where), None
        except (ActivityError, CancelledError) as e:
            self._waiting.clear()
            self._placement = None
            cause = e.cause if isinstance(e, ActivityError) else e
            limit = inp.heartbeat_timeout_seconds
            unplaced = collecting.unplaced(cause, where)
            error = None if is_cancelled_exception(e) else unplaced or describe_error(cause, limit)
        saved, why = await settled(
            workflow.execute_activity(
                "load_facts",
                inp.run_id,
                result_type=CollectFacts,
                start_to_close_timeout=SHORT,
                retry_policy=DB_RETRY,
                summary="load saved facts",
            ),
            lambda: CollectFacts(runtime_error="collect_failed"),
        )
        return saved, error or why

    async def _charge(self, inp: RunInput, prepared: PreparedRun, facts: CollectFacts) -> None:
        """Forward runs spend the same upstream budget as recoveries, charged after the fact."""
        assert prepared.budget_units is not None
        spent = (facts.records_emitted + facts.gaps_opened) * prepared.cost_per_item
        config = BudgetConfig(units=prepared.budget_units, window_seconds=prepared.budget_window_seconds)
        await charge_budget(inp.connector, inp.run_id, spent, config, "charge the budget")

    async def _commit(self, inp: RunInput, facts: CollectFacts) -> CommitResult:
        self._phase = "committing"
        commit: CommitResult = await workflow.execute_activity(
            "commit_checkpoints",
            CommitInput(run=inp, facts=facts),
            result_type=CommitResult,
            start_to_close_timeout=COMMIT_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="commit proven checkpoints",
        )
        return commit

    async def _plan(
        self, inp: RunInput, facts: CollectFacts, commit: CommitResult, failed: bool
    ) -> RetryPlan:
        self._phase = "planning retries"
        plan: RetryPlan = await workflow.execute_activity(
            "plan_retries",
            PlanInput(run=inp, facts=facts, commit=commit, run_failed_retryably=failed),
            result_type=RetryPlan,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
            summary="plan retry hints",
        )
        return plan

    async def _start_recovery(self, inp: RunInput, hint: RetryHint) -> str:
        """Start the recovery of one hint; it outlives this run (ABANDON)."""
        wid = ids.recovery_workflow_id(hint.hint_id)
        await workflow.start_child_workflow(
            "GapRecoveryWorkflow",
            RecoveryInput(
                connector=inp.connector,
                hint=hint,
                found_run_id=inp.run_id,
                heartbeat_timeout_seconds=inp.heartbeat_timeout_seconds,
            ),
            id=wid,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            static_summary=ui.recovery_summary(inp.connector, hint),
        )
        return wid

    async def _record(self, outcome: RunOutcome, facts: CollectFacts) -> None:
        """The outcome into `runs` and the spine, then onto the workflow's search attributes
        and details."""
        self._phase = "recording"
        await workflow.execute_activity(
            "finish_run",
            FinishInput(outcome=outcome, facts=facts),
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
            summary="record outcome",
        )
        workflow.upsert_search_attributes(
            [
                sa.RUN_STATUS.value_set(outcome.status.value),
                sa.NEEDS_RETRY.value_set(outcome.needs_retry),
                sa.RECORDS_DURABLE.value_set(outcome.records_durable),
                sa.GAPS_OPEN.value_set(outcome.gaps_open_total),
            ]
        )
        workflow.set_current_details(ui.outcome_details(outcome, workflow.now()))
        self._live = self._live.at_end(outcome)  # `progress` of a run that ended: its outcome's
        self._status = outcome.status.value
        self._phase = "done"

    async def _note_cancel_too_late(self, outcome: RunOutcome) -> None:
        """A cancel came while the outcome was being written: it too came too late, and the
        recorded outcome (and the workflow's result and details) say so."""
        outcome.cancel_too_late = True
        await workflow.execute_activity(
            "note_cancel_too_late",
            outcome.run_id,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
            summary="a cancel came too late",
        )
        workflow.set_current_details(ui.outcome_details(outcome, workflow.now()))
