"""What the Temporal web UI shows of our workflows: summaries and markdown details, written
once here whoever starts the workflow (the CLI, a Schedule, the demo, a parent workflow).
Counts, enums and our own ids only: these texts are not encrypted."""

from __future__ import annotations

from datetime import datetime

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from pdpp_orch import advice
from pdpp_orch import search_attributes as sa
from pdpp_orch.models import AssistanceNotice, LiveProgress, PlacementWait, RetryHint, RunInput, RunOutcome
from pdpp_orch.models.progress import owner_action_text


def run_summary(inp: RunInput) -> str:
    """`chatgpt · forward · manual`."""
    return f"{inp.connector} · {inp.mode.value} · {inp.trigger.value}"


def run_details(inp: RunInput) -> str:
    return f"run `{inp.run_id}` of connector `{inp.connector}`"


def recovery_run_summary(connector: str, reason: str, round_no: int) -> str:
    return f"{connector} · recovery · {reason} · round {round_no}"


def recovery_summary(connector: str, hint: RetryHint) -> str:
    """`chatgpt · recover 4,188 × rate_limited`."""
    return f"{connector} · recover {hint.gap_count:,} × {hint.reason}"


def start_attributes(inp: RunInput) -> TypedSearchAttributes:
    """The search attributes a run carries from its start (the workflow adds the rest)."""
    return TypedSearchAttributes(
        [SearchAttributePair(sa.CONNECTOR, inp.connector), SearchAttributePair(sa.TRIGGER, inp.trigger.value)]
    )


def live_details(p: LiveProgress) -> str:
    """A collecting run: its counts so far and a table of its streams."""
    rows = "".join(
        f"| {name} | {s.collected:,}{f' of ~{s.total:,}' if s.total else ''} | {s.skipped:,} |"
        f" {'yes' if s.checkpointed else ''} |\n"
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
    """A finished run: its outcome in a few lines, why, what is missing and what comes next."""
    skipped = ", ".join(f"{k}: {v:,}" for k, v in o.skipped_by_reason.items()) or "none"
    why = advice.why(o)
    return (
        f"**{o.status.value}**{' · needs retry' if o.needs_retry else ''}"
        f"{f' · reason `{o.reason}`' if o.reason else ''}\n\n"
        + (f"- why: {why}\n" if why else "")
        + f"- records durable: {o.records_durable:,} of {o.records_emitted:,} emitted"
        f" ({o.records_rejected:,} rejected, {o.buffered_records_dropped} dropped) · {advice.missing(o)}\n"
        f"- checkpoints: {o.state_streams_committed} of {o.state_streams_staged} committed"
        f" ({o.checkpoint_commit_status.value})\n"
        f"- skipped: {skipped}\n"
        f"- gaps: {o.gaps_opened:,} opened, {o.gaps_open_total:,} open for this connector\n"
        + "".join(f"- next: {line}\n" for line in advice.next_steps(o, now))
    )


def assistance_details(run_id: str, notices: list[AssistanceNotice]) -> str:
    """The lines a collecting run adds while its connector asks its owner for help."""
    if not notices:
        return ""
    lines = "".join(
        f"- {owner_action_text(n.owner_action)}; the run is {n.progress_posture.replace('_', ' ')}"
        f"{f', until {n.expires_at:%Y-%m-%d %H:%M} UTC' if n.expires_at else ''}\n"
        for n in notices
    )
    return (
        f"\n\n**the connector asks you to:**\n\n{lines}\n(the message: `pdpp-orch runs`; no answer is needed)"
    )


def waiting_details(run_id: str, kind: str, until: str) -> str:
    return (
        f"**waiting on the owner**: {kind}, until {until} UTC\n\n"
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
        f"**waiting for a worker** on task queue `{w.task_queue}` since {w.since:%Y-%m-%d %H:%M:%S} UTC:"
        f" {connector} runs only there (`[connectors.{connector}] task_queue`)\n\n"
        f"start `PDPP_TASK_QUEUE={w.task_queue} pdpp-orch worker` on the machine with its data; without"
        f" one the run fails at {w.until:%Y-%m-%d %H:%M:%S} UTC (`worker_unavailable`), nothing lost"
    )
