"""`budget NAME`: a connector's cost budget."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
import typer
from rich.markup import escape
from temporalio.client import Client

from pdpp_orch import words
from pdpp_orch.budget import format_window
from pdpp_orch.cli.common import ConnectorsOpt, DataDirOpt, JsonOpt, err, out, run_async, servers, settings
from pdpp_orch.cli.complete import connector_names
from pdpp_orch.control.budget import budget_status
from pdpp_orch.control.connect import connect
from pdpp_orch.control.present import connector_present
from pdpp_orch.control.stack import command_store, registry
from pdpp_orch.present.model import Fate
from pdpp_orch.settings import Settings
from pdpp_orch.times import utc


def budget(
    name: Annotated[str, typer.Argument(help="Connector name.", autocompletion=connector_names)],
    as_json: JsonOpt = False,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The connector's cost budget: units per window, spent, remaining, when the window ends, and
    the recoveries waiting for it with the units each needs."""
    run_async(_budget(settings(data_dir, connectors), name, as_json))


async def _budget(s: Settings, connector: str, as_json: bool) -> int:
    found = servers(s)
    entry = registry(s, found).entries.get(connector)
    client = await connect(found.temporal_address, s.temporal_namespace)
    status = await asyncio.wait_for(budget_status(client, connector), timeout=15)
    if entry is None and status is None:
        registry(s, found).get(connector)  # unknown here and no budget of its own: say so
    if as_json:
        units = entry.budget.units if entry else None
        print(
            status.model_dump_json(indent=2)
            if status
            else json.dumps({"connector": connector, "units": units, "spent": 0})
        )
        return 0
    if entry is not None:
        units = entry.budget.units
        limit = f"{units:,} units per {entry.budget.window}" if units is not None else "unlimited"
        out.print(f"{connector}: {limit}, {entry.budget.cost_per_item} per item")
    elif status is not None:
        # Not in this registry, but it has a budget: its own workflow knows its size.
        units = status.units
        limit = (
            f"{units:,} units per {format_window(status.window_seconds)}"
            if units is not None
            else "unlimited"
        )
        out.print(f"{connector}: {limit} (as its budget workflow was last configured)")
    if status is None:
        out.print("nothing spent yet (no budget workflow)")
    else:
        remaining = "unlimited" if status.remaining is None else f"{status.remaining:,}"
        out.print(
            f"window {utc(status.window_started)} + {format_window(status.window_seconds)}: "
            f"spent {status.spent:,}, remaining {remaining}, overspent {status.overspent:,}; "
            f"{status.granted_total:,} granted in {status.requests_total:,} requests"
        )
        await _waiting(found.database_url, client, connector)
    return 0


async def _waiting(database: str, client: Client, connector: str) -> None:
    """The connector's recoveries waiting for the budget, each with the units it needs, as
    `status` tells them (an item batch, or a walk's whole estimate)."""
    try:
        async with command_store(database) as store:
            now = connector_present(store, client, connector, None, datetime.now(UTC))
            hints = (await asyncio.wait_for(now, timeout=15)).hints
    except (OSError, TimeoutError, asyncpg.PostgresError) as e:
        err.print(f"recoveries waiting for it: not known (PostgreSQL: {type(e).__name__})", highlight=False)
        return
    for h in hints:
        if h.fate is Fate.WAITING_BUDGET:
            out.print(f"waiting for it: {escape(words.visible_line(h.says))}", highlight=False)
