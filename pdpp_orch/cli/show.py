"""How a run reads on a terminal: its outcome as it was at its end (what happened, why, what was
missing) and the present — what is missing now and what happens next, with the commands — both
where they differ (DESIGN §12)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table
from temporalio.client import Client

from pdpp_orch import advice
from pdpp_orch.cli.common import out
from pdpp_orch.control.connect import connect
from pdpp_orch.control.present import run_present, runnable
from pdpp_orch.control.stack import Stack, demo_registry, registry
from pdpp_orch.models import RunOutcome, RunStatus
from pdpp_orch.present.derive import now_text
from pdpp_orch.present.model import Present
from pdpp_orch.settings import Settings
from pdpp_orch.store import Store

COLORS = {RunStatus.SUCCEEDED: "green", RunStatus.PARTIALLY_COMPLETED: "yellow"}
CONNECT_S = 10.0


async def temporal(found: Stack, namespace: str) -> Client | None:
    """A client, or None when Temporal does not answer (the present then says so per recovery)."""
    with contextlib.suppress(Exception):
        return await asyncio.wait_for(connect(found.temporal_address, namespace), CONNECT_S)
    return None


def note(s: Settings, found: Stack, connector: str) -> str:
    """What to say after a command that needs `connector` known (empty: it works here)."""
    return runnable(registry(s, found), connector, demo_registry(s))


async def present_of(
    s: Settings, found: Stack, store: Store, client: Client | None, o: RunOutcome, started: datetime
) -> Present:
    """The present of run `o`, now."""
    return await run_present(store, client, o, started, datetime.now(UTC), note(s, found, o.connector))


def as_json(o: RunOutcome, p: Present | None) -> dict[str, Any]:
    """The outcome's fields as recorded, and the present beside them as `now`."""
    return o.model_dump(mode="json") | ({"now": p.model_dump(mode="json")} if p is not None else {})


def print_outcome(o: RunOutcome, p: Present | None = None) -> None:
    """A human-readable outcome: the run's end, then (with `p`) what happens next from now."""
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
        f"{o.records_rejected:,} rejected, {o.buffered_records_dropped} dropped · {advice.missing(o)}",
        highlight=False,
    )
    out.print(f"checkpoints: {advice.checkpoints(o)}", highlight=False)
    if o.skipped_by_reason:
        out.print("skipped: " + ", ".join(f"{escape(k)} {v:,}" for k, v in o.skipped_by_reason.items()))
    if o.reported_by_reason:
        kept = ", ".join(f"{escape(k)} {v:,}" for k, v in o.reported_by_reason.items())
        out.print(f"reported (records kept, not missing): {kept}")
    if p is not None and p.changed:
        out.print(escape(p.at_end or ""), highlight=False)
        out.print(escape(now_text(p, o.records_durable)), highlight=False)
    steps = p.next if p is not None else advice.next_steps(o, datetime.now(UTC))
    for i, line in enumerate(steps):
        out.print(("next: " if i == 0 else "      ") + escape(line), highlight=False)
    if o.streams:
        out.print(_streams(o, p))


def _streams(o: RunOutcome, p: Present | None) -> Table:
    """Each stream at the end; where now differs, what is missing and open now beside it."""
    if p is None or not p.changed:
        t = Table("stream", "collected", "missing", "checkpoint", "coverage", "gaps open")
        for st in o.streams:
            missing = f"{st.records_missing_estimate:,}" if st.records_missing_estimate else ""
            t.add_row(
                escape(st.stream), f"{st.collected:,}", missing, st.checkpoint, st.coverage, str(st.gaps_open)
            )
        return t
    now = {s.stream: s for s in p.streams}
    t = Table(
        "stream", "collected", "missing at the end", "missing now", "checkpoint", "coverage", "gaps open now"
    )
    for st in o.streams:
        n = now.get(st.stream)
        then = f"{st.records_missing_estimate:,}" if st.records_missing_estimate else ""
        missing = f"{n.records_missing_estimate:,}" if n and n.records_missing_estimate else ""
        gaps = str(n.gaps_open) if n else "0"
        t.add_row(escape(st.stream), f"{st.collected:,}", then, missing, st.checkpoint, st.coverage, gaps)
    return t
