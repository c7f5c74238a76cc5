"""Live progress of a run for the CLI, from the run workflow's `progress` query (counts and
stream names only: records never pass through Temporal to get here)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from pdpp_orch.models import RunOutcome, RunProgress

POLL_S = 0.5
PLAIN_EVERY_S = 5.0
QUERY_TIMEOUT = timedelta(seconds=3)


async def watch_run(handle: Any, run_id: str, console: Console, *, quiet: bool) -> RunOutcome:
    """Wait for the run's outcome, rendering its progress on `console` unless `quiet`: one bar
    per stream on a terminal, a plain line every few seconds otherwise."""
    result = asyncio.ensure_future(handle.result())
    if not quiet:
        view = _Bars(console, run_id) if console.is_terminal else _Lines(console, run_id)
        told: set[str] = set()
        with view:
            while not result.done():
                p = await _query(handle)
                if p is not None:
                    for w in p.waiting:
                        if w.request_id not in told:
                            told.add(w.request_id)
                            until = f"{w.expires_at:%Y-%m-%d %H:%M} UTC"
                            console.print(
                                f"{run_id} waits on its owner: {w.kind} until {until}"
                                f" (pdpp-orch respond {run_id} --data -)",
                                highlight=False,
                            )
                view.show(p)
                await asyncio.wait([result], timeout=POLL_S)
    outcome: RunOutcome = await result
    return outcome


async def _query(handle: Any) -> RunProgress | None:
    try:
        p: RunProgress = await handle.query("progress", result_type=RunProgress, rpc_timeout=QUERY_TIMEOUT)
        return p
    except Exception:
        return None  # no worker has the run yet, or it is between tasks: try again shortly


def summary(p: RunProgress | None) -> str:
    """One line: phase, totals, and each stream's count (of its estimate, when known)."""
    if p is None:
        return "queued (waiting for a worker to pick it up)"
    live = p.live
    streams = ", ".join(
        f"{name} {s.collected:,}" + (f"/{s.total:,}" if s.total else "")
        for name, s in sorted(live.streams.items())
    )
    return (
        f"{p.phase} · {live.records_durable:,} durable of {live.records_emitted:,} emitted"
        f" · {live.skipped:,} skipped · {live.checkpoints} checkpoint(s) · attempt {live.attempt}"
        + (f" · {streams}" if streams else "")
    )


class _Lines:
    """Off a terminal (logs, CI): a plain line every PLAIN_EVERY_S seconds."""

    def __init__(self, console: Console, run_id: str):
        self.console, self.run_id, self.last = console, run_id, 0.0

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def show(self, p: RunProgress | None) -> None:
        if time.monotonic() - self.last >= PLAIN_EVERY_S:
            self.console.print(f"{self.run_id}: {summary(p)}", highlight=False)
            self.last = time.monotonic()


class _Bars:
    """On a terminal: a line for the run and a bar per stream (indeterminate until the
    connector says how many to expect)."""

    def __init__(self, console: Console, run_id: str):
        self.run_id = run_id
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.head = self.progress.add_task(run_id, total=None, counts="starting")
        self.streams: dict[str, TaskID] = {}

    def __enter__(self) -> _Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def show(self, p: RunProgress | None) -> None:
        if p is None:
            self.progress.update(self.head, counts=summary(None))
            return
        live = p.live
        self.progress.update(
            self.head,
            description=f"{self.run_id} · {p.phase}",
            counts=f"{live.records_durable:,} durable · {live.skipped:,} skipped"
            f" · {live.checkpoints} checkpoint(s)",
        )
        for name, s in sorted(live.streams.items()):
            task = self.streams.get(name)
            if task is None:
                task = self.streams[name] = self.progress.add_task(f"  {name}", total=None, counts="")
            self.progress.update(
                task,
                completed=s.collected,
                total=max(s.total, s.collected) if s.total else None,
                counts=f"{s.collected:,}"
                + (f" of ~{s.total:,}" if s.total else "")
                + (" ✓" if s.checkpointed else ""),
            )
