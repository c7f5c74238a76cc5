"""Am I missing anything? — derived from the same facts as the outcome: the latest finished
forward run's outcome, the gap ledger as it stands now, and what the recoveries are doing."""

from __future__ import annotations

from datetime import datetime

from pdpp_orch import advice
from pdpp_orch.models import GapKind, GapStatus, Mode, RecoveryClass, RunOutcome, RunStatus
from pdpp_orch.report.model import (
    ConnectorReport,
    GapSummary,
    LatestRun,
    OwnerAsk,
    OwnerNotice,
    RecoveryState,
    RunPoint,
    Severity,
    StreamReport,
)
from pdpp_orch.store.reports import GapCounts, ReportRows
from pdpp_orch.store.runs import RunRow

OWNER = RecoveryClass.OWNER_ACTION.value


def units(n: int) -> str:
    return f"{n:,} unit" + ("" if n == 1 else "s")


def build(
    rows: ReportRows,
    cost_per_item: dict[str, int],
    recoveries: dict[str, list[RecoveryState]],
    now: datetime,
) -> list[ConnectorReport]:
    """One report per connector, in name order."""
    names = {
        r.connector
        for part in (rows.records, rows.state, rows.gaps, rows.runs, rows.asks, rows.notices)
        for r in part
    }
    return [_connector(c, rows, cost_per_item.get(c, 1), recoveries.get(c, []), now) for c in sorted(names)]


def _latest(runs: list[RunRow]) -> tuple[RunOutcome | None, str | None]:
    """The latest finished forward run's outcome, and the forward run in progress, if any."""
    forward = [r for r in runs if r.mode is Mode.FORWARD]
    finished = [r.outcome for r in forward if r.outcome is not None]
    running = next((r.run_id for r in reversed(forward) if r.outcome is None), None)
    return (finished[-1] if finished else None), running


def _connector(
    c: str, rows: ReportRows, cost: int, recoveries: list[RecoveryState], now: datetime
) -> ConnectorReport:
    runs = [r for r in rows.runs if r.connector == c]  # oldest first
    latest, running = _latest(runs)
    names = sorted(
        {r.stream for part in (rows.records, rows.state, rows.gaps) for r in part if r.connector == c}
    )
    streams = [_stream(c, st, rows, latest, cost, now) for st in names]
    asks = [
        OwnerAsk(
            run_id=a.run_id, request_id=a.request_id, kind=a.kind, message=a.message, expires_at=a.expires_at
        )
        for a in rows.asks
        if a.connector == c
    ]
    notices = [
        OwnerNotice(
            run_id=n.run_id,
            assistance_request_id=n.assistance_id,
            owner_action=n.owner_action,
            progress_posture=n.progress_posture,
            expires_at=n.expires_at,
        )
        for n in rows.notices
        if n.connector == c
    ]
    acting = [n for n in notices if n.owner_action != "none"]
    planned = [g for s in streams for g in s.gaps if g.estimated_cost is not None and g.open]
    next_retry, state = _next_retry(c, recoveries, now)
    report = ConnectorReport(
        connector=c,
        missing_anything=False,
        severity=Severity.OK,
        verdict="",
        latest_run=_latest_run(latest),
        running_run=running,
        streams=streams,
        records_missing_estimate=sum(s.records_missing_estimate for s in streams),
        next_retry=next_retry,
        next_retry_state=state,
        next_retry_cost=sum(g.estimated_cost or 0 for g in planned),
        waiting_on_owner=sum(s.waiting_on_owner for s in streams) + len(asks) + len(acting),
        asks=asks,
        notices=notices,
        recoveries=recoveries,
        recent_runs=[_point(r) for r in runs],
    )
    report.severity, report.verdict = _verdict(report, latest, recoveries)
    if (warning := advice.unsandboxed(latest)) is not None:
        report.verdict += f"; {warning}"
    report.missing_anything = report.severity is not Severity.OK
    return report


def _stream(
    c: str, st: str, rows: ReportRows, latest: RunOutcome | None, cost: int, now: datetime
) -> StreamReport:
    rec = next((r for r in rows.records if (r.connector, r.stream) == (c, st)), None)
    state = next((r for r in rows.state if (r.connector, r.stream) == (c, st)), None)
    counts = [g for g in rows.gaps if (g.connector, g.stream) == (c, st)]
    gaps = _gaps(counts, cost)
    open_items = sum(g.n for g in counts if g.status.open and g.kind is GapKind.ITEM)
    outcome = next((s for s in latest.streams if s.stream == st), None) if latest else None
    coverage = outcome.coverage if outcome else "unknown"
    if coverage == "partial" and not any(g.open for g in gaps):
        coverage = "recovered"
    unfinished = latest is not None and latest.status is not RunStatus.SUCCEEDED
    missing = max(open_items, outcome.records_missing_estimate if outcome and unfinished else 0)
    committed = state.committed_at if state else None
    return StreamReport(
        stream=st,
        records_held=rec.held if rec else 0,
        records_deleted=rec.deleted if rec else 0,
        checkpoint_committed_at=committed,
        checkpoint_age_hours=round((now - committed).total_seconds() / 3600, 1) if committed else None,
        checkpoint_bytes=state.cursor_bytes if state else None,
        coverage=coverage,
        gaps=gaps,
        waiting_on_owner=sum(g.open for g in gaps if g.recovery_class == OWNER),
        records_missing_estimate=missing,
    )


def _gaps(rows: list[GapCounts], cost_per_item: int) -> list[GapSummary]:
    merged: dict[tuple[str, str], GapSummary] = {}
    for g in rows:
        retried = g.recovery_class.runtime_retryable
        cur = merged.setdefault(
            (g.reason, g.recovery_class.value),
            GapSummary(
                reason=g.reason,
                recovery_class=g.recovery_class.value,
                open=0,
                next_retry=None,
                estimated_cost=0 if retried else None,
            ),
        )
        if g.status is GapStatus.RECOVERED:
            cur.recovered += g.n
        elif g.status is GapStatus.TERMINAL:
            cur.terminal += g.n
        else:
            cur.open += g.n
            if cur.estimated_cost is not None:
                cur.estimated_cost += g.n * cost_per_item
            if g.next_retry and retried:
                cur.next_retry = min(cur.next_retry or g.next_retry, g.next_retry)
    return sorted(merged.values(), key=lambda x: (-x.open, x.reason))


def _next_retry(c: str, recoveries: list[RecoveryState], now: datetime) -> tuple[datetime | None, str | None]:
    """When the next retry comes: a future time of a live recovery, else why none will."""
    if not recoveries:
        return None, None
    live = [r for r in recoveries if r.running]
    due = min((r.next_retry for r in live if r.next_retry), default=None)
    if due is not None:
        return due, f"next retry {advice.when(due, now)}" + (
            " (its recovery is running late: is a worker up?)" if due < now else ""
        )
    if live:
        return None, f"retrying now ({live[0].state})"
    ended = ", ".join(sorted({r.state for r in recoveries}))
    return None, f"no retry coming: its recovery is {ended}; `pdpp-orch recover now {c}` starts it again"


def _latest_run(o: RunOutcome | None) -> LatestRun | None:
    if o is None:
        return None
    return LatestRun(
        run_id=o.run_id,
        status=o.status.value,
        reason=o.reason,
        error=o.error,
        finished_at=o.finished_at,
        records_durable=o.records_durable,
        records_missing_estimate=o.records_missing_estimate,
    )


def _point(r: RunRow) -> RunPoint:
    return RunPoint(
        run_id=r.run_id,
        started_at=r.started_at,
        status=r.status.value,
        records_durable=r.records_durable,
        gaps_opened=r.outcome.gaps_opened if r.outcome else 0,
    )


def _verdict(
    r: ConnectorReport, latest: RunOutcome | None, recoveries: list[RecoveryState]
) -> tuple[Severity, str]:
    """How bad it is and the one line that says so, why, and what next."""
    held = sum(s.records_held for s in r.streams)
    n = r.records_missing_estimate
    missing = f"{held:,} records" + (f", {n:,} missing ({100 * n / max(held + n, 1):.0f}%)" if n else "")
    open_gaps = sum(g.open for s in r.streams for g in s.gaps)
    if latest is None:
        return Severity.FAILING, f"{missing}; no forward run has finished yet"
    if latest.status in (RunStatus.FAILED, RunStatus.CANCELLED) or latest.reason in _CRASHES:
        why = advice.why(latest) or latest.status.value
        status = latest.status.value
        nxt = advice.owner_step(latest) or f"`pdpp-orch status {latest.run_id}`"
        return Severity.FAILING, f"{missing}; latest run {status} ({why}); {nxt}"
    if r.waiting_on_owner:
        return Severity.WAITING_ON_YOU, f"{missing}; {r.waiting_on_owner:,} waiting on you"
    unproven = [s.stream for s in r.streams if s.coverage in ("partial", "unproven")]
    if not open_gaps and not unproven and latest.status is RunStatus.SUCCEEDED:
        planned = "".join(f" · {line}" for line in advice.continuing(latest))
        return Severity.OK, f"nothing missing · {held:,} records{planned}"
    if open_gaps and any(x.running for x in recoveries):
        return Severity.MISSING_RETRY_PLANNED, f"{missing}; {r.next_retry_state}"
    what = f"{open_gaps:,} gap(s) open" if open_gaps else f"coverage not proven for {', '.join(unproven)}"
    nxt = r.next_retry_state or f"nothing retries it on its own: `pdpp-orch gaps list {r.connector}`"
    return Severity.MISSING_NO_RETRY, f"{missing}; {what}; {nxt}"


# A latest run that died under the connector, whatever it had made durable before.
_CRASHES = frozenset(
    {"connector_exit_without_done", "runtime_error", "connector_stalled", "configuration_error"}
)
