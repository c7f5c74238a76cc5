"""Live progress of a run for the CLI: read from the `runs` row the collect activity updates at
every flush (records never pass through Temporal to get here)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pdpp_orch.models import RunOutcome
from pdpp_orch.store import Store

POLL_S = 0.5
PLAIN_EVERY_S = 5.0


async def watch_run(
    handle: Any, database_url: str, run_id: str, console: Console, *, quiet: bool
) -> RunOutcome:
    """Wait for the run's outcome, rendering progress on `console` unless `quiet`."""
    result = asyncio.ensure_future(handle.result())
    if quiet:
        outcome: RunOutcome = await result
        return outcome
    store = await Store.connect(database_url, max_size=1)
    try:
        if console.is_terminal:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as bar:
                task = bar.add_task(f"{run_id}: starting")
                while not result.done():
                    bar.update(task, description=f"{run_id}: {await _line(store, run_id)}")
                    await asyncio.wait([result], timeout=POLL_S)
        else:
            last = 0.0
            while not result.done():
                if time.monotonic() - last >= PLAIN_EVERY_S:
                    console.print(f"{run_id}: {await _line(store, run_id)}", highlight=False)
                    last = time.monotonic()
                await asyncio.wait([result], timeout=POLL_S)
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    outcome = await result
    return outcome


async def _line(store: Store, run_id: str) -> str:
    row = await store.get_run(run_id)
    if row is None:
        return "queued (waiting for a worker to pick it up)"
    return (
        f"{row['status']} · {row['records_durable']:,} durable of {row['records_emitted']:,} emitted"
        f" · attempt {row['attempt']}"
    )
