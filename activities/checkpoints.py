"""Activities of ConnectorRunWorkflow after collection: commit what is proven, then plan the
retries of what is missing (the rules are pdpp_orch.policy's)."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from activities.config import RegistryLoader, entry_and_manifest
from pdpp_orch import policy, telemetry
from pdpp_orch.models import (
    CheckpointPolicy,
    CommitInput,
    CommitResult,
    GapKind,
    Mode,
    PlanInput,
    RecoveryClass,
    RetryHint,
    RetryPlan,
    StreamCommit,
)
from pdpp_orch.present import estimate
from pdpp_orch.store import NewGap, Store


class CheckpointActivities:
    """Checkpoint commits and retry planning, given the store and the registry."""

    def __init__(self, store: Store, registry: RegistryLoader):
        self.store = store
        self.registry = registry

    @activity.defn
    async def commit_checkpoints(self, data: CommitInput) -> CommitResult:
        """Commit each stream's proven checkpoint, each in its own transaction (DESIGN §2), and
        keep a checkpoint gap for every stream whose latest checkpoint could not commit."""
        run, facts = data.run, data.facts
        entry, _ = await entry_and_manifest(self.registry, run.connector)
        strict = entry.checkpoint_policy is CheckpointPolicy.PDPP_STRICT
        results: list[StreamCommit] = []
        for stream, cp in sorted(facts.checkpoints.items()):
            if cp.staged == 0:
                continue
            why_not = policy.why_not_committed(stream, facts, strict)
            if why_not is not None:
                results.append(StreamCommit(stream=stream, committed=False, reason=why_not))
                continue
            with telemetry.span("pdpp.checkpoint.commit", connector=run.connector, stream=stream) as sp:
                c = await self.store.state.commit(run.connector, run.run_id, cp, entry.max_state_bytes)
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
            NewGap(
                c.stream,
                GapKind.CHECKPOINT,
                c.stream,
                c.reason or "not_committed",
                policy.checkpoint_gap_class(c),
                records_estimate=estimate.unaccounted(facts.coverage.values(), c.stream),
            )
            for c in results
            if not c.committed and c.reason != "cancelled"
        ]
        recovered = await self.store.gaps.settle_checkpoints(
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
        entry, _ = await entry_and_manifest(self.registry, run.connector)
        opened = 0
        if data.run_failed_retryably:
            reason = data.facts.done_error_code or "connector_reported_failed"
            gap = NewGap(policy.NO_STREAM, GapKind.RUN, "run", reason, RecoveryClass.TRANSIENT)
            await self.store.gaps.open(run.connector, run.run_id, gap)
            opened = 1
        max_attempts = policy.MAX_NO_PROGRESS
        hints: list[RetryHint] = []
        if run.hint_id is not None:
            # A recovery run's new misses belong to the recovery executing that hint.
            await self.store.hints.adopt(run.connector, run.run_id, run.hint_id)
        elif not data.facts.cancelled:
            now = datetime.now(UTC)
            groups = await self.store.hints.groups_found_by(run.connector, run.run_id, max_attempts)
            pairs = [(policy.hint_id(run.run_id, g.stream, g.kind.value, g.reason), g) for g in groups]
            await self.store.hints.assign_hints(run.connector, run.run_id, pairs)
            cost = entry.budget.cost_per_item
            hints = [policy.hint_for(hid, g, entry.retry, cost, now, max_attempts) for hid, g in pairs]
        return await self._where_the_ledger_stands(data, hints, opened)

    async def _where_the_ledger_stands(
        self, data: PlanInput, hints: list[RetryHint], opened: int
    ) -> RetryPlan:
        """Estimate the range and stream gaps the run found, let a clean forward run supersede
        earlier whole-run gaps, and count what is open after the run."""
        run, facts = data.run, data.facts
        found = await self.store.gaps.found(run.connector, run.run_id, [GapKind.RANGE, GapKind.STREAM])
        if found:
            await self.store.gaps.set_estimates(
                run.connector, estimate.found_estimates(found, facts, run.streams)
            )
        clean = facts.done_status == "succeeded" and not facts.violated and not facts.runtime_error
        # Only a run of every stream stands in for a whole run that failed.
        if run.mode is Mode.FORWARD and clean and not facts.cancelled and not run.streams:
            await self.store.gaps.supersede_runs(run.connector, run.run_id)
        by_stream = await self.store.gaps.open_by_stream(run.connector)
        open_gaps = await self.store.present.open_gaps(run.connector)
        return RetryPlan(
            hints=hints,
            gaps_opened=opened,
            gaps_open_total=sum(by_stream.values()),
            gaps_open_by_stream=by_stream,
            missing_by_stream={
                s: estimate.missing(groups, checkpoints=False).records for s, groups in open_gaps.items()
            },
        )
