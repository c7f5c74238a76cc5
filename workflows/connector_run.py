"""ConnectorRunWorkflow: one honest run of one connector.

Deterministic: it sees counts, sizes and our own row ids, never records or cursors. The
outcome is derived here by the pure function in pdpp_orch.outcome.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from pdpp_orch import search_attributes as sa
    from pdpp_orch.budget import BudgetConfig, Charge, ChargeCall
    from pdpp_orch.models import (
        ClaimInput,
        ClaimResult,
        CollectFacts,
        CommitInput,
        CommitResult,
        FinishInput,
        InteractionClosed,
        InteractionRequest,
        LiveProgress,
        Mode,
        PlanInput,
        PreparedRun,
        RecoveryInput,
        RespondInput,
        RespondResult,
        RetryHint,
        RetryPlan,
        RunFacts,
        RunInput,
        RunOutcome,
        RunProgress,
    )
    from pdpp_orch.outcome import derive_outcome, failed_retryably

# Added after histories were recorded: runs started before it replay without the claim.
ONE_RUN_PER_CONNECTOR = "one-run-per-connector"
# Polls for the other run's end: soon at first, then every minute.
CLAIM_FIRST_WAIT = timedelta(seconds=5)
CLAIM_MAX_WAIT = timedelta(minutes=1)
# Database activities take well under a second; a worker that died holding one is noticed after this.
SHORT = timedelta(seconds=30)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=20,
    non_retryable_error_types=["ConfigError"],
)
COLLECT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=5,
    non_retryable_error_types=["ConfigError"],
)


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
        self._status: str | None = None

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
            status=self._status,
        )

    @workflow.signal
    def report_progress(self, live: LiveProgress) -> None:
        """From the collect activity, every few seconds to a minute while it runs."""
        self._live = live
        if not self._waiting:
            workflow.set_current_details(_live_details(live))

    @workflow.signal
    def interaction_requested(self, req: InteractionRequest) -> None:
        """The connector waits on its owner (the prompt itself stays in PostgreSQL)."""
        self._waiting[req.request_id] = req
        self._phase = "waiting on the owner"
        workflow.upsert_search_attributes([sa.RUN_STATUS.value_set("waiting_on_owner")])
        workflow.set_current_details(
            f"**waiting on the owner**: {req.kind}, until {req.expires_at:%Y-%m-%d %H:%M} UTC\n\n"
            f"answer with `pdpp-orch respond {self._run_id} --data -`"
        )

    @workflow.signal
    def interaction_closed(self, closed: InteractionClosed) -> None:
        self._waiting.pop(closed.request_id, None)
        if not self._waiting and self._phase == "waiting on the owner":
            self._phase = "collecting"
            workflow.upsert_search_attributes([sa.RUN_STATUS.value_set("running")])
            workflow.set_current_details(_live_details(self._live))

    @workflow.update
    def respond(self, req: RespondInput) -> RespondResult:
        """`pdpp-orch respond`: name the request being answered. The answer's data goes to
        PostgreSQL, never through here."""
        pending = self._waiting[req.request_id] if req.request_id else next(iter(self._waiting.values()))
        return RespondResult(request_id=pending.request_id, kind=pending.kind, expires_at=pending.expires_at)

    @respond.validator
    def _validate_respond(self, req: RespondInput) -> None:
        if not self._waiting:
            raise ValueError(f"run {self._run_id} is not waiting on its owner (phase: {self._phase})")
        if req.request_id and req.request_id not in self._waiting:
            raise ValueError(
                f"run {self._run_id} is not waiting on request {req.request_id!r}"
                f" (it waits on: {', '.join(self._waiting)})"
            )
        if not req.request_id and len(self._waiting) > 1:
            raise ValueError(
                f"run {self._run_id} waits on several requests; name one: {', '.join(self._waiting)}"
            )

    @workflow.run
    async def run(self, inp: RunInput) -> RunOutcome:
        inp.run_id = self._run_id
        started = workflow.now()
        workflow.upsert_search_attributes(
            [
                sa.CONNECTOR.value_set(inp.connector),
                sa.TRIGGER.value_set(inp.trigger.value),
                sa.RUN_STATUS.value_set("running"),
            ]
        )
        if inp.mode is Mode.FORWARD and not inp.allow_concurrent and workflow.patched(ONE_RUN_PER_CONNECTOR):
            await self._claim_connector(inp)
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
        cancelled, error = False, None
        self._phase = "collecting"
        try:
            facts: CollectFacts = await workflow.execute_activity(
                "collect",
                inp,
                result_type=CollectFacts,
                start_to_close_timeout=timedelta(seconds=inp.max_run_seconds + 600),
                heartbeat_timeout=timedelta(seconds=inp.heartbeat_timeout_seconds),
                retry_policy=COLLECT_RETRY,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"run connector {inp.connector}",
            )
        except (ActivityError, CancelledError) as e:
            self._waiting.clear()
            cause = e.cause if isinstance(e, ActivityError) else e
            if isinstance(cause, CancelledError):
                cancelled = True
            else:
                error = _describe(cause)
            facts = await workflow.execute_activity(
                "load_facts",
                inp.run_id,
                result_type=CollectFacts,
                start_to_close_timeout=SHORT,
                retry_policy=DB_RETRY,
                summary="load saved facts",
            )
        if prepared.budget_units is not None and inp.mode is Mode.FORWARD:
            # Forward runs spend the same upstream budget as recoveries, charged after the fact.
            spent = (facts.records_emitted + facts.gaps_opened) * prepared.cost_per_item
            await workflow.execute_activity(
                "charge_budget",
                ChargeCall(
                    connector=inp.connector,
                    charge=Charge(
                        request_id=f"{inp.run_id}/charge",
                        units=spent,
                        config=BudgetConfig(
                            units=prepared.budget_units, window_seconds=prepared.budget_window_seconds
                        ),
                    ),
                ),
                start_to_close_timeout=SHORT,
                retry_policy=DB_RETRY,
                summary="charge the budget",
            )
        self._waiting.clear()
        self._live = self._live.model_copy(
            update={
                "records_emitted": facts.records_emitted,
                "records_durable": facts.records_durable,
                "records_rejected": facts.records_rejected,
            }
        )
        self._phase = "committing"
        commit: CommitResult = await workflow.execute_activity(
            "commit_checkpoints",
            CommitInput(run=inp, facts=facts),
            result_type=CommitResult,
            # Cursors up to max_state_bytes (64 MiB) commit in seconds; a dead worker's commit is
            # retried after this.
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=DB_RETRY,
            summary="commit proven checkpoints",
        )
        self._phase = "planning retries"
        plan: RetryPlan = await workflow.execute_activity(
            "plan_retries",
            PlanInput(
                run=inp,
                facts=facts,
                commit=commit,
                run_failed_retryably=failed_retryably(facts, commit, cancelled, error),
            ),
            result_type=RetryPlan,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
            summary="plan retry hints",
        )
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
            outcome.recovery_workflow_ids = [await self._start_recovery(inp, h) for h in outcome.retry_hints]
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
        workflow.set_current_details(_details(outcome))
        self._status = outcome.status.value
        self._phase = "done"
        return outcome

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
            workflow.set_current_details(
                f"**waiting** for run `{claim.holder}` of {inp.connector} to end (one run per connector at a "
                "time; start with --allow-concurrent to run alongside)"
            )
            await workflow.sleep(wait, summary=f"wait for {claim.holder}")
            wait = min(wait * 2, CLAIM_MAX_WAIT)

    async def _start_recovery(self, inp: RunInput, hint: RetryHint) -> str:
        """Start the recovery of one hint; it outlives this run (ABANDON)."""
        wid = f"recovery-{hint.hint_id}"  # workflows.recovery.recovery_workflow_id (not importable here)
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
            static_summary=f"{inp.connector} · recover {hint.gap_count:,} × {hint.reason}",
        )
        return wid


def _describe(err: BaseException | None) -> str:
    if isinstance(err, ApplicationError):
        return f"{err.type or 'error'}: {err.message}"[:300]
    return type(err).__name__ if err else "unknown error"


def _live_details(p: LiveProgress) -> str:
    rows = "".join(
        f"| {name} | {s.collected:,}{f' of ~{s.total:,}' if s.total else ''} | {s.skipped:,} |"
        f" {'yes' if s.checkpointed else ''} |\n"
        for name, s in sorted(p.streams.items())
    )
    return (
        f"**collecting** (attempt {p.attempt}){f' · now `{p.stream}`' if p.stream else ''}\n\n"
        f"- records durable: {p.records_durable:,} of {p.records_emitted:,} emitted"
        f" ({p.records_rejected:,} rejected)\n"
        f"- skipped so far: {p.skipped:,} · checkpoints proven: {p.checkpoints}\n\n"
        + (f"| stream | collected | skipped | checkpoint |\n|---|---|---|---|\n{rows}" if rows else "")
    )


def _details(o: RunOutcome) -> str:
    skipped = ", ".join(f"{k}: {v:,}" for k, v in o.skipped_by_reason.items()) or "none"
    return (
        f"**{o.status.value}**{' · needs retry' if o.needs_retry else ''}"
        f"{f' · reason `{o.reason}`' if o.reason else ''}\n\n"
        f"- records durable: {o.records_durable:,} of {o.records_emitted:,} emitted"
        f" ({o.records_rejected:,} rejected, {o.buffered_records_dropped} dropped)\n"
        f"- checkpoints: {o.state_streams_committed} of {o.state_streams_staged} committed"
        f" ({o.checkpoint_commit_status.value})\n"
        f"- skipped: {skipped}\n"
        f"- gaps: {o.gaps_opened:,} opened, {o.gaps_open_total:,} open for this connector\n"
        + "".join(
            f"- retry `{h.reason}` ({h.gap_count:,} gaps, cost {h.estimated_cost:,})"
            f" not before {h.not_before:%Y-%m-%d %H:%M} UTC\n"
            for h in o.retry_hints
        )
    )
