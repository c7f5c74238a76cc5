"""Activities of ConnectorRunWorkflow around collection: prepare, claim the connector, collect,
load what a failed collect left, and record the outcome."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.collect import Collector, facts_from_resume, fit
from activities.config import RegistryLoader, config_error, entry_and_manifest
from activities.environment import ensure_home
from activities.orphans import reap_orphans
from activities.sandbox import Sandbox
from pdpp_orch import telemetry
from pdpp_orch.manifest import ConfigError
from pdpp_orch.models import (
    MAX_RUN_STREAMS,
    ClaimInput,
    ClaimResult,
    CollectFacts,
    FinishInput,
    PreparedRun,
    RunInput,
    RunStatus,
)
from pdpp_orch.outcome import in_connector_words
from pdpp_orch.store import Store

log = logging.getLogger(__name__)


class RunActivities:
    """I/O for one connector run: registry and manifest, the connector process, PostgreSQL."""

    def __init__(self, store: Store, registry: RegistryLoader, sandbox: Sandbox):
        self.store = store
        self.registry = registry
        self.sandbox = sandbox

    @activity.defn
    async def prepare_run(self, run: RunInput) -> PreparedRun:
        """Validate the connector and its manifest, then open the run's row."""
        names = [s.name for s in run.streams]
        entry, manifest = await entry_and_manifest(self.registry, run.connector, run.registry, names)
        streams = names or [s.name for s in manifest.streams]
        if len(streams) > MAX_RUN_STREAMS:
            raise config_error(
                ConfigError(
                    f"connector {run.connector!r}: a run collects at most {MAX_RUN_STREAMS} streams,"
                    f" not {len(streams)} (name the ones to collect with --stream)"
                )
            )
        if await self.store.runs.finished(run.run_id):
            raise ApplicationError(
                f"run {run.run_id} already has its outcome; a run id is used once",
                type="RunIdReused",
                non_retryable=True,
            )
        await self.store.runs.start(run.run_id, run.connector, run.trigger, run.mode)
        sizes = await self.store.state.committed_sizes(run.connector)
        budget = entry.budget.config()
        return PreparedRun(
            connector=run.connector,
            checkpoint_policy=entry.checkpoint_policy,
            streams=streams,
            committed_state_bytes={k: v for k, v in sizes.items() if k in streams},
            budget_units=budget.units,
            budget_window_seconds=budget.window_seconds,
            cost_per_item=entry.budget.cost_per_item,
            task_queue=entry.task_queue,
            placement_timeout_seconds=entry.placement_timeout_seconds,
        )

    @activity.defn
    async def claim_connector(self, data: ClaimInput) -> ClaimResult:
        """Take the connector's one-forward-run-at-a-time lock, or name the live run holding
        it. A holder whose workflow is gone (terminated, timed out) is released here."""
        holder = await self.store.locks.claim(data.connector, data.run_id)
        if holder is None:
            return ClaimResult()
        try:
            desc = await activity.client().get_workflow_handle(holder).describe()
            alive = desc.status == WorkflowExecutionStatus.RUNNING
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            alive = False
        if alive:
            return ClaimResult(holder=holder)
        log.warning("run %s of %s ended without an outcome; releasing its lock", holder, data.connector)
        await self.store.locks.release(data.connector, holder)
        return ClaimResult(holder=await self.store.locks.claim(data.connector, data.run_id))

    @activity.defn
    async def collect(self, run: RunInput) -> CollectFacts:
        """Run the connector once, resuming from this run's last proven checkpoints."""
        entry, manifest = await entry_and_manifest(self.registry, run.connector, run.registry)
        info = activity.info()
        assert info.workflow_id is not None  # collect is only ever run by ConnectorRunWorkflow
        handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)

        async def notify(signal: str, arg: BaseModel) -> None:
            # Progress is best effort: a signal that cannot be delivered never fails the run.
            try:
                await handle.signal(signal, arg)
            except Exception as e:
                log.warning("run %s: could not signal %s: %s", run.run_id, signal, e)

        # The attempts of earlier executions of collect count too: the fence only goes up.
        attempt = run.attempts_before + info.attempt
        if attempt > 1:  # the attempt before may have died with its worker, here
            await asyncio.to_thread(reap_orphans)

        def cancel_requested() -> bool:
            details = activity.cancellation_details()
            return details is not None and details.cancel_requested

        secrets = (await asyncio.to_thread(self.registry)).secret_files()
        home = await asyncio.to_thread(ensure_home, self.sandbox.data_dir, entry.name)
        collector = Collector(
            self.store, entry, manifest, run, attempt, activity.heartbeat, notify, cancel_requested,
            sandbox=self.sandbox, secrets=secrets, home=home,
        )  # fmt: skip
        with (
            telemetry.context(run_id=run.run_id, connector=run.connector),
            telemetry.span(
                "pdpp.connector", connector=run.connector, run_id=run.run_id, attempt=attempt
            ) as sp,
        ):
            try:
                facts = await collector.run()
            except ConfigError as e:
                raise config_error(e) from e
            sp.set_attributes(
                {
                    "exit_code": facts.exit_code if facts.exit_code is not None else -1,
                    "records_emitted": facts.records_emitted,
                    "records_durable": facts.records_durable,
                    "violations": facts.violation_count,
                }
            )
        log.info(
            "collect finished run=%s connector=%s attempt=%d records_durable=%d violations=%d",
            run.run_id,
            run.connector,
            attempt,
            facts.records_durable,
            facts.violation_count,
        )
        return facts

    @activity.defn
    async def load_facts(self, run_id: str) -> CollectFacts:
        """What is known of a collect that did not return: the facts it saved when cancelled,
        or, after a crash, the counters of its proven checkpoints and its last flush."""
        saved, emitted, durable = await self.store.runs.load_facts(run_id)
        if saved:  # within the facts' bounds, also if an older worker saved them
            return fit(CollectFacts.model_validate_json(saved))
        facts = facts_from_resume(await self.store.state.resume_points(run_id), attempt=0)
        facts.records_emitted = max(facts.records_emitted, emitted)
        facts.records_durable = max(facts.records_durable, durable)
        facts.runtime_error = "collect_failed"
        return facts

    @activity.defn
    async def finish_run(self, data: FinishInput) -> None:
        """Store the outcome in `runs` with its spine events: one `stream_skipped` per stream
        and reason (with the count), then the terminal event. Idempotent."""
        events: list[tuple[str, dict[str, Any]]] = [
            ("stream_skipped", {"stream": sf.stream, "reason": reason, "count": n})
            for sf in data.facts.streams.values()
            for reason, n in sorted(sf.skipped_by_reason.items())
        ]
        said = await self.store.runs.diagnostics(data.outcome.run_id)
        outcome = in_connector_words(data.outcome, said.connector_error, said.stderr_tail)
        if any(st.continues for st in outcome.streams):
            # What each continuation says is the connector's (cursor-like): PostgreSQL's copy only.
            outcome = outcome.model_copy(
                update={"continuations": await self.store.runs.continuations(outcome.run_id)}
            )
        finished = await self.store.runs.finish(outcome, events)
        await self.store.locks.release(data.outcome.connector, data.outcome.run_id)
        # Notices a collect that never finished left open end with the run.
        succeeded = data.outcome.status is RunStatus.SUCCEEDED
        await self.store.assistance.close_run(data.outcome.run_id, "resolved" if succeeded else "cancelled")
        if finished:
            o = data.outcome
            attrs = {"connector": o.connector, "mode": o.mode.value}
            telemetry.run_duration.record(
                (o.finished_at - o.started_at).total_seconds(), {**attrs, "status": o.status.value}
            )
            telemetry.records_rejected.add(o.records_rejected, attrs)
            for reason, n in o.skipped_by_reason.items():
                telemetry.skips.add(n, {**attrs, "reason": reason})
            for cls, n in (await self.store.gaps.open_by_class(o.connector)).items():
                telemetry.gaps_open.set(n, {"connector": o.connector, "recovery_class": cls.value})

    @activity.defn
    async def note_cancel_too_late(self, run_id: str) -> None:
        """A cancel that came while the outcome was being written: the stored outcome says it
        came too late, and the spine tells so in an event of its own. Idempotent."""
        await self.store.runs.note_cancel_too_late(run_id)
