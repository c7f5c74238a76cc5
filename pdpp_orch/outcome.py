"""The outcome of a run as one pure function of its facts (DESIGN §1, §3).

No I/O and no clock: safe to call inside a workflow and trivial to table-test.
"""

from __future__ import annotations

from pdpp_orch.models import (
    CollectFacts,
    CommitResult,
    CommitStatus,
    RetryPlan,
    RunError,
    RunFacts,
    RunOutcome,
    RunStatus,
    StreamCommit,
    StreamOutcome,
)

# runtime_error values (CollectFacts) that are reported as the outcome's reason as they are.
CONNECTOR_LIMITS = frozenset({"connector_stalled", "max_run_duration_exceeded", "connector_output_closed"})
CONFIG_ERROR = "config_error"
# No worker of the connector's task queue took its collect within the placement timeout.
WORKER_UNAVAILABLE = "worker_unavailable"


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


def finished_cleanly(facts: CollectFacts, error: RunError | None) -> bool:
    """Whether the connector got to the end of what it was asked: only then can a stream's
    coverage be complete."""
    return facts.done_status == "succeeded" and error is None and not facts.runtime_error


def derive_reason(facts: CollectFacts, commit: CommitResult, error: RunError | None) -> str | None:
    """The most important cause that kept the run from succeeding, or None."""
    if error:
        if error.kind == WORKER_UNAVAILABLE:
            return WORKER_UNAVAILABLE
        return "configuration_error" if error.kind == CONFIG_ERROR else "runtime_error"
    if facts.violated:
        return "connector_protocol_violation"
    if facts.runtime_error:
        # Limits the runtime enforced on the connector are causes of their own; anything
        # else that went wrong inside the runtime stays a plain runtime_error.
        return facts.runtime_error if facts.runtime_error in CONNECTOR_LIMITS else "runtime_error"
    if facts.done_status is None:
        return "connector_exit_without_done"
    if facts.done_status == "failed":
        return "connector_reported_failed"
    if facts.done_status == "cancelled":
        return "connector_reported_cancelled"  # the connector gave up by itself: no operator cancel
    for c in commit.streams:
        if not c.committed and not c.withheld and c.reason:
            return c.reason
    if any(not c.accounted for c in facts.coverage.values()):
        return "coverage_shortfall"
    if facts.gaps_opened or facts.non_informational_skips:
        return "records_skipped"
    return None


def derive_error(
    facts: CollectFacts, reason: str | None, error: RunError | None, commit: CommitResult | None = None
) -> RunError | None:
    """What went wrong, for a person: the error that ended collection, or the cause behind the
    reason. Only our own words: the connector's are added where the outcome is stored."""
    if error is not None:
        return error
    if reason in (None, "cancelled", "records_skipped"):
        return None
    lost = next((c for c in (commit.streams if commit else []) if c.reason == reason and c.message), None)
    if lost is not None:
        return RunError(kind=reason, message=f"{lost.stream}: {lost.message}")
    if reason == "connector_protocol_violation":
        first = facts.violations[0] if facts.violations else None
        where = f": first {first.kind} at line {first.line_no}" if first else ""
        return RunError(kind=reason, message=f"{facts.violation_count:,} protocol violation(s){where}")
    if reason == "connector_exit_without_done":
        return RunError(kind=reason, message=f"the connector exited (code {facts.exit_code}) without DONE")
    if reason == "connector_reported_cancelled":
        return RunError(kind=reason, message="the connector reported DONE cancelled by itself")
    if reason == "connector_reported_failed":
        code = f" ({facts.done_error_code})" if facts.done_error_code else ""
        return RunError(kind=reason, message=f"the connector reported DONE failed{code}")
    if reason in _LIMIT_WORDS or reason == "runtime_error":
        return RunError(kind=reason, message=_runtime_words(facts))
    if reason == "coverage_shortfall":
        short = [c for c in facts.coverage.values() if not c.accounted]
        keys = sum(c.required - c.hydrated - c.gap_backed - c.optional_skipped for c in short)
        streams = ", ".join(sorted(c.stream for c in short))
        return RunError(
            kind=reason,
            message=f"{keys:,} key(s) the connector listed for {streams} neither collected"
            " nor reported as gaps",
        )
    return RunError(kind=reason or "unknown")


# The limits the runtime enforces on a connector, each with the setting that governs it.
_LIMIT_WORDS = {
    "connector_stalled": "no output for {s} (stall_timeout_seconds in the connector's registry entry)",
    "max_run_duration_exceeded": "still running after {s} (max_run_seconds in the registry or the run's)",
    "connector_output_closed": (
        "closed its output without DONE and was still running {s} later (stall_timeout_seconds)"
    ),
}
_RUNTIME_WORDS = {
    "too_many_protocol_violations": "over 10,000 protocol violations: the runtime ended the connector",
    "collect_failed": "the collect activity failed (its worker died or timed out) until its retries ran out",
}


def _runtime_words(facts: CollectFacts) -> str | None:
    """A runtime error in words a person can act on: the limit passed and the setting for it."""
    err = facts.runtime_error or ""
    if err in _LIMIT_WORDS:
        n = facts.runtime_limit_seconds
        return _LIMIT_WORDS[err].format(s=f"{n:,.0f} s" if n is not None else "its limit")
    return _RUNTIME_WORDS.get(err, err.replace("_", " ") or None)


def _coverage(facts: CollectFacts, name: str, clean: bool) -> str:
    sf = facts.streams.get(name)
    cov = facts.coverage.get(name)
    if cov is None:
        # Informational skips (nothing there to collect) leave the coverage complete.
        if not clean or (sf and sf.non_informational_skips):
            coverage = "unproven"
        else:
            coverage = "complete"
        if sf and sf.gaps_opened:
            coverage = "partial"
        return coverage
    if not cov.accounted:
        return "unproven"
    return "complete" if cov.gap_backed == 0 and clean else "partial"


def _checkpoint(c: StreamCommit | None) -> str:
    if c is None:
        return "none"
    if c.committed:
        return "committed"
    if c.earlier_committed:
        return "earlier_committed"
    return c.reason or "not_committed"


def _missing(facts: CollectFacts, name: str, plan: RetryPlan, clean: bool) -> int:
    """Records known to be missing from a stream: what its open gaps stand for (an item one
    record, a range or a skipped stream their estimate; pdpp_orch.present.estimate), each
    required key the coverage left unaccounted, and, for a run that did not finish, what the
    connector's own total says it did not get to."""
    sf = facts.streams.get(name)
    cov = facts.coverage.get(name)
    missing = plan.missing_by_stream.get(name, 0)
    if cov is not None:
        missing += max(0, cov.required - cov.hydrated - cov.gap_backed - cov.optional_skipped)
    if not clean and sf is not None and sf.total is not None:
        missing = max(missing, sf.total - sf.collected)
    return missing


def _stream_outcomes(
    facts: CollectFacts, commit: CommitResult, plan: RetryPlan, clean: bool
) -> list[StreamOutcome]:
    names = sorted(set(facts.streams) | set(facts.checkpoints) | set(facts.coverage))
    commits = {c.stream: c for c in commit.streams}
    out: list[StreamOutcome] = []
    for name in names:
        sf = facts.streams.get(name)
        cov = facts.coverage.get(name)
        out.append(
            StreamOutcome(
                stream=name,
                collected=sf.collected if sf else 0,
                considered=cov.considered if cov else None,
                covered=cov.covered if cov else None,
                checkpoint=_checkpoint(commits.get(name)),
                coverage=_coverage(facts, name, clean),
                gaps_open=plan.gaps_open_by_stream.get(name, 0),
                records_missing_estimate=_missing(facts, name, plan, clean),
                continues=bool(sf and sf.continued),
            )
        )
    return out


def _staged_to_commit(facts: CollectFacts, commit: CommitResult) -> int:
    """Streams with a checkpoint staged to commit: not those withheld by design (a scoped
    recovery's resume points, a recovery's walk another run's commit superseded)."""
    withheld = {c.stream for c in commit.streams if c.withheld}
    return sum(1 for name, cp in facts.checkpoints.items() if cp.staged > 0 and name not in withheld)


def _status(facts: CollectFacts, commit: CommitResult, cancelled: bool, error: RunError | None) -> RunStatus:
    staged = _staged_to_commit(facts, commit)
    return derive_status(
        cancelled=cancelled,
        done_succeeded=facts.done_status == "succeeded" and error is None,
        violated=facts.violated or facts.runtime_error is not None,
        staged=staged,
        committed=sum(1 for s in commit.streams if s.committed),
        coverage_shortfall=any(not cov.accounted for cov in facts.coverage.values()),
        gaps_opened=facts.gaps_opened + commit.checkpoint_gaps_opened,
        non_informational_skips=facts.non_informational_skips,
        records_durable=facts.records_durable,
    )


def failed_retryably(
    facts: CollectFacts, commit: CommitResult, cancelled: bool, error: RunError | None
) -> bool:
    """A run that produced nothing usable but whose connector said the failure is retryable
    (network down, upstream outage): the whole run becomes one gap with a retry hint."""
    status = _status(facts, commit, cancelled, error)
    return status is RunStatus.FAILED and facts.done_error_retryable


def derive_outcome(facts: RunFacts) -> RunOutcome:
    """Turn a run's facts into its honest outcome. `needs_retry` is true iff the retry plan
    holds a hint: a runtime-retryable gap with attempts left. `cancelled` is the workflow's
    word alone: only a run someone cancelled is cancelled."""
    c = facts.collect
    staged = _staged_to_commit(c, facts.commit)
    committed = sum(1 for s in facts.commit.streams if s.committed)
    status = _status(c, facts.commit, facts.cancelled, facts.error)
    skipped: dict[str, int] = {}
    reported: dict[str, int] = {}
    for sf in c.streams.values():
        for why, n in sf.skipped_by_reason.items():
            skipped[why] = skipped.get(why, 0) + n
        for why, n in sf.reported_by_reason.items():
            reported[why] = reported.get(why, 0) + n
    hints = [] if facts.cancelled else facts.plan.hints
    reason: str | None
    if status is RunStatus.SUCCEEDED:
        reason = None
    else:
        reason = "cancelled" if facts.cancelled else derive_reason(c, facts.commit, facts.error)
    streams = _stream_outcomes(c, facts.commit, facts.plan, finished_cleanly(c, facts.error))
    return RunOutcome(
        run_id=facts.input.run_id,
        connector=facts.input.connector,
        trigger=facts.input.trigger,
        mode=facts.input.mode,
        status=status,
        needs_retry=bool(hints),
        reason=reason,
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
        streams=streams,
        retry_hints=hints,
        started_at=facts.started_at,
        finished_at=facts.finished_at,
        records_missing_estimate=sum(s.records_missing_estimate for s in streams),
        error=derive_error(c, reason, facts.error, facts.commit),
        sandbox=c.sandbox,
        reported_by_reason=dict(sorted(reported.items())),
        recovery_action=c.done_recovery_action,
    )


# Errors whose cause the connector can say better than we can.
_CONNECTOR_KINDS = frozenset(
    {
        "connector_reported_failed",
        "connector_exit_without_done",
        "connector_stalled",
        "connector_output_closed",
    }
)


def in_connector_words(o: RunOutcome, connector_error: str | None, stderr_tail: list[str]) -> RunOutcome:
    """The outcome as it is stored in PostgreSQL: its error message followed by what the
    connector said (DONE.error.message, else the last line of its stderr), which Temporal
    history never holds."""
    if o.error is None or o.error.kind not in _CONNECTOR_KINDS:
        return o
    said = connector_error or next((line for line in reversed(stderr_tail) if line.strip()), None)
    if not said:
        return o
    message = f"{o.error.message}: {said}" if o.error.message else said
    return o.model_copy(update={"error": RunError(kind=o.error.kind, message=message[:1000])})
