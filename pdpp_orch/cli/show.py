"""How an outcome reads on a terminal."""

from __future__ import annotations

from rich.table import Table

from pdpp_orch.cli.common import out
from pdpp_orch.models import RunOutcome


def print_outcome(o: RunOutcome) -> None:
    """A human-readable outcome."""
    color = {"succeeded": "green", "partially_completed": "yellow"}.get(o.status.value, "red")
    out.print(
        f"[bold {color}]{o.status.value}[/]"
        + (" · needs retry" if o.needs_retry else "")
        + (f" · reason {o.reason}" if o.reason else ""),
        highlight=False,
    )
    out.print(
        f"records: {o.records_durable:,} durable of {o.records_emitted:,} emitted, "
        f"{o.records_rejected:,} rejected, {o.buffered_records_dropped} dropped"
    )
    out.print(
        f"checkpoints: {o.state_streams_committed} of {o.state_streams_staged} committed "
        f"({o.checkpoint_commit_status.value})"
    )
    if o.skipped_by_reason:
        out.print("skipped: " + ", ".join(f"{k} {v:,}" for k, v in o.skipped_by_reason.items()))
    t = Table("stream", "collected", "checkpoint", "coverage", "gaps open")
    for st in o.streams:
        t.add_row(st.stream, f"{st.collected:,}", st.checkpoint, st.coverage, str(st.gaps_open))
    out.print(t)
