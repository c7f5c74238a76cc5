"""How an outcome reads on a terminal: what happened, why, what is missing, what comes next."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.markup import escape
from rich.table import Table

from pdpp_orch import advice
from pdpp_orch.cli.common import out
from pdpp_orch.models import RunOutcome, RunStatus

COLORS = {RunStatus.SUCCEEDED: "green", RunStatus.PARTIALLY_COMPLETED: "yellow"}


def print_outcome(o: RunOutcome) -> None:
    """A human-readable outcome."""
    color = COLORS.get(o.status, "red")
    out.print(
        f"[bold {color}]{o.status.value}[/]"
        + (" · needs retry" if o.needs_retry else "")
        + (f" · reason {o.reason}" if o.reason else ""),
        highlight=False,
    )
    why = advice.why(o)
    if why:
        out.print(f"why: {escape(why)}", highlight=False)
    out.print(
        f"records: {o.records_durable:,} durable of {o.records_emitted:,} emitted, "
        f"{o.records_rejected:,} rejected, {o.buffered_records_dropped} dropped · {advice.missing(o)}"
    )
    out.print(
        f"checkpoints: {o.state_streams_committed} of {o.state_streams_staged} committed "
        f"({o.checkpoint_commit_status.value})"
    )
    if o.skipped_by_reason:
        out.print("skipped: " + ", ".join(f"{escape(k)} {v:,}" for k, v in o.skipped_by_reason.items()))
    if o.reported_by_reason:
        kept = ", ".join(f"{escape(k)} {v:,}" for k, v in o.reported_by_reason.items())
        out.print(f"reported (records kept, not missing): {kept}")
    for i, line in enumerate(advice.next_steps(o, datetime.now(UTC))):
        out.print(("next: " if i == 0 else "      ") + escape(line), highlight=False)
    if o.streams:
        t = Table("stream", "collected", "missing", "checkpoint", "coverage", "gaps open")
        for st in o.streams:
            t.add_row(
                escape(st.stream),
                f"{st.collected:,}",
                f"{st.records_missing_estimate:,}" if st.records_missing_estimate else "",
                st.checkpoint,
                st.coverage,
                str(st.gaps_open),
            )
        out.print(t)
