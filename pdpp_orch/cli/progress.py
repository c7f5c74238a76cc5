"""Live progress of a run for the CLI, from the run workflow's `progress` query (counts and
stream names only: records never pass through Temporal to get here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError

from pdpp_orch.control.placement import worker_wait
from pdpp_orch.control.waiting import until_ended, workers_polling
from pdpp_orch.models import RunOutcome, RunProgress
from pdpp_orch.times import utc

POLL_S = 0.5
PLAIN_EVERY_S = 5.0
QUERY_TIMEOUT = timedelta(seconds=3)
PING_TIMEOUT = timedelta(seconds=2)
# A run that no worker answers queries of for this long is checked for a polling worker, then
# every WORKER_CHECK_S; two checks in a row that find none are said.
NO_ANSWER_S = 5.0
WORKER_CHECK_S = 10.0
# A run of a placed connector is checked for a worker of its queue this soon (a worker that
# is there takes it in milliseconds), then every WORKER_CHECK_S while it collects.
PLACEMENT_FIRST_S = 2.0


Prompt = Callable[[str], Awaitable[str | None]]


async def watch_run(
    handle: Any,
    run_id: str,
    console: Console,
    *,
    quiet: bool,
    client: Client | None = None,
    prompt: Prompt | None = None,
) -> RunOutcome | None:
    """Wait for the run's end, rendering its progress on `console` unless `quiet`: one bar per
    stream on a terminal, a plain line every few seconds otherwise. Whatever `quiet` says, it
    tells when the run waits on its owner, when no worker polls its task queue, and when the
    Temporal server is out of reach (it keeps waiting). Returns the workflow's outcome (None
    for a cancelled run: its outcome is in the `runs` table)."""
    result = asyncio.ensure_future(
        until_ended(handle, lambda m: console.print(f"{run_id}: {m}", highlight=False))
    )
    view = _Quiet() if quiet else _Bars(console, run_id) if console.is_terminal else _Lines(console, run_id)
    notes = _Notes(console, run_id, handle, client, prompt)
    with view:
        while not result.done():
            p = await _query(handle)
            notes.server(p is not None or client is None or await _reachable(client))
            await notes.show(p)
            view.show(p)
            await asyncio.wait([result], timeout=POLL_S)
    return await result


class _Notes:
    """What a person waiting must be told once: the owner's turn, and a queue nobody works."""

    def __init__(
        self, console: Console, run_id: str, handle: Any, client: Client | None, prompt: Prompt | None
    ):
        self.console, self.run_id, self.handle, self.client = console, run_id, handle, client
        self.prompt = prompt
        self.told: set[str] = set()
        self.unanswered_since = time.monotonic()
        self.next_check = 0.0
        self.idle_checks = 0  # checks in a row that found no worker polling
        self.next_placement = time.monotonic() + PLACEMENT_FIRST_S
        self.lost = False

    def say(self, text: str) -> None:
        self.console.print(f"{self.run_id} {text}", highlight=False)

    def server(self, reached: bool) -> None:
        """Say once when the Temporal server goes out of reach, and when it is back."""
        if reached == (not self.lost):
            return
        self.lost = not reached
        self.say(
            "cannot reach the Temporal server; waiting for it"
            if self.lost
            else "reached the Temporal server again"
        )

    async def show(self, p: RunProgress | None) -> None:
        if p is not None:
            self.unanswered_since = time.monotonic()
            for w in p.waiting:
                if w.request_id not in self.told:
                    self.told.add(w.request_id)
                    asked = await self.prompt(w.request_id) if self.prompt else None
                    self.say(
                        f"waits on its owner: {w.kind}{f' ({asked})' if asked else ''}"
                        f" until {utc(w.expires_at)} (pdpp-orch respond {self.run_id} --data -)"
                    )
            await self._check_placement(p)
            return
        now = time.monotonic()
        if self.client is None or now - self.unanswered_since < NO_ANSWER_S or now < self.next_check:
            return
        self.next_check = now + WORKER_CHECK_S
        await self._check_workers()

    async def _check_placement(self, p: RunProgress) -> None:
        """Once per collect attempt: that it waits for a worker of its connector's task queue."""
        now = time.monotonic()
        collecting = p.placement is not None or p.phase == "collecting"
        if self.client is None or now < self.next_placement or not collecting:
            return
        self.next_placement = now + WORKER_CHECK_S
        try:
            wait = await worker_wait(self.client, self.handle)
        except RPCError:
            return
        if wait is not None and f"placed-{wait.attempt}" not in self.told:
            self.told.add(f"placed-{wait.attempt}")
            self.say(wait.line())

    async def _check_workers(self) -> None:
        try:
            queue = (await self.handle.describe()).task_queue
            polling = await workers_polling(self.client, queue) if self.client else None
        except RPCError:
            return  # the server is out of reach: `server` says so
        # Twice in a row: a worker reconnecting after a server restart polls again in seconds.
        self.idle_checks = self.idle_checks + 1 if polling is False else 0
        if self.idle_checks >= 2 and "no-worker" not in self.told:
            self.told.add("no-worker")
            self.say(
                f"is waiting for a worker: none polls task queue {queue!r}. Start one with "
                "`pdpp-orch worker` (or `pdpp-orch dev`) on that queue (PDPP_TASK_QUEUE)"
            )


class _Quiet:
    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def show(self, p: RunProgress | None) -> None:
        return None


async def _query(handle: Any) -> RunProgress | None:
    # The RPC's own timeout does not hold while the client reconnects to a server that went
    # away (seen: 9.4 s for a 3 s timeout, the whole outage, so the outage went unsaid).
    try:
        async with asyncio.timeout(QUERY_TIMEOUT.total_seconds() + 0.5):
            p: RunProgress = await handle.query(
                "progress", result_type=RunProgress, rpc_timeout=QUERY_TIMEOUT
            )
        return p
    except Exception:
        return None  # no worker has the run yet, it is between tasks, or the server is away


async def _reachable(client: Client) -> bool:
    """Whether the Temporal server answers at all (a query can fail for want of a worker)."""
    try:
        async with asyncio.timeout(PING_TIMEOUT.total_seconds() + 0.5):
            await client.workflow_service.get_system_info(
                GetSystemInfoRequest(), retry=False, timeout=PING_TIMEOUT
            )
        return True
    except (RPCError, TimeoutError):
        return False


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
