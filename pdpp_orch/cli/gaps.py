"""`gaps list [NAME]` and `gaps requeue GAP_ID`: the gap ledger (`gaps NAME` lists too)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pdpp_orch.cli.common import (
    ConnectorsOpt,
    DataDirOpt,
    JsonOpt,
    default_group,
    endpoints,
    out,
    run_async,
    settings,
)
from pdpp_orch.cli.complete import connector_names
from pdpp_orch.control import recoveries
from pdpp_orch.control.connect import connect
from pdpp_orch.control.stack import command_store
from pdpp_orch.models import GapStatus
from pdpp_orch.registry import Registry
from pdpp_orch.settings import Settings
from pdpp_orch.store import Gap

app = typer.Typer(
    help="The gap ledger: what runs could not collect, and where each miss stands.",
    cls=default_group("list"),
    no_args_is_help=False,
)


@app.command("list")
def list_(
    name: Annotated[
        str | None, typer.Argument(help="Only this connector.", autocompletion=connector_names)
    ] = None,
    status: Annotated[GapStatus | None, typer.Option("--status", help="Only gaps in this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows in the table.")] = 50,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """List gaps (`pending`, `leased`, `recovered`, `terminal` with its reason)."""
    run_async(_list(settings(data_dir), name, status, limit, as_json))


async def _list(
    s: Settings, connector: str | None, status: GapStatus | None, limit: int, as_json: bool
) -> int:
    _, database = endpoints(s)
    async with command_store(database) as store:
        rows = await store.gaps.find(connector, status)
    if as_json:
        print(json.dumps([g.model_dump(mode="json") for g in rows], indent=2))
        return 0
    t = Table(
        "gap_id", "connector", "stream", "kind", "subject", "reason", "class", "status", "attempts",
        "next retry / settled by",
    )  # fmt: skip
    for g in rows[:limit]:
        t.add_row(
            g.gap_id,
            g.connector,
            escape(g.stream),
            g.kind.value,
            escape(g.subject[:60]),
            escape(g.reason),
            g.recovery_class.value,
            g.status.value + (f" ({g.terminal_reason})" if g.terminal_reason else ""),
            str(g.attempts),
            _next(g),
        )
    out.print(t)
    if len(rows) > limit:
        out.print(f"… {len(rows) - limit:,} more (--limit, --status or --json)")
    return 0


def _next(g: Gap) -> str:
    """When an open gap is next tried (and by which hint), or which run settled it."""
    if g.status is GapStatus.RECOVERED:
        return f"recovered by {g.recovered_run_id}" if g.recovered_run_id else "recovered"
    if g.status is GapStatus.TERMINAL:
        return f"`pdpp-orch gaps requeue {g.gap_id}` retries it"
    if not g.recovery_class.runtime_retryable and not g.hint_id:
        return "not retried on its own"
    due = f"not before {g.not_before:%Y-%m-%d %H:%M} UTC" if g.not_before else "due"
    return f"{due} ({g.hint_id})" if g.hint_id else due


@app.command()
def requeue(
    gap_id: Annotated[str, typer.Argument(help="The gap to requeue.")],
    as_json: JsonOpt = False,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Give a terminal (or stuck) gap a fresh start: pending, no attempts, and a recovery of its
    own, due now."""
    run_async(_requeue(settings(data_dir, connectors), gap_id, as_json))


async def _requeue(s: Settings, gap_id: str, as_json: bool) -> int:
    address, database = endpoints(s)
    client = await connect(address, s.temporal_namespace)
    async with command_store(database) as store:
        wid = await recoveries.requeue(store, client, Registry.load(s.connectors), s.task_queue, gap_id)
    if as_json:
        print(json.dumps({"gap_id": gap_id, "recovery_workflow_id": wid}))
    else:
        out.print(f"requeued {gap_id}; recovery {wid} started")
    return 0
