"""`recover show|now|cancel NAME`: the connector's recoveries, one per retry hint with open gaps
(`recover NAME` shows them)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
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
from pdpp_orch.control import recoveries
from pdpp_orch.control.connect import connect
from pdpp_orch.control.stack import command_store, known_connector, registry
from pdpp_orch.settings import Settings

app = typer.Typer(
    help="Gap recoveries: one per retry hint with open gaps.",
    cls=default_group("show"),
    no_args_is_help=False,
)
NameArg = Annotated[str, typer.Argument(help="Connector name.", autocompletion=connector_names)]


@app.command()
def show(
    name: NameArg,
    now: Annotated[
        bool, typer.Option("--now", hidden=True, help="The old spelling of `recover now NAME`.")
    ] = False,
    as_json: JsonOpt = False,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The connector's recoveries and what each is doing."""
    run_async(_recover(settings(data_dir, connectors), name, "now" if now else "show", as_json))


@app.command("now")
def now_(
    name: NameArg, as_json: JsonOpt = False, connectors: ConnectorsOpt = None, data_dir: DataDirOpt = None
) -> None:
    """End the recoveries' wait for not_before or back-off (the budget still rules), and start
    again those that ended (cancelled, failed) while their gaps are open."""
    run_async(_recover(settings(data_dir, connectors), name, "now", as_json))


@app.command()
def cancel(
    name: NameArg, as_json: JsonOpt = False, connectors: ConnectorsOpt = None, data_dir: DataDirOpt = None
) -> None:
    """Cancel the connector's recoveries (their gaps stay open; every surface says an operator
    cancelled them, and `recover now NAME` starts them again)."""
    run_async(_recover(settings(data_dir, connectors), name, "cancel", as_json))


async def _recover(s: Settings, connector: str, action: str, as_json: bool) -> int:
    found = servers(s)
    client = await connect(found.temporal_address, s.temporal_namespace)
    async with command_store(found.database_url) as store:
        await known_connector(store, connector, lambda: registry(s, found))
        if action == "now":
            rows = await recoveries.recover_now(store, client, registry(s, found), s.task_queue, connector)
        elif action == "cancel":
            rows = await recoveries.cancel_recoveries(store, client, connector)
        else:
            rows = await recoveries.recoveries(store, client, connector)
    if as_json:
        print(
            json.dumps(
                [
                    {**r.hint.model_dump(mode="json"), "workflow_id": r.workflow_id, "state": r.state}
                    for r in rows
                ],
                indent=2,
            )
        )
        return 0
    t = Table("workflow_id", "stream", "reason", "open", "recovered", "terminal", "state")
    for r in rows:
        h = r.hint
        t.add_row(
            r.workflow_id, h.stream, h.reason, f"{h.open:,}", f"{h.recovered:,}", f"{h.terminal:,}", r.state
        )
    out.print(whole(t, "workflow_id") if rows else f"no open retry hints for {connector!r}")
    return 0
