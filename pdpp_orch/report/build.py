"""Am I missing anything? — now: the gap ledger as it stands, every retry hint's fate and what
nobody retries (the present, pdpp_orch.present), over the latest finished forward run's outcome
(coverage, and what a run that died never got to)."""

from __future__ import annotations

from datetime import datetime

from pdpp_orch import advice, policy
from pdpp_orch.models import GapStatus, Mode, RecoveryClass, RunOutcome, RunStatus
from pdpp_orch.present.model import Fate, HintNow, Present
from pdpp_orch.report.model import (
    ConnectorReport,
    GapSummary,
    LatestRun,
    OwnerAsk,
    OwnerNotice,
    RunPoint,
    Severity,
    StreamReport,
)
from pdpp_orch.store.reports import GapCounts, ReportRows
from pdpp_orch.store.runs import RunRow
from pdpp_orch.walkcost import walk_cost

OWNER = RecoveryClass.OWNER_ACTION.value


def units(n: int) -> str:
    return f"{n:,} unit" + ("" if n == 1 else "s")


def build(
    rows: ReportRows,
    cost_per_item: dict[str, int],
    presents: dict[str, Present],
    now: datetime,
) -> list[ConnectorReport]:
    """One report per connector, in name order (`presents`: each connector's, from
    pdpp_orch.control.present)."""
    names = {
        r.connector
        for part in (rows.records, rows.state, rows.gaps, rows.runs, rows.asks, rows.notices)
        for r in part
    }
    return [_connector(c, rows, cost_per_item.get(c, 1), presents.get(c), now) for c in sorted(names)]


def latest_forward(rows: ReportRows, connector: str) -> RunRow | None:
    """The connector's latest finished forward run: what its coverage rests on."""
    forward = [r for r in rows.runs if r.connector == connector and r.mode is Mode.FORWARD and r.outcome]
    return forward[-1] if forward else None


def _latest(runs: list[RunRow]) -> tuple[RunOutcome | None, str | None]:
    """The latest finished forward run's outcome, and the forward run in progress, if any."""
    forward = [r for r in runs if r.mode is Mode.FORWARD]
    finished = [r.outcome for r in forward if r.outcome is not None]
    running = next((r.run_id for r in reversed(forward) if r.outcome is None), None)
    return (finished[-1] if finished else None), running


def _connector(c: str, rows: ReportRows, cost: int, p: Present | None, now: datetime) -> ConnectorReport:
    runs = [r for r in rows.runs if r.connector == c]  # oldest first
    latest, running = _latest(runs)
    names = sorted(
        {r.stream for part in (rows.records, rows.state, rows.gaps) for r in part if r.connector == c}
    )
    hints = p.hints if p is not None else []
    streams = [_stream(c, st, rows, latest, cost, now, p) for st in names]
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
    next_retry, state = _next_retry(hints, now)
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
        hints=hints,
        not_retried=p.not_retried if p is not None else [],
        recent_runs=[_point(r) for r in runs],
    )
    report.severity, report.verdict = _verdict(report, latest, p)
    if (warning := advice.unsandboxed(latest)) is not None:
        report.verdict += f"; {warning}"
    report.missing_anything = report.severity is not Severity.OK
    return report


def _stream(
    c: str, st: str, rows: ReportRows, latest: RunOutcome | None, cost: int, now: datetime, p: Present | None
) -> StreamReport:
    rec = next((r for r in rows.records if (r.connector, r.stream) == (c, st)), None)
    state = next((r for r in rows.state if (r.connector, r.stream) == (c, st)), None)
    counts = [g for g in rows.gaps if (g.connector, g.stream) == (c, st)]
    hints = [h for h in (p.hints if p else []) if h.stream == st]
    gaps = _gaps(counts, cost, hints)
    outcome = next((s for s in latest.streams if s.stream == st), None) if latest else None
    coverage = outcome.coverage if outcome else "unknown"
    if coverage == "partial" and not any(g.open for g in gaps) and not any(h.terminal for h in hints):
        coverage = "recovered"
    now_ = next((s for s in p.streams if s.stream == st), None) if p else None
    missing = now_.records_missing_estimate if now_ else 0
    if latest is not None and outcome is not None and _died(latest):
        # What a run that died never got to is in its outcome, not in the ledger.
        missing = max(missing, outcome.records_missing_estimate)
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


def _died(o: RunOutcome) -> bool:
    return o.status in (RunStatus.FAILED, RunStatus.CANCELLED) or o.reason in _CRASHES


def _gaps(rows: list[GapCounts], cost_per_item: int, hints: list[HintNow]) -> list[GapSummary]:
    """Gaps by reason and class; a next retry only where a recovery is on them (a cancelled
    one's gaps keep their not_before in the ledger, but nothing will retry them then)."""
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
                cur.estimated_cost += _cost(g, cost_per_item)
    for cur in merged.values():
        due = [h.until for h in hints if h.reason == cur.reason and h.fate.live and h.until]
        cur.next_retry = min(due, default=None)
    return sorted(merged.values(), key=lambda x: (-x.open, x.reason))


def _cost(g: GapCounts, cost_per_item: int) -> int:
    """What recovering open gaps costs, as their hint prices it: a walk what it re-collects
    (once for the gaps it serves together), anything else each gap at cost_per_item."""
    if g.kind in policy.WALKED_KINDS:
        return walk_cost(g.walk_records, cost_per_item)
    return g.n * cost_per_item


def _next_retry(hints: list[HintNow], now: datetime) -> tuple[datetime | None, str | None]:
    """When the next retry comes and what it is, else why none will and the command."""
    live = [h for h in hints if h.fate.live]
    if live:
        first = min(live, key=lambda h: (h.until is None, h.until or now))
        return first.until, first.says + (f"; {first.command}" if first.command else "")
    stuck = [h for h in hints if not h.fate.live and not h.fate.settled]
    if stuck:
        return None, f"no retry coming: {stuck[0].says}; {stuck[0].command}"
    return None, None


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


def _verdict(r: ConnectorReport, latest: RunOutcome | None, p: Present | None) -> tuple[Severity, str]:
    """How bad it is now and the one line that says so, why, and what next."""
    held = sum(s.records_held for s in r.streams)
    n = r.records_missing_estimate
    unknown = p.gaps_of_unknown_size if p else 0
    missing = f"{held:,} records" + (f", {n:,} missing ({100 * n / max(held + n, 1):.0f}%)" if n else "")
    missing += f", {unknown:,} gap(s) of unknown size" if unknown else ""
    open_gaps = p.gaps_open if p else sum(g.open for s in r.streams for g in s.gaps)
    if latest is None:
        return Severity.FAILING, f"{missing}; no forward run has finished yet"
    if _died(latest):
        why = advice.why(latest) or latest.status.value
        status = latest.status.value
        then = f"; {r.next_retry_state}" if r.next_retry_state else ""
        nxt = advice.owner_step(latest) or f"`pdpp-orch status {latest.run_id}`"
        return Severity.FAILING, f"{missing}; latest run {status} ({why}); {nxt}{then}"
    if r.waiting_on_owner:
        what = f": {r.not_retried[0].says}: {r.not_retried[0].command}" if r.not_retried else ""
        return Severity.WAITING_ON_YOU, f"{missing}; {r.waiting_on_owner:,} waiting on you{what}"
    if open_gaps and any(h.fate.live for h in r.hints):
        return Severity.MISSING_RETRY_PLANNED, f"{missing}; {r.next_retry_state}"
    if open_gaps:
        nxt = r.next_retry_state or (
            r.not_retried[0].says + f": {r.not_retried[0].command}" if r.not_retried else ""
        )
        nxt = nxt or f"`pdpp-orch gaps list {r.connector}`"
        return Severity.MISSING_NO_RETRY, f"{missing}; {open_gaps:,} gap(s) open; {nxt}"
    given_up = [h for h in r.hints if h.fate in (Fate.PARTLY_RECOVERED, Fate.EXHAUSTED)]
    if given_up:
        return Severity.MISSING_NO_RETRY, f"{missing}; {given_up[0].says}: {given_up[0].command}"
    unproven = [s.stream for s in r.streams if s.coverage in ("partial", "unproven")]
    if unproven:
        what = f"coverage not proven for {', '.join(unproven)} by the latest run {latest.run_id}"
        return Severity.MISSING_NO_RETRY, f"{missing}; {what}; `pdpp-orch run {r.connector}` collects again"
    settled = [h.says for h in r.hints if h.fate.settled]
    since = f" ({'; '.join(settled)})" if settled else ""
    planned = "".join(f" · {line}" for line in advice.continuing(latest))
    return Severity.OK, f"none known missing now · {held:,} records{since}{planned}"


# A latest run that died under the connector, whatever it had made durable before.
_CRASHES = frozenset(
    {"connector_exit_without_done", "runtime_error", "connector_stalled", "configuration_error"}
)


def fate_lines(r: ConnectorReport) -> list[str]:
    """Each retry hint's fate and each open gap nobody retries, with the command for it."""
    lines = [h.says + (f": {h.command}" if h.command else "") for h in r.hints]
    return lines + [f"{n.says}: {n.command}" for n in r.not_retried]
