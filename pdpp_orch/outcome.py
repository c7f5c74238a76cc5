"""The outcome of a run as one pure function of its facts (DESIGN §1, §3).

No I/O and no clock: safe to call inside a workflow and trivial to table-test.
"""

from __future__ import annotations

from pdpp_orch.models import (
    CollectFacts,
    CommitResult,
    CommitStatus,
    RetryPlan,
    RunFacts,
    RunOutcome,
    RunStatus,
    StreamOutcome,
)

# runtime_error values (CollectFacts) that are reported as the outcome's reason as they are.
CONNECTOR_LIMITS = frozenset({"connector_stalled", "max_run_duration_exceeded"})


def derive_status(
    *,
    cancelled: bool,
    done_succeeded: bool,
    violated: bool,
    staged: int,
    committed: int,
    coverage_shortfall: bool,
    gaps_opened: int,
    non_informational_skips: int,
    records_durable: int,
) -> RunStatus:
    """The status table of DESIGN §1; the first row that matches wins."""
    if cancelled:
        return RunStatus.CANCELLED
    if (
        done_succeeded
        and not violated
        and committed == staged
        and not coverage_shortfall
        and gaps_opened == 0
        and non_informational_skips == 0
    ):
        return RunStatus.SUCCEEDED
    if records_durable == 0 and committed == 0:
        return RunStatus.FAILED
    return RunStatus.PARTIALLY_COMPLETED


def commit_status(staged: int, committed: int) -> CommitStatus:
    """How the run's staged checkpoints fared; `disabled` when none was staged."""
    if staged == 0:
        return CommitStatus.DISABLED
    if committed == 0:
        return CommitStatus.NOT_COMMITTED
    if committed < staged:
        return CommitStatus.PARTIALLY_COMMITTED
    return CommitStatus.COMMITTED


def derive_reason(facts: CollectFacts, commit: CommitResult, error: str | None) -> str | None:
    """The most important cause that kept the run from succeeding, or None."""
    if error:
        return "runtime_error"
    if facts.violated:
        return "connector_protocol_violation"
    if facts.runtime_error:
        # Limits the runtime enforced on the connector are causes of their own; anything
        # else that went wrong inside the runtime stays a plain runtime_error.
        return facts.runtime_error if facts.runtime_error in CONNECTOR_LIMITS else "runtime_error"
    if facts.done_status is None and not facts.cancelled:
        return "connector_exit_without_done"
    if facts.done_status == "failed":
        return "connector_reported_failed"
    if facts.done_status == "cancelled":
        return "connector_reported_cancelled"  # the connector gave up by itself: no operator cancel
    for c in commit.streams:
        if not c.committed and c.reason:
            return c.reason
    if any(not c.accounted for c in facts.coverage.values()):
        return "coverage_shortfall"
    if facts.gaps_opened or facts.non_informational_skips:
        return "records_skipped"
    return None


def _stream_outcomes(facts: CollectFacts, commit: CommitResult, plan: RetryPlan) -> list[StreamOutcome]:
    names = sorted(set(facts.streams) | set(facts.checkpoints) | set(facts.coverage))
    commits = {c.stream: c for c in commit.streams}
    out: list[StreamOutcome] = []
    for name in names:
        sf = facts.streams.get(name)
        cov = facts.coverage.get(name)
        c = commits.get(name)
        if c is None:
            checkpoint = "none"
        elif c.committed:
            checkpoint = "committed"
        elif c.earlier_committed:
            checkpoint = "earlier_committed"
        else:
            checkpoint = c.reason or "not_committed"
        if cov is None:
            # Informational skips (nothing there to collect) leave the coverage complete.
            coverage = "unproven" if sf and sf.non_informational_skips else "complete"
            if sf and sf.gaps_opened:
                coverage = "partial"
        else:
            coverage = "complete" if cov.accounted and cov.gap_backed == 0 else "partial"
            if not cov.accounted:
                coverage = "unproven"
        out.append(
            StreamOutcome(
                stream=name,
                collected=sf.collected if sf else 0,
                considered=cov.considered if cov else None,
                covered=cov.covered if cov else None,
                checkpoint=checkpoint,
                coverage=coverage,
                gaps_open=plan.gaps_open_by_stream.get(name, 0),
            )
        )
    return out


def _status(facts: CollectFacts, commit: CommitResult, cancelled: bool, error: str | None) -> RunStatus:
    staged = sum(1 for cp in facts.checkpoints.values() if cp.staged > 0)
    return derive_status(
        cancelled=cancelled or facts.cancelled,
        done_succeeded=facts.done_status == "succeeded" and error is None,
        violated=facts.violated or facts.runtime_error is not None,
        staged=staged,
        committed=sum(1 for s in commit.streams if s.committed),
        coverage_shortfall=any(not cov.accounted for cov in facts.coverage.values()),
        gaps_opened=facts.gaps_opened + commit.checkpoint_gaps_opened,
        non_informational_skips=facts.non_informational_skips,
        records_durable=facts.records_durable,
    )


def failed_retryably(facts: CollectFacts, commit: CommitResult, cancelled: bool, error: str | None) -> bool:
    """A run that produced nothing usable but whose connector said the failure is retryable
    (network down, upstream outage): the whole run becomes one gap with a retry hint."""
    status = _status(facts, commit, cancelled, error)
    return status is RunStatus.FAILED and facts.done_error_retryable


def derive_outcome(facts: RunFacts) -> RunOutcome:
    """Turn a run's facts into its honest outcome. `needs_retry` is true iff the retry plan
    holds a hint: a runtime-retryable gap with attempts left."""
    c = facts.collect
    staged = sum(1 for cp in c.checkpoints.values() if cp.staged > 0)
    committed = sum(1 for s in facts.commit.streams if s.committed)
    cancelled = facts.cancelled or c.cancelled
    status = _status(c, facts.commit, facts.cancelled, facts.error)
    skipped: dict[str, int] = {}
    for sf in c.streams.values():
        for reason, n in sf.skipped_by_reason.items():
            skipped[reason] = skipped.get(reason, 0) + n
    hints = [] if cancelled else facts.plan.hints
    return RunOutcome(
        run_id=facts.input.run_id,
        connector=facts.input.connector,
        trigger=facts.input.trigger,
        mode=facts.input.mode,
        status=status,
        needs_retry=bool(hints),
        reason=None
        if status is RunStatus.SUCCEEDED
        else ("cancelled" if cancelled else derive_reason(c, facts.commit, facts.error)),
        records_emitted=c.records_emitted,
        records_durable=c.records_durable,
        records_rejected=c.records_rejected,
        buffered_records_dropped=0,
        state_streams_staged=staged,
        state_streams_committed=committed,
        checkpoint_commit_status=commit_status(staged, committed),
        skipped_by_reason=dict(sorted(skipped.items())),
        gaps_opened=c.gaps_opened + facts.commit.checkpoint_gaps_opened + facts.plan.gaps_opened,
        gaps_recovered=c.gaps_recovered + facts.commit.checkpoint_gaps_recovered,
        gaps_open_total=facts.plan.gaps_open_total,
        streams=_stream_outcomes(c, facts.commit, facts.plan),
        retry_hints=hints,
        started_at=facts.started_at,
        finished_at=facts.finished_at,
    )
