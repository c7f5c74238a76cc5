"""`budget NAME`: a connector's cost budget."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from pdpp_orch.budget import format_window
from pdpp_orch.cli.common import ConnectorsOpt, DataDirOpt, JsonOpt, endpoints, out, run_async, settings
from pdpp_orch.cli.complete import connector_names
from pdpp_orch.control.budget import budget_status
from pdpp_orch.control.connect import connect
from pdpp_orch.registry import Registry
from pdpp_orch.settings import Settings


def budget(
    name: Annotated[str, typer.Argument(help="Connector name.", autocompletion=connector_names)],
    as_json: JsonOpt = False,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The connector's cost budget: units per window, spent, remaining, when the window ends."""
    run_async(_budget(settings(data_dir, connectors), name, as_json))


async def _budget(s: Settings, connector: str, as_json: bool) -> int:
    entry = Registry.load(s.connectors).get(connector)
    address, _ = endpoints(s)
    client = await connect(address, s.temporal_namespace)
    status = await asyncio.wait_for(budget_status(client, connector), timeout=15)
    if as_json:
        print(
            status.model_dump_json(indent=2)
            if status
            else json.dumps({"connector": connector, "units": entry.budget.units, "spent": 0})
        )
        return 0
    units = entry.budget.units
    limit = f"{units:,} units per {entry.budget.window}" if units is not None else "unlimited"
    out.print(f"{connector}: {limit}, {entry.budget.cost_per_item} per item")
    if status is None:
        out.print("nothing spent yet (no budget workflow)")
    else:
        remaining = "unlimited" if status.remaining is None else f"{status.remaining:,}"
        out.print(
            f"window {status.window_started:%Y-%m-%d %H:%M} + {format_window(status.window_seconds)}: "
            f"spent {status.spent:,}, remaining {remaining}, overspent {status.overspent:,}; "
            f"{status.granted_total:,} granted in {status.requests_total:,} requests"
        )
    return 0
