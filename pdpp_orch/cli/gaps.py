"""`gaps list [NAME]` and `gaps requeue GAP_ID`: the gap ledger (`gaps NAME` lists too)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pdpp_orch.cli.common import (
    ConnectorsOpt,
    DataDirOpt,
    JsonOpt,
    default_group,
    out,
    run_async,
    servers,
    settings,
    whole,
)
from pdpp_orch.cli.complete import connector_names
from pdpp_orch.cli.show import note, temporal
from pdpp_orch.control import recoveries
from pdpp_orch.control.connect import connect
from pdpp_orch.control.present import looks
from pdpp_orch.control.stack import Stack, command_store, known_connector, registry
from pdpp_orch.models import GapStatus
from pdpp_orch.present.derive import fate_brief
from pdpp_orch.present.fates import hint_now
from pdpp_orch.present.model import HintNow
from pdpp_orch.settings import Settings
from pdpp_orch.store import Gap, Store

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
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List gaps (`pending`, `leased`, `recovered`, `terminal` with its reason)."""
    run_async(_list(settings(data_dir, connectors), name, status, limit, as_json))


async def _fates(s: Settings, found: Stack, store: Store, rows: list[Gap]) -> dict[str, HintNow]:
    """The fate of every hint the gaps belong to (pdpp_orch.present)."""
    client = await temporal(found, s.temporal_namespace)
    by_connector: dict[str, set[str]] = {}
    for g in rows:
        if g.hint_id:
            by_connector.setdefault(g.connector, set()).add(g.hint_id)
    fates: dict[str, HintNow] = {}
    now = datetime.now(UTC)
    for c, hint_ids in sorted(by_connector.items()):
        ledger = await store.present.hints(c, sorted(hint_ids), [], None)
        seen = await looks(store, client, c, ledger)
        said = note(s, found, c)
        fates |= {h.hint_id: hint_now(h, seen[h.hint_id], c, now, said) for h in ledger}
    return fates


async def _list(
    s: Settings, connector: str | None, status: GapStatus | None, limit: int, as_json: bool
) -> int:
    found = servers(s)
    async with command_store(found.database_url) as store:
        if connector is not None:
            await known_connector(store, connector, lambda: registry(s, found))
        rows = await store.gaps.find(connector, status)
        fates = await _fates(s, found, store, rows if as_json else rows[:limit])
    if as_json:
        print(json.dumps([_gap_json(g, fates.get(g.hint_id or "")) for g in rows], indent=2))
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
            escape(_next(g, fates.get(g.hint_id or ""))),
        )
    out.print(whole(t, "gap_id"))
    if len(rows) > limit:
        out.print(f"… {len(rows) - limit:,} more (--limit, --status or --json)")
    return 0


def _gap_json(g: Gap, fate: HintNow | None) -> dict[str, Any]:
    """A gap as the ledger holds it, and (`now`) where its hint's recovery stands."""
    if fate is None:
        return g.model_dump(mode="json")
    now = fate.model_dump(mode="json", include={"fate", "workflow_id", "until", "by", "says", "command"})
    return g.model_dump(mode="json") | {"now": now}


def _next(g: Gap, fate: HintNow | None) -> str:
    """Where an open gap stands now (its recovery waiting, running, cancelled and by whom), or
    which run settled it."""
    if g.status is GapStatus.RECOVERED:
        return f"recovered by {g.recovered_run_id}" if g.recovered_run_id else "recovered"
    if g.status is GapStatus.TERMINAL:
        return f"`pdpp-orch gaps requeue {g.gap_id}` retries it"
    if fate is None:
        return "not retried on its own: `pdpp-orch gaps requeue GAP_ID` retries it"
    command = f": {fate.command}" if fate.command and not fate.fate.live else ""
    return f"{fate_brief(fate)} ({fate.workflow_id}){command}"


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
    found = servers(s)
    client = await connect(found.temporal_address, s.temporal_namespace)
    async with command_store(found.database_url) as store:
        wid = await recoveries.requeue(store, client, registry(s, found), s.task_queue, gap_id)
    if as_json:
        print(json.dumps({"gap_id": gap_id, "recovery_workflow_id": wid}))
    else:
        out.print(f"requeued {gap_id}; recovery {wid} started")
    return 0
