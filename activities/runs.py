"""Activities of ConnectorRunWorkflow, as methods of a class given its dependencies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.collect import NO_STREAM, Collector, facts_from_resume
from activities.process import reap_orphans
from pdpp_orch import telemetry
from pdpp_orch.hints import MAX_NO_PROGRESS, hint_id, not_before, parse_day, split_range
from pdpp_orch.manifest import ConfigError, Manifest
from pdpp_orch.models import (
    CheckpointPolicy,
    ClaimInput,
    ClaimResult,
    CollectFacts,
    CommitInput,
    CommitResult,
    FinishInput,
    HintScope,
    PlanInput,
    PreparedRun,
    RecoveryClass,
    ResourceRef,
    RetryHint,
    RetryPlan,
    RunInput,
    StreamCommit,
    TimeRange,
)
from pdpp_orch.registry import ConnectorEntry, Registry
from pdpp_orch.store import GapGroup, GapRow, Store

log = logging.getLogger(__name__)


def config_error(e: ConfigError) -> ApplicationError:
    return ApplicationError(str(e), type="ConfigError", non_retryable=True)


class RunActivities:
    """I/O for one connector run: registry and manifest, the connector process, PostgreSQL."""

    def __init__(self, store: Store, registry: Callable[[], Registry]):
        self.store = store
        self.registry = registry

    def _entry(self, name: str) -> tuple[ConnectorEntry, Manifest]:
        try:
            entry = self.registry().get(name)
            return entry, entry.load_manifest()
        except ConfigError as e:
            raise config_error(e) from e

    @activity.defn
    async def prepare_run(self, run: RunInput) -> PreparedRun:
        """Validate the connector and its manifest, then open the run's row."""
        entry, manifest = self._entry(run.connector)
        for s in run.streams:
            if manifest.stream(s.name) is None:
                raise config_error(ConfigError(f"connector {run.connector!r} has no stream {s.name!r}"))
        if await self.store.run_finished(run.run_id):
            raise ApplicationError(
                f"run {run.run_id} already has its outcome; a run id is used once",
                type="RunIdReused",
                non_retryable=True,
            )
        await self.store.start_run(run.run_id, run.connector, run.trigger.value, run.mode.value)
        streams = [s.name for s in run.streams] or [s.name for s in manifest.streams]
        sizes = await self.store.committed_state_sizes(run.connector)
        budget = entry.budget.config()
        return PreparedRun(
            connector=run.connector,
            checkpoint_policy=entry.checkpoint_policy,
            streams=streams,
            committed_state_bytes={k: v for k, v in sizes.items() if k in streams},
            budget_units=budget.units,
            budget_window_seconds=budget.window_seconds,
            cost_per_item=entry.budget.cost_per_item,
        )

    @activity.defn
    async def claim_connector(self, data: ClaimInput) -> ClaimResult:
        """Take the connector's one-forward-run-at-a-time lock, or name the live run holding
        it. A holder whose workflow is gone (terminated, timed out) is released here."""
        holder = await self.store.claim_connector(data.connector, data.run_id)
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
        await self.store.release_connector(data.connector, holder)
        return ClaimResult(holder=await self.store.claim_connector(data.connector, data.run_id))

    @activity.defn
    async def collect(self, run: RunInput) -> CollectFacts:
        """Run the connector once, resuming from this run's last proven checkpoints."""
        entry, manifest = self._entry(run.connector)
        info = activity.info()
        assert info.workflow_id is not None  # collect is only ever run by ConnectorRunWorkflow
        handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)

        async def notify(signal: str, arg: BaseModel) -> None:
            # Progress is best effort: a signal that cannot be delivered never fails the run.
            try:
                await handle.signal(signal, arg)
            except Exception as e:
                log.warning("run %s: could not signal %s: %s", run.run_id, signal, e)

        if info.attempt > 1:  # the attempt before may have died with its worker, here
            await asyncio.to_thread(reap_orphans)
        collector = Collector(self.store, entry, manifest, run, info.attempt, activity.heartbeat, notify)
        with (
            telemetry.context(run_id=run.run_id, connector=run.connector),
            telemetry.span(
                "pdpp.connector", connector=run.connector, run_id=run.run_id, attempt=info.attempt
            ) as sp,
        ):
            facts = await collector.run()
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
            info.attempt,
            facts.records_durable,
            facts.violation_count,
        )
        return facts

    @activity.defn
    async def load_facts(self, run_id: str) -> CollectFacts:
        """What is known of a collect that did not return: the facts it saved when cancelled,
        or, after a crash, the counters of its proven checkpoints and its last flush."""
        saved, emitted, durable = await self.store.load_facts(run_id)
        if saved:
            return CollectFacts.model_validate_json(saved)
        facts = facts_from_resume(await self.store.resume_points(run_id), attempt=0)
        facts.records_emitted = max(facts.records_emitted, emitted)
        facts.records_durable = max(facts.records_durable, durable)
        facts.runtime_error = "collect_failed"
        return facts

    @activity.defn
    async def commit_checkpoints(self, data: CommitInput) -> CommitResult:
        """Commit each stream's proven checkpoint, each in its own transaction (DESIGN §2), and
        keep a checkpoint gap for every stream whose latest checkpoint could not commit."""
        run, facts = data.run, data.facts
        entry, _ = self._entry(run.connector)
        results: list[StreamCommit] = []
        strict = entry.checkpoint_policy is CheckpointPolicy.PDPP_STRICT
        clean = facts.done_status == "succeeded" and not facts.violated and not facts.runtime_error
        failed_streams = _certified_failed_streams(facts) if strict and not clean else None
        for stream, cp in sorted(facts.checkpoints.items()):
            if cp.staged == 0:
                continue
            if facts.cancelled:
                results.append(StreamCommit(stream=stream, committed=False, reason="cancelled"))
            elif strict and not clean and (failed_streams is None or stream in failed_streams):
                results.append(StreamCommit(stream=stream, committed=False, reason="pdpp_strict_run_failed"))
            elif cp.proven_seq is None:
                results.append(
                    StreamCommit(stream=stream, committed=False, reason=cp.unproven_reason or "unproven")
                )
            else:
                with telemetry.span("pdpp.checkpoint.commit", connector=run.connector, stream=stream) as sp:
                    c = await self.store.commit_checkpoint(
                        run.connector, run.run_id, cp, entry.max_state_bytes
                    )
                    sp.set_attributes({"committed": c.committed, "bytes": c.bytes, "reason": c.reason or ""})
                if c.committed and cp.unproven_reason:
                    # An earlier proven cursor moved forward; the latest one is still lost.
                    c = StreamCommit(
                        stream=stream,
                        committed=False,
                        earlier_committed=True,
                        bytes=c.bytes,
                        reason=cp.unproven_reason,
                    )
                results.append(c)
        gaps = [
            GapRow(c.stream, "checkpoint", c.stream, c.reason or "not_committed", _checkpoint_class(c).value)
            for c in results
            if not c.committed and c.reason != "cancelled"
        ]
        recovered = await self.store.settle_checkpoint_gaps(
            run.connector, run.run_id, gaps, [c.stream for c in results if c.committed]
        )
        return CommitResult(
            streams=results, checkpoint_gaps_opened=len(gaps), checkpoint_gaps_recovered=recovered
        )

    @activity.defn
    async def plan_retries(self, data: PlanInput) -> RetryPlan:
        """Turn the run's open, runtime-retryable gaps into retry hints: one per stream, kind
        and reason, narrowed to exactly those gaps, timed by the upstream's signal or the
        connector's back-off policy, priced with its cost per item."""
        run = data.run
        entry, _ = self._entry(run.connector)
        opened = 0
        if data.run_failed_retryably:
            reason = data.facts.done_error_code or "connector_reported_failed"
            await self.store.open_gap(
                run.connector,
                run.run_id,
                GapRow(NO_STREAM, "run", "run", reason, RecoveryClass.TRANSIENT.value),
            )
            opened = 1
        max_attempts = MAX_NO_PROGRESS
        hints: list[RetryHint] = []
        if run.hint_id is not None:
            # A recovery run's new misses belong to the recovery executing that hint.
            await self.store.adopt_gaps(run.connector, run.run_id, run.hint_id)
        elif not data.facts.cancelled:
            now = datetime.now(UTC)
            groups = await self.store.gap_groups(run.connector, run.run_id, max_attempts)
            pairs = [(hint_id(run.run_id, g.stream, g.kind, g.reason), g) for g in groups]
            await self.store.assign_hints(run.connector, run.run_id, pairs)
            hints = [hint_for(hid, g, entry, now, max_attempts) for hid, g in pairs]
        by_stream = await self.store.open_gaps(run.connector)
        return RetryPlan(
            hints=hints,
            gaps_opened=opened,
            gaps_open_total=sum(by_stream.values()),
            gaps_open_by_stream=by_stream,
        )

    @activity.defn
    async def finish_run(self, data: FinishInput) -> None:
        """Store the outcome in `runs` with its spine events: one `stream_skipped` per stream
        and reason (with the count), then the terminal event. Idempotent."""
        events: list[tuple[str, dict[str, Any]]] = [
            ("stream_skipped", {"stream": sf.stream, "reason": reason, "count": n})
            for sf in data.facts.streams.values()
            for reason, n in sorted(sf.skipped_by_reason.items())
        ]
        finished = await self.store.finish_run(data.outcome, events)
        await self.store.release_connector(data.outcome.connector, data.outcome.run_id)
        if finished:
            o = data.outcome
            attrs = {"connector": o.connector, "mode": o.mode.value}
            telemetry.run_duration.record(
                (o.finished_at - o.started_at).total_seconds(), {**attrs, "status": o.status.value}
            )
            telemetry.records_rejected.add(o.records_rejected, attrs)
            for reason, n in o.skipped_by_reason.items():
                telemetry.skips.add(n, {**attrs, "reason": reason})
            for cls, n in (await self.store.open_gaps_by_class(o.connector)).items():
                telemetry.gaps_open.set(n, {"connector": o.connector, "recovery_class": cls})


def _checkpoint_class(c: StreamCommit) -> RecoveryClass:
    """A cursor too large for the cap needs the owner to raise it; a coverage that does not
    add up is the connector's bug; anything else may clear on a retry from the committed cursor."""
    if c.reason == "state_too_large":
        return RecoveryClass.OWNER_ACTION
    if c.reason and c.reason.startswith("coverage_"):
        return RecoveryClass.CONNECTOR_DEFECT
    return RecoveryClass.TRANSIENT


def hint_for(hid: str, g: GapGroup, entry: ConnectorEntry, now: datetime, max_attempts: int) -> RetryHint:
    """The retry hint of one group of gaps: when, what scope, how much."""
    cls = RecoveryClass(g.recovery_class)
    attempt = g.attempts + 1
    stream = None if g.stream == NO_STREAM else g.stream
    scope = HintScope(stream=stream)
    cost = 1
    if g.kind == "item":
        scope.include_resources = ResourceRef(count=g.count, ref=f"gaps?hint_id={hid}")
        cost = g.count * entry.budget.cost_per_item
    elif g.kind == "range":
        chunks = []
        for subject in g.ranges:
            tr = TimeRange.model_validate_json(subject)
            if tr.since and tr.until:
                days = g.max_days or (parse_day(tr.until) - parse_day(tr.since)).days + 1
                chunks += split_range(parse_day(tr.since), parse_day(tr.until), days)
            else:
                chunks.append(tr)
        scope.time_ranges = chunks
        cost = len(chunks)
    return RetryHint(
        hint_id=hid,
        reason=g.reason,
        recovery_class=cls,
        not_before=not_before(now, g.not_before, entry.retry, cls, attempt),
        scope=scope,
        gap_count=g.count,
        estimated_cost=cost,
        attempt=attempt,
        max_attempts=max_attempts,
    )


def _certified_failed_streams(facts: CollectFacts) -> set[str] | None:
    """The reference runtime's certified stream-scoped failure: DONE.error.code
    `stream_collection_failed` plus a matching SKIP_RESULT commits the siblings."""
    if facts.done_error_code != "stream_collection_failed":
        return None
    failed = {
        name for name, sf in facts.streams.items() if sf.skipped_by_reason.get("stream_collection_failed")
    }
    return failed or None
