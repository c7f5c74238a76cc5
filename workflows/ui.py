"""What the Temporal web UI shows of our workflows: summaries and markdown details, written
once here whoever starts the workflow (the CLI, a Schedule, the demo, a parent workflow).
Counts, enums and our own ids only: these texts are not encrypted. The UI renders them as
Markdown: a connector's words in them (skip reasons, stream names, an interaction's kind) are
escaped (`inert`, words.markdown), so none is a link or markup."""

from __future__ import annotations

from datetime import datetime

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from pdpp_orch import advice, words
from pdpp_orch import search_attributes as sa
from pdpp_orch.models import (
    AssistanceNotice,
    LiveProgress,
    PlacementWait,
    RecoveryEnd,
    RecoveryEnding,
    RecoveryState,
    RecoveryStep,
    RetryHint,
    RunInput,
    RunOutcome,
)
from pdpp_orch.models.progress import owner_action_text
from pdpp_orch.times import utc


def run_summary(inp: RunInput) -> str:
    """`chatgpt · forward · manual`."""
    return f"{inp.connector} · {inp.mode.value} · {inp.trigger.value}"


def run_details(inp: RunInput) -> str:
    return f"run `{inp.run_id}` of connector `{inp.connector}`"


def inert(o: RunOutcome) -> RunOutcome:
    """The outcome with the connector's words in it (its skip reasons) as literal Markdown."""
    md = words.markdown
    return o.model_copy(
        update={
            "skipped_by_reason": {md(k): v for k, v in o.skipped_by_reason.items()},
            "retry_hints": [h.model_copy(update={"reason": md(h.reason)}) for h in o.retry_hints],
        }
    )


def recovery_run_summary(connector: str, reason: str, round_no: int) -> str:
    return f"{connector} · recovery · {words.markdown(reason)} · round {round_no}"


def recovery_summary(connector: str, hint: RetryHint) -> str:
    """`chatgpt · recover 4,188 × rate_limited`."""
    return f"{connector} · recover {hint.gap_count:,} × {words.markdown(hint.reason)}"


def start_attributes(inp: RunInput) -> TypedSearchAttributes:
    """The search attributes a run carries from its start (the workflow adds the rest)."""
    return TypedSearchAttributes(
        [SearchAttributePair(sa.CONNECTOR, inp.connector), SearchAttributePair(sa.TRIGGER, inp.trigger.value)]
    )


def live_details(p: LiveProgress) -> str:
    """A collecting run: its counts so far and a table of its streams."""
    rows = "".join(
        f"| {words.markdown(name)} | {s.collected:,}{f' of ~{s.total:,}' if s.total else ''} |"
        f" {s.skipped:,} | {'yes' if s.checkpointed else ''} |\n"
        for name, s in sorted(p.streams.items())
    )
    return (
        f"**collecting** (attempt {p.attempt}){f' · now `{p.stream}`' if p.stream else ''}\n\n"
        f"- records durable: {p.records_durable:,} of {p.records_emitted:,} emitted"
        f" ({p.records_rejected:,} rejected)\n"
        f"- skipped so far: {p.skipped:,} · checkpoints proven: {p.checkpoints}\n\n"
        + (f"| stream | collected | skipped | checkpoint |\n|---|---|---|---|\n{rows}" if rows else "")
    )


def outcome_details(o: RunOutcome, now: datetime) -> str:
    """A finished run, as it was at its end: its outcome in a few lines, why, what was missing
    and what was planned — and where to see what became of it since."""
    o = inert(o)
    skipped = ", ".join(f"{k}: {v:,}" for k, v in o.skipped_by_reason.items()) or "none"
    why = advice.why(o)
    recoveries = ", ".join(f"`{w}`" for w in o.recovery_workflow_ids)
    return (
        f"**{o.status.value}**{' · needs retry' if o.needs_retry else ''}"
        f"{f' · reason `{o.reason}`' if o.reason else ''}\n\n"
        f"at the end of the run ({utc(o.finished_at)}):\n\n"
        + (f"- why: {why}\n" if why else "")
        + f"- records durable: {o.records_durable:,} of {o.records_emitted:,} emitted"
        f" ({o.records_rejected:,} rejected, {o.buffered_records_dropped} dropped) · {advice.missing(o)}\n"
        f"- checkpoints: {advice.checkpoints(o)}\n"
        f"- skipped: {skipped}\n"
        f"- gaps: {o.gaps_opened:,} opened, {o.gaps_open_total:,} open for this connector\n"
        + "".join(f"- next: {line}\n" for line in advice.next_steps(o, now))
        + (f"\nits recovery: {recoveries} (live, in its own details)" if recoveries else "")
        + build_line(o.build_id)
        + f"\n\nwhat became of it since: `pdpp-orch status {o.run_id}`"
    )


def build_line(build_id: str | None) -> str:
    """Which build runs (or ran) a run, when workers are versioned: the run is pinned to it."""
    return f"\n\nbuild `{build_id}` (pinned)\n" if build_id else ""


_WHY = {
    RecoveryStep.WAITING_BUDGET: "for the budget's next window",
    RecoveryStep.WAITING_LEASES: "for leased gaps to come back",
    RecoveryStep.BACKING_OFF: "backing off",
}


def recovery_wait_why(state: RecoveryState) -> str:
    """`until not_before 2026-12-03 17:00 UTC`, `for the budget's next window`: what a wait is for."""
    if state.step is RecoveryStep.WAITING_NOT_BEFORE:
        return f"until not_before {utc(state.until)}" if state.until else "until not_before"
    return _WHY.get(state.step, state.step.value)


def recovery_phase(state: RecoveryState) -> str:
    """What a recovery is doing, in a few words (`pdpp-orch recover show`)."""
    if state.step is RecoveryStep.RECOVERING:
        return f"recovery run {state.round}"
    if state.step is RecoveryStep.ASKING_BUDGET:
        return "asking the budget"
    if state.step is RecoveryStep.DONE:
        return "done"
    return f"waiting {recovery_wait_why(state)}{advice.budget_wanted(state)}"


def _gaps(state: RecoveryState) -> str:
    p = state.progress
    return f"- gaps: {p.open:,} open, {p.recovered:,} recovered, {p.terminal:,} terminal\n"


def recovery_wait_details(state: RecoveryState) -> str:
    until = f" — until {utc(state.until)}" if state.until else ""
    return f"**waiting {recovery_wait_why(state)}**{advice.budget_wanted(state)}{until}\n\n{_gaps(state)}"


def recovery_run_details(connector: str, state: RecoveryState) -> str:
    return (
        f"**recovering**: run `{state.run_id}` (round {state.round})\n\n{_gaps(state)}"
        f"\nfollow it: `pdpp-orch watch {state.run_id}`"
    )


def recovery_end_details(connector: str, end: RecoveryEnd) -> str:
    """A recovery that ended: settled, gave up, or cancelled by whom — and the command for what
    is still open."""
    p = end.progress
    counts = (
        f"{p.recovered:,} recovered, {p.terminal:,} terminal, {p.open:,} open · {end.runs} recovery run(s)"
    )
    again = f"\n\n`pdpp-orch recover now {connector}` starts it again" if p.open else ""
    if end.ending is RecoveryEnding.CANCELLED:
        by = words.markdown(end.said) if end.said else "someone who gave no reason"
        return f"**cancelled** by {by} at {utc(end.at)} · {counts}{again}"
    word = "done" if end.ending is RecoveryEnding.DONE else "gave up"
    return f"**{word}** at {utc(end.at)} · {counts}{again}"


def assistance_details(run_id: str, notices: list[AssistanceNotice]) -> str:
    """The lines a collecting run adds while its connector asks its owner for help."""
    if not notices:
        return ""
    lines = "".join(
        f"- {owner_action_text(n.owner_action)}; the run is {n.progress_posture.replace('_', ' ')}"
        f"{f', until {utc(n.expires_at)}' if n.expires_at else ''}\n"
        for n in notices
    )
    return (
        f"\n\n**the connector asks you to:**\n\n{lines}\n(the message: `pdpp-orch runs`; no answer is needed)"
    )


def waiting_details(run_id: str, kind: str, until: datetime) -> str:
    return (
        f"**waiting on the owner**: {words.markdown(kind)}, until {utc(until)}\n\n"
        f"answer with `pdpp-orch respond {run_id} --data -`"
    )


def claim_wait_details(holder: str, connector: str) -> str:
    return (
        f"**waiting** for run `{holder}` of {connector} to end (one run per connector at a "
        "time; start with --allow-concurrent to run alongside)"
    )


def placement_details(connector: str, w: PlacementWait) -> str:
    """A run waiting for a worker of its connector's task queue."""
    return (
        f"**waiting for a worker** on task queue `{w.task_queue}` since {utc(w.since)}:"
        f" {connector} runs only there (`[connectors.{connector}] task_queue`)\n\n"
        f"start `PDPP_TASK_QUEUE={w.task_queue} pdpp-orch worker` on the machine with its data; without"
        f" one the run fails at {utc(w.until)} (`worker_unavailable`), nothing lost"
    )
