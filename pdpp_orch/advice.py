"""What an outcome means for the person reading it: why the run did not succeed, what is
missing, what happens next and which command acts on it. Pure (the CLI, the report and the
web UI's details all say it the same way; workflows may import it)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pdpp_orch.models import Mode, RecoveryState, RecoveryStep, RetryHint, RunOutcome, RunStatus, SandboxMode
from pdpp_orch.times import utc
from workflows import ids


def when(at: datetime, now: datetime) -> str:
    """`2026-12-03 17:00 UTC (in 23h59m)`, or `(overdue by 5m)` for a time already past."""
    delta = at - now
    minutes = round(abs(delta.total_seconds()) / 60)
    if minutes == 0:
        return f"{utc(at)} (now)"
    span = f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
    rel = f"in {span}" if delta >= timedelta(0) else f"overdue by {span}"
    return f"{utc(at)} ({rel})"


def why(o: RunOutcome) -> str | None:
    """`connector_reported_failed: …` — the cause, in words a person can act on."""
    if o.error is None:
        return None
    return f"{o.error.kind}: {o.error.message}" if o.error.message else o.error.kind


def missing(o: RunOutcome) -> str:
    """`4,188 missing (28%)` — records known to be missing, against what was collected; gaps
    whose size is not known (a whole run that failed) are not "none missing": the open gaps
    are said with it. In the present's words (present/derive.now_text), so a run at its end and
    now say one thing one way."""
    n = o.records_missing_estimate
    if n == 0 and o.gaps_open_total:
        return f"none known missing, {o.gaps_open_total:,} gap(s) open"
    if n == 0:
        return "none known missing"
    whole = o.records_durable + n
    return f"{n:,} missing ({100 * n / whole:.0f}%)" if whole else f"{n:,} missing"


def checkpoints(o: RunOutcome) -> str:
    """`3 of 4 committed (partially_committed)`, or `none staged` when no STATE came."""
    if o.state_streams_staged == 0:
        return "none staged (the connector sent no STATE to commit)"
    done = o.state_streams_committed == o.state_streams_staged
    status = "" if done else f" ({o.checkpoint_commit_status.value})"
    return f"{o.state_streams_committed} of {o.state_streams_staged} committed{status}"


def hint_line(h: RetryHint, workflow_id: str | None, now: datetime) -> str:
    """One retry hint: what it retries, when, at what cost, by which recovery."""
    where = f" of {h.scope.stream}" if h.scope.stream else ""
    by = f" by {workflow_id}" if workflow_id else ""
    units = f"{h.estimated_cost:,} unit{'' if h.estimated_cost == 1 else 's'}"
    return (
        f"retry {h.gap_count:,} × {h.reason}{where} not before {when(h.not_before, now)},"
        f" {units}, attempt {h.attempt} of {h.max_attempts}{by}"
    )


def budget_wanted(state: RecoveryState) -> str:
    """`: it needs 1,200 units`: what a recovery's wait for the budget waits for (one item's
    worth for items, a walk's whole estimate: it cannot run in part), empty for any other wait."""
    if state.step is not RecoveryStep.WAITING_BUDGET or state.wanted is None:
        return ""
    return f": it needs {state.wanted:,} unit{'' if state.wanted == 1 else 's'}"


def unsandboxed(o: RunOutcome | None) -> str | None:
    """The warning an opted-out run carries on every surface (DESIGN §14)."""
    if o is None or o.sandbox is not SandboxMode.OFF:
        return None
    return (
        "ran without a sandbox (sandbox = false in its entry, or PDPP_SANDBOX=off): it could read"
        " what the worker can; remove the opt-out to isolate it"
    )


# What the owner does about a failure whose DONE.error.recovery_hint names an action only they
# (or the connector's maintainer) can take; `{c}` is the connector, `{run}` the run.
OWNER_STEPS = {
    "refresh_credentials": "the connector needs fresh credentials: renew what its registry entry gives it"
    " (`env`, secret files), then `pdpp-orch run {c}`",
    "manual_action_required": "the connector needs something done by hand at its source (what it said:"
    " `pdpp-orch status {run}`), then `pdpp-orch run {c}`",
    "update_selector": "the connector no longer reads its source (its selectors drifted): it needs an"
    " update, then `pdpp-orch run {c}`",
    "retry_on_connector_upgrade": "the connector needs an upgrade to collect this: upgrade it, then"
    " `pdpp-orch run {c}`",
}


def owner_step(o: RunOutcome) -> str | None:
    """What the owner does about a run whose connector named an action only they can take."""
    step = OWNER_STEPS.get(o.recovery_action or "")
    if step is None or o.status is RunStatus.SUCCEEDED:
        return None
    return step.format(c=o.connector, run=o.run_id)


def continuing(o: RunOutcome) -> list[str]:
    """`historical backfill continues next run: messages 1..1000 of 7 done (1,000 of 1,000)` —
    planned work a stream's connector continues on its next run (no miss, no retry)."""
    said = {x.stream: x for x in o.continuations}
    lines = []
    for st in o.streams:
        if st.continues:
            x = said.get(st.stream)
            done = (
                f" {x.slice_start}..{x.slice_end} of {x.boundary} done ({x.covered:,} of {x.considered:,})"
                if x
                else ""
            )
            lines.append(f"historical backfill continues next run: {st.stream}{done}")
    return lines


def next_steps(o: RunOutcome, now: datetime) -> list[str]:
    """What happens next for this run, and the commands that act on it (after the warning of a
    run without a sandbox)."""
    warning = unsandboxed(o)
    return ([warning] if warning else []) + planned(o, now)


def planned(o: RunOutcome, now: datetime) -> list[str]:
    """What the run's end planned next, and the commands that act on it."""
    c = o.connector
    if o.status is RunStatus.CANCELLED:
        return [
            f"cancelled: nothing committed, every accepted record kept; `pdpp-orch run {c}` collects "
            "again from the last committed checkpoints"
        ]
    if o.status is RunStatus.SUCCEEDED and o.gaps_open_total == 0:
        extra = " (a cancel came too late: checkpoints were already committing)" if o.cancel_too_late else ""
        return continuing(o) or [f"nothing to do{extra}"]
    if o.mode is Mode.RECOVERY and not o.retry_hints:
        hint = ids.recovery_run_hint(c, o.run_id)
        wid = ids.recovery_workflow_id(hint) if hint else "its recovery"
        return [
            f"a recovery run: {wid} settles the gaps it was served and retries what is still open:"
            f" `pdpp-orch recover show {c}`"
        ]
    lines = continuing(o)
    step = owner_step(o)
    if step:
        lines.append(step)
    wids = dict(zip((h.hint_id for h in o.retry_hints), o.recovery_workflow_ids, strict=False))
    for h in o.retry_hints:
        lines.append(hint_line(h, wids.get(h.hint_id), now))
    if o.retry_hints:
        lines.append(
            f"`pdpp-orch recover show {c}` follows it; `pdpp-orch recover now {c}` brings it forward"
        )
    elif o.status is RunStatus.FAILED and not step:
        lines.append(f"nothing retries this on its own: fix the cause above, then `pdpp-orch run {c}`")
    elif o.gaps_open_total:
        lines.append(
            f"{o.gaps_open_total:,} gap(s) open that the runtime does not retry on its own (the owner's or"
            f" the connector's to fix): `pdpp-orch gaps list {c}`"
        )
    elif not step:
        lines.append(f"nothing retries this on its own; `pdpp-orch run {c}` collects again")
    return lines
