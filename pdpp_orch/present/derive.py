"""The present of a run or a connector, derived from what the loader gathered: what is missing
now, every hint's fate, what nobody retries, the runs that came after, and the lines that say
what happens next. Where the run's end and now differ, `at_end` tells the end in one line."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pdpp_orch import advice
from pdpp_orch.models import RecoveryClass, RunOutcome, RunStatus
from pdpp_orch.present.estimate import Missing, OpenGaps, missing, missing_text
from pdpp_orch.present.fates import hint_now
from pdpp_orch.present.model import (
    Fate,
    HintLedger,
    HintNow,
    LaterRun,
    NotRetried,
    Present,
    RecoveryLook,
    StreamNow,
    UnplannedGaps,
    WorkflowState,
)
from pdpp_orch.times import utc

_WHOSE = {
    RecoveryClass.OWNER_ACTION: "the owner's to fix",
    RecoveryClass.CONNECTOR_DEFECT: "the connector's to fix",
}


def _not_retried(u: UnplannedGaps, c: str, runnable: str) -> NotRetried:
    whose = _WHOSE.get(u.recovery_class, "a miss nobody can retry yet")
    where = f" of {u.stream}" if u.stream != "*" else ""
    command = f"`pdpp-orch gaps list {c}`; `pdpp-orch gaps requeue GAP_ID` tries one again{runnable}"
    if u.recovery_class is RecoveryClass.UNKNOWN:
        # A connector's own word with no class (no recovery_hint, no mapping): the operator says
        # what it means, and the next run reads it.
        command += (
            f"; or class the reason in the registry, `[connectors.{c}.reasons] {u.reason} ="
            ' "informational"` (no miss), "owner_action" or "transient" (retried)'
        )
    return NotRetried(
        stream=u.stream,
        reason=u.reason,
        recovery_class=u.recovery_class,
        open=u.open,
        says=f"{u.open:,} × {u.reason}{where} open, not retried on its own"
        f" ({u.recovery_class.value}: {whose})",
        command=command,
    )


def _order(h: HintNow) -> tuple[int, str]:
    return (0 if h.fate.live else 2 if h.fate.settled else 1, h.hint_id)


def _line(says: str, command: str | None) -> str:
    return f"{says}: {command}" if command else says


def _later(later: list[LaterRun]) -> str:
    last = later[-1]
    done = f", {last.status}{f' at {utc(last.finished_at)}' if last.finished_at else ''}"
    more = f" ({len(later)} forward runs since)" if len(later) > 1 else ""
    return f"a later run: {last.run_id}{done}{more}: `pdpp-orch status {last.run_id}`"


def _warned(lines: list[str], outcome: RunOutcome | None) -> list[str]:
    """What happens next; a run without a sandbox says so first, whatever comes next."""
    warning = advice.unsandboxed(outcome)
    return lines if warning is None or warning in lines else [warning, *lines]


def _next(
    c: str,
    hints: list[HintNow],
    not_retried: list[NotRetried],
    later: list[LaterRun],
    m: Missing,
    outcome: RunOutcome | None,
) -> list[str]:
    lines = [_line(h.says, h.command) for h in hints]
    lines += [_line(n.says, n.command) for n in not_retried]
    if later:
        lines.append(_later(later))
    given_up = any(h.fate in (Fate.PARTLY_RECOVERED, Fate.EXHAUSTED) for h in hints)
    if any(h.fate.live or not h.fate.settled for h in hints) or not_retried or later or given_up:
        return lines
    if outcome is not None and (
        outcome.status is RunStatus.CANCELLED
        or (outcome.status is RunStatus.FAILED and not outcome.retry_hints)
    ):
        return lines + advice.next_steps(outcome, outcome.finished_at)
    if m.records or m.unknown_size:
        return [*lines, f"nothing retries it on its own; `pdpp-orch run {c}` collects again"]
    if outcome is not None and not hints and outcome.status is not RunStatus.FAILED:
        # Nothing happened since: what the end said next still holds (a late cancel included).
        return lines + advice.next_steps(outcome, outcome.finished_at)
    return [*lines, "nothing to do"]


def _streams(open_gaps: dict[str, list[OpenGaps]], names: Iterable[str] | None) -> list[StreamNow]:
    wanted = sorted(set(open_gaps) if names is None else set(names))
    out = []
    for s in wanted:
        groups = open_gaps.get(s, [])
        m = missing(groups)
        out.append(
            StreamNow(
                stream=s,
                records_missing_estimate=m.records,
                gaps_open=sum(g.n for g in groups),
                gaps_of_unknown_size=m.unknown_size,
            )
        )
    return out


def _at_end(o: RunOutcome) -> str:
    plan = advice.planned(o, o.finished_at)
    return f"at the end ({utc(o.finished_at)}): {advice.missing(o)}; {plan[0]}"


def present(
    connector: str,
    hints: list[HintLedger],
    looks: dict[str, RecoveryLook],
    open_gaps: dict[str, list[OpenGaps]],
    unplanned: list[UnplannedGaps],
    now: datetime,
    *,
    later: list[LaterRun] | None = None,
    outcome: RunOutcome | None = None,
    runnable: str = "",
) -> Present:
    """The present of `connector` (`outcome` given: of that run, its streams and hints)."""
    later = later or []
    names = None
    if outcome is not None:
        names = {s.stream for s in outcome.streams} | {h.stream for h in hints}
    absent = RecoveryLook(workflow_id="", state=WorkflowState.ABSENT)
    fates = sorted(
        (hint_now(h, looks.get(h.hint_id, absent), connector, now, runnable) for h in hints), key=_order
    )
    streams = [s for s in _streams(open_gaps, names) if outcome is not None or s.gaps_open]
    m = Missing(
        sum(s.records_missing_estimate for s in streams), sum(s.gaps_of_unknown_size for s in streams)
    )
    not_retried = [
        _not_retried(u, connector, runnable) for u in unplanned if names is None or u.stream in names
    ]
    gaps_open = sum(g.n for gs in open_gaps.values() for g in gs)
    p = Present(
        at=now,
        records_missing_estimate=m.records,
        gaps_of_unknown_size=m.unknown_size,
        gaps_open=gaps_open,
        streams=streams,
        hints=fates,
        not_retried=not_retried,
        later_runs=later,
        next=_warned(_next(connector, fates, not_retried, later, m, outcome), outcome),
    )
    if outcome is not None:
        p.changed = (
            bool(later)
            or m.records != outcome.records_missing_estimate
            or gaps_open != outcome.gaps_open_total
            or any(not h.fate.live for h in fates if h.hint_id in {x.hint_id for x in outcome.retry_hints})
        )
        p.at_end = _at_end(outcome) if p.changed else None
    return p


def now_text(p: Present, durable: int) -> str:
    """`now: 300 missing (97%), 300 gap(s) open`, or `now: none known missing`."""
    m = Missing(p.records_missing_estimate, p.gaps_of_unknown_size)
    whole = durable + m.records
    gaps = f", {p.gaps_open:,} gap(s) open for the connector" if p.gaps_open else ""
    return f"now ({utc(p.at)}): {missing_text(m, whole)}{gaps}"


def fate_brief(h: HintNow) -> str:
    """`waiting until 2026-12-04 17:00 UTC`, `cancelled by the demo`, `recovered`: a hint's fate in a cell."""
    word = h.fate.value.replace("_", " ")
    if h.fate is Fate.RECOVERED:
        return f"all {h.recovered:,} recovered"
    if h.fate in (Fate.PARTLY_RECOVERED, Fate.EXHAUSTED):
        return f"{h.recovered:,} recovered, {h.terminal:,} given up"
    if h.until is not None:
        return f"{word} until {utc(h.until)}"
    if h.fate is Fate.CANCELLED and h.by:
        return f"{word} by {h.by}"
    if h.fate is Fate.RUNNING and h.run_id:
        return f"{word}: {h.run_id}"
    return word


def brief(p: Present) -> str:
    """What is missing now and where its retries stand, in a table cell; empty when nothing
    changed since the run's end."""
    if not p.changed:
        return ""
    m = missing_text(Missing(p.records_missing_estimate, p.gaps_of_unknown_size))
    fates = "; ".join(fate_brief(h) for h in p.hints[:2])
    later = f"; later run {p.later_runs[-1].run_id}" if p.later_runs and not fates else ""
    return f"now {m}" + (f"; {fates}" if fates else "") + later
