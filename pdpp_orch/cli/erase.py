"""`erase NAME [--stream S] [--key K] [--state] --yes`: the owner's right to erase."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from pdpp_orch.cli.common import ConnectorsOpt, DataDirOpt, JsonOpt, out, run_async, servers, settings
from pdpp_orch.cli.complete import connector_names
from pdpp_orch.control import UsageError
from pdpp_orch.control.connect import connect
from pdpp_orch.control.erasure import Erasure
from pdpp_orch.control.erasure import erase as erase_scope
from pdpp_orch.control.stack import command_store, known_connector, registry
from pdpp_orch.settings import Settings
from pdpp_orch.store import Scope

# Said of what remains, whatever was erased.
REMAINS = (
    "Temporal history holds no personal data by design: counts, sizes, stream names, skip reasons "
    "and our own ids; records, cursors, prompts, stderr and gap subjects never enter it"
)


def erase(
    name: Annotated[str, typer.Argument(help="Connector name.", autocompletion=connector_names)],
    stream: Annotated[
        str | None, typer.Option("--stream", help="Only this stream's records and gaps.")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Only this record key (as stored; of --stream, else of any).")
    ] = None,
    state: Annotated[
        bool, typer.Option("--state", help="Its committed cursors and runs' resume points too.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Erase for good (refused without it).")] = False,
    as_json: JsonOpt = False,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Erase what a connector collected, for good, in one transaction: its records (of --stream,
    of --key) and gaps; every word it said that is kept (its stderr, errors, quarantined
    lines, prompts and answers, notices), which cannot be told apart by stream or key; with
    --state its cursors, so the next run collects from the start. Prints the rows erased per
    table and what remains. Refused while a run of the connector is going."""
    scope = Scope(connector=name, stream=stream, key=key, state=state)
    run_async(_erase(settings(data_dir, connectors), scope, yes, as_json))


async def _erase(s: Settings, scope: Scope, yes: bool, as_json: bool) -> int:
    if not yes:
        raise UsageError("erase removes the data for good: add --yes to do it (nothing was erased)")
    found = servers(s)
    client = await connect(found.temporal_address, s.temporal_namespace)
    async with command_store(found.database_url) as store:
        await known_connector(store, scope.connector, lambda: registry(s, found))
        done = await erase_scope(store, client, scope)
    if as_json:
        print(done.model_dump_json(indent=2))
    else:
        _show(done)
    return 0


def _what(sc: Scope) -> str:
    parts = [
        sc.connector,
        *([f"stream {sc.stream}"] if sc.stream else []),
        *([f"key {sc.key}"] if sc.key else []),
    ]
    return ", ".join(parts)


def nothing_erased(done: Erasure) -> str | None:
    """What to say when the scope held nothing: a misspelt name must not read as an erase done."""
    if any(done.erased.values()):
        return None
    c = done.scope.connector
    if not done.remains.runs and not done.histories:
        return f"nothing erased: no run of {c!r} is recorded here (`pdpp-orch connectors list` names them)"
    return (
        f"nothing erased: nothing of {_what(done.scope)} was stored (`pdpp-orch records {c}` shows what is)"
    )


def _show(done: Erasure) -> None:
    out.print(f"erased ({escape(_what(done.scope))}), rows per table:", highlight=False)
    for table, n in done.erased.items():
        out.print(f"  {table:<16} {n:>10,}", highlight=False)
    nothing = nothing_erased(done)
    if nothing:
        out.print(escape(nothing), highlight=False)
    r = done.remains
    ids = ", ".join(r.run_ids) + (", …" if r.runs > len(r.run_ids) else "")
    out.print(
        f"remains: {r.runs:,} run outcome(s) and {r.spine_events:,} spine event(s) in PostgreSQL and "
        f"{done.histories:,} workflow history(ies) in Temporal{f' (runs {ids})' if ids else ''}. "
        f"{REMAINS}; `temporal workflow delete --workflow-id RUN_ID` removes a history.",
        highlight=False,
    )
