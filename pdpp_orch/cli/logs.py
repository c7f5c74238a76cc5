"""`logs RUN_ID`: a run's own events (attempts and how each ended, records made durable,
checkpoints committed, skips, quarantined lines, the outcome) with the connector's stderr,
attempt by attempt, in time order; `--follow` until the run ends."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.markup import escape

from pdpp_orch.cli.common import DataDirOpt, endpoints, out, run_async, settings
from pdpp_orch.cli.complete import run_ids
from pdpp_orch.control import UsageError
from pdpp_orch.control.stack import command_store
from pdpp_orch.settings import Settings
from pdpp_orch.store import LogEntry, Store
from pdpp_orch.store.logs import LogCursor
from pdpp_orch.times import utc

FOLLOW_EVERY_S = 0.5
# While following, consecutive batches are one line at most this often.
BATCHES_EVERY_S = 5.0


def logs(
    run_id: Annotated[str, typer.Argument(help="The run id.", autocompletion=run_ids)],
    attempt: Annotated[
        int | None, typer.Option("--attempt", min=1, help="Only this attempt's stderr (events stay).")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """A run's log: its own events — started, each attempt and how it ended (a retried
    attempt shows why), records made durable, checkpoints committed, skips, quarantined lines,
    the outcome — and the connector's stderr, attempt by attempt, in time order.

    Each attempt keeps the last 400 lines of its stderr (500 characters each): at most 2,000
    lines a run, in PostgreSQL, never in Temporal. With --follow it prints as the run goes and
    returns when the run has ended."""
    run_async(_logs(settings(data_dir), run_id, attempt, follow, as_json))


async def _logs(s: Settings, run_id: str, attempt: int | None, follow: bool, as_json: bool) -> int:
    _, database = endpoints(s)
    async with command_store(database) as store:
        row = await store.runs.get(run_id)
        if row is None:
            raise UsageError(f"no run {run_id!r}")
        if not as_json:
            out.print(
                f"run {escape(run_id)} · {escape(row.connector)} · {row.trigger.value} · {row.mode.value} · "
                f"started {utc(row.started_at)}",
                highlight=False,
            )
        if attempt is not None and attempt > row.attempt:
            out.print(f"(run {escape(run_id)} has had {row.attempt} attempt(s) so far)", highlight=False)
        view = Timeline(as_json)
        cursor = LogCursor()
        while True:
            cursor = await _drain(store, run_id, cursor, attempt, view)
            view.tick()
            sys.stdout.flush()  # a pipe is read as the run goes (`| grep`), not at the end
            if not follow or await store.runs.finished(run_id):
                break
            await asyncio.sleep(FOLLOW_EVERY_S)
        if follow:  # what came with the outcome
            await _drain(store, run_id, cursor, attempt, view)
        view.close()
    return 0


async def _drain(
    store: Store, run_id: str, cursor: LogCursor, attempt: int | None, view: Timeline
) -> LogCursor:
    """Print everything written after `cursor`; the cursor where it stops."""
    while True:
        nxt = await store.logs.read(run_id, cursor, attempt)
        for entry in nxt.entries:
            view.show(entry)
        if not nxt.entries:
            return cursor
        cursor = nxt


class Timeline:
    """Prints log entries; consecutive batches are one line, written when something else comes."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.batches: list[LogEntry] = []
        self.ended: set[int] = set()

    def show(self, e: LogEntry) -> None:
        if self.as_json:
            print(e.model_dump_json(), flush=True)
            return
        if e.kind == "batch_ingested":
            self.batches.append(e)
            return
        self._batches()
        text = self.words(e)
        out.print(f"{e.at:%H:%M:%S}  {text}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        self._batches()

    def tick(self) -> None:
        """While following: batches held longer than BATCHES_EVERY_S are told now."""
        if self.batches and datetime.now(UTC) - self.batches[0].at > timedelta(seconds=BATCHES_EVERY_S):
            self._batches()

    def _batches(self) -> None:
        if not self.batches:
            return
        n = sum(int(b.payload.get("records", 0)) for b in self.batches)
        size = sum(int(b.payload.get("bytes", 0)) for b in self.batches)
        k = len(self.batches)
        last = self.batches[-1]
        self.batches = []
        batches = f"{k} batch{'es' if k != 1 else ''}"
        out.print(
            f"{last.at:%H:%M:%S}  {_records(n)} made durable ({batches}, {size:,} bytes)", highlight=False
        )

    def words(self, e: LogEntry) -> str:
        p = e.payload
        if e.kind == "attempt.started":
            return self._attempt(int(p.get("attempt", 0)))
        if e.kind == "attempt.ended":
            self.ended.add(int(p.get("attempt", 0)))
        say = _WORDS.get(e.kind) or (_outcome if e.kind.startswith("run.") else None)
        return say(e) if say else f"{escape(e.kind)} {escape(str(p))}"

    def _attempt(self, n: int) -> str:
        if n > 1 and n - 1 not in self.ended:
            return f"attempt {n} started (attempt {n - 1} was lost: its worker stopped or stopped answering)"
        return f"attempt {n} started" + (" (a retry)" if n > 1 else "")


def _ended(e: LogEntry) -> str:
    p = e.payload
    how = f"attempt {p.get('attempt')} ended: "
    if p.get("cancelled"):
        how += "cancelled"
    elif p.get("done_status"):
        how += f"DONE {p['done_status']}"
    else:
        how += "no DONE"
    if p.get("exit_code") is not None:
        how += f", exit code {p['exit_code']}"
    if p.get("runtime_error"):
        how += f", {escape(str(p['runtime_error']))}"
    return how + f", {_records(int(p.get('records_durable', 0)))} durable"


def _outcome(e: LogEntry) -> str:
    p = e.payload
    status = str(p.get("status"))
    color = {"succeeded": "green", "partially_completed": "yellow"}.get(status, "red")
    parts = [f"run ended: [{color}]{status}[/{color}]"]
    if p.get("reason"):
        parts.append(f"reason {escape(str(p['reason']))}")
    parts.append(f"{_records(int(p.get('records_durable', 0)))} durable")
    parts.append(f"checkpoints {p.get('state_streams_committed', 0)}/{p.get('state_streams_staged', 0)}")
    if p.get("build_id"):
        parts.append(f"build {escape(str(p['build_id']))}")
    if p.get("needs_retry"):
        parts.append("needs_retry (`pdpp-orch recover show " + escape(str(p.get("connector"))) + "`)")
    error = p.get("error")
    if isinstance(error, dict) and error.get("message"):
        # Why, as `status` says it: the log of a failed run must not end without a reason.
        parts.append(f"why: {escape(str(error.get('kind')))}: {escape(str(error['message']))}")
    return " · ".join(parts)


def _records(n: int) -> str:
    return f"{n:,} record{'' if n == 1 else 's'}"


def _stderr(e: LogEntry) -> str:
    return f"[dim]stderr[/dim] {escape(f'[{e.attempt}]')} {escape(e.text)}"


def _quarantined(e: LogEntry) -> str:
    where = escape(f"[{e.attempt}] line {e.line_no or 0:,}")
    return f"[yellow]quarantined[/yellow] {where}: {escape(e.text)}"


def _committed(e: LogEntry) -> str:
    stream, size = escape(str(e.payload.get("stream"))), int(e.payload.get("bytes", 0))
    return f"checkpoint committed: {stream} ({size:,} bytes)"


def _skipped(e: LogEntry) -> str:
    p = e.payload
    return f"skipped in {escape(str(p.get('stream')))}: {escape(str(p.get('reason')))} × {p.get('count')}"


def _started(e: LogEntry) -> str:
    return f"run started ({e.payload.get('trigger')}, {e.payload.get('mode')})"


_WORDS: dict[str, Callable[[LogEntry], str]] = {
    "stderr": _stderr,
    "quarantined": _quarantined,
    "attempt.ended": _ended,
    "checkpoint.committed": _committed,
    "stream_skipped": _skipped,
    "run.started": _started,
}
