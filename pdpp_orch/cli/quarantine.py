"""`quarantine RUN_ID`: the lines of a run that failed validation, with their line numbers."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pdpp_orch.cli.common import DataDirOpt, JsonOpt, endpoints, out, run_async, settings
from pdpp_orch.cli.complete import run_ids
from pdpp_orch.control import UsageError
from pdpp_orch.control.stack import command_store
from pdpp_orch.settings import Settings


def quarantine(
    run_id: Annotated[str, typer.Argument(help="The run id.", autocompletion=run_ids)],
    limit: Annotated[int, typer.Option(help="At most this many lines in the table.")] = 50,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """The run's quarantined lines: attempt, line number, class, size, why, and an excerpt
    (truncated; U+0000 shown as U+FFFD)."""
    run_async(_quarantine(settings(data_dir), run_id, limit, as_json))


async def _quarantine(s: Settings, run_id: str, limit: int, as_json: bool) -> int:
    _, database = endpoints(s)
    async with command_store(database) as store:
        if await store.runs.get(run_id) is None:
            raise UsageError(f"no run {run_id!r}")
        lines = await store.runs.quarantined(run_id)
    if as_json:
        print(json.dumps([q.model_dump() for q in lines], indent=2))
        return 0
    if not lines:
        out.print(f"run {run_id} quarantined no line")
        return 0
    t = Table("attempt", "line", "class", "bytes", "why", "excerpt")
    for q in lines[:limit]:
        t.add_row(
            str(q.attempt),
            f"{q.line_no:,}",
            q.kind,
            f"{q.line_bytes:,}",
            escape(q.detail),
            escape(q.excerpt[:120]),
        )
    out.print(t)
    if len(lines) > limit:
        out.print(f"… {len(lines) - limit:,} more (--limit or --json)")
    return 0
