"""Activities of ConnectorRunWorkflow after collection: commit what is proven, then plan the
retries of what is missing (the rules are pdpp_orch.policy's)."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.config import RegistryLoader, entry_and_manifest
from pdpp_orch import policy, telemetry
from pdpp_orch.models import (
    CheckpointPolicy,
    CommitInput,
    CommitResult,
    GapKind,
    Mode,
    PlanInput,
    RetryHint,
    RetryPlan,
    RunInput,
    StreamCommit,
)
from pdpp_orch.outcome import CONFIG_ERROR
from pdpp_orch.present import estimate
from pdpp_orch.registry import ConnectorEntry
from pdpp_orch.store import NewGap, Store


class CheckpointActivities:
    """Checkpoint commits and retry planning, given the store and the registry."""

    def __init__(self, store: Store, registry: RegistryLoader):
        self.store = store
        self.registry = registry

    async def _entry(self, run: RunInput) -> ConnectorEntry | None:
        """The connector's entry as this worker reads it, or None (said in the worker's log) when
        it cannot: the run has its error from prepare or collect already, and ends with it."""
        try:
            entry, _ = await entry_and_manifest(self.registry, run.connector, run.registry)
        except ApplicationError as e:
            if e.type != "ConfigError":
                raise
            return None
        return entry

    @activity.defn
    async def commit_checkpoints(self, data: CommitInput) -> CommitResult:
        """Commit each stream's proven checkpoint, each in its own transaction (DESIGN §2), and
        keep a checkpoint gap for every stream whose latest checkpoint could not commit (one
        withheld by design is no miss: policy.WITHHELD)."""
        run, facts = data.run, data.facts
        staged = [(stream, cp) for stream, cp in sorted(facts.checkpoints.items()) if cp.staged]
        entry = await self._entry(run) if staged else None
        strict = entry is not None and entry.checkpoint_policy is CheckpointPolicy.PDPP_STRICT
        results: list[StreamCommit] = []
        for stream, cp in staged:
            why_not = policy.why_not_committed(stream, facts, strict)
            if entry is None:  # whose cap and policy are unknown here: nothing commits
                why_not = why_not or CONFIG_ERROR
            if why_not is not None or entry is None:
                held = why_not in policy.WITHHELD
                results.append(StreamCommit(stream=stream, committed=False, withheld=held, reason=why_not))
                continue
            with telemetry.span("pdpp.checkpoint.commit", connector=run.connector, stream=stream) as sp:
                # A recovery run holds no connector lock: a forward run may commit meanwhile.
                since_start = run.mode is Mode.RECOVERY
                c = await self.store.state.commit(
                    run.connector, run.run_id, cp, entry.max_state_bytes, since_start=since_start
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
            NewGap(
                c.stream,
                GapKind.CHECKPOINT,
                c.stream,
                c.reason or "not_committed",
                policy.checkpoint_gap_class(c),
                records_estimate=estimate.unaccounted(facts.coverage.values(), c.stream),
            )
            for c in results
            if not c.committed and not c.withheld and c.reason != "cancelled"
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
        opened = 0
        failure = policy.run_gap(data.facts, data.run_failed_retryably, run.mode)
        if failure is not None:
            said = await self.store.runs.diagnostics(run.run_id)
            last_error = said.connector_error[:500] if said.connector_error else None
            gap = NewGap(policy.NO_STREAM, GapKind.RUN, "run", *failure, last_error=last_error)
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
            # Without the connector's back-off and cost, its gaps stay open for the next run.
            entry = await self._entry(run) if groups else None
            if entry is not None:
                if len(groups) > policy.MAX_HINTS:  # the largest get hints; the rest stay open
                    groups = sorted(groups, key=lambda g: -g.count)[: policy.MAX_HINTS]
                pairs = [(policy.hint_id(run.run_id, g.stream, g.kind.value, g.reason), g) for g in groups]
                await self.store.hints.assign_hints(run.connector, run.run_id, pairs)
                cost = entry.budget.cost_per_item
                hints = [policy.hint_for(hid, g, entry.retry, cost, now, max_attempts) for hid, g in pairs]
        return await self._where_the_ledger_stands(data, hints, opened)

    async def _where_the_ledger_stands(
        self, data: PlanInput, hints: list[RetryHint], opened: int
    ) -> RetryPlan:
        """Estimate the range and stream gaps the run found, let a forward run of every stream
        that went to its end supersede earlier whole-run gaps, and count what is open after it."""
        run, facts = data.run, data.facts
        found = await self.store.gaps.found(run.connector, run.run_id, [GapKind.RANGE, GapKind.STREAM])
        if found:
            await self.store.gaps.set_estimates(
                run.connector, estimate.found_estimates(found, facts, run.streams)
            )
        # Only a run of every stream stands in for a whole run that failed.
        if run.mode is Mode.FORWARD and policy.ran_to_its_end(facts) and not run.streams:
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
