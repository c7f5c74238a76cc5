"""`run`, `watch`, `cancel`, `status`, `runs`: starting a run and following it to its outcome."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client

from pdpp_orch.cli.common import (
    EXIT_CODES,
    ConnectorsOpt,
    DataDirOpt,
    JsonOpt,
    endpoints,
    out,
    run_async,
    servers,
    settings,
)
from pdpp_orch.cli.common import err as err_console
from pdpp_orch.cli.progress import watch_run
from pdpp_orch.cli.show import print_outcome
from pdpp_orch.control import UsageError, interactions
from pdpp_orch.control import runs as control
from pdpp_orch.control.connect import connect
from pdpp_orch.control.placement import run_worker_wait
from pdpp_orch.control.stack import command_store, run_url
from pdpp_orch.control.waiting import RunEndedWithoutOutcome, stored_outcome
from pdpp_orch.models import RunOutcome
from pdpp_orch.models.progress import owner_action_text
from pdpp_orch.registry import Registry
from pdpp_orch.settings import Settings
from pdpp_orch.store import Assistance, Diagnostics, Interaction, RunRow

# How long `status` asks Temporal whether a running run waits for a worker.
STATUS_TEMPORAL_S = 3.0
RunIdArg = Annotated[str, typer.Argument(help="The run id (also its workflow id).")]


def run(
    name: Annotated[str, typer.Argument(help="Connector name from the registry.")],
    stream: Annotated[
        list[str] | None, typer.Option("--stream", help="Only this stream (repeatable).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="ISO time: collect from here (time_range.since).")] = None,
    until: Annotated[
        str | None, typer.Option(help="ISO time: collect until here (time_range.until).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress and wait for the outcome.")] = False,
    allow_concurrent: Annotated[
        bool, typer.Option("--allow-concurrent", help="Start even if a run of NAME is in progress.")
    ] = False,
    as_json: JsonOpt = False,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Start a run of connector NAME. With --wait the exit status tells the outcome:
    0 succeeded, 3 partially_completed, 1 failed or cancelled, 2 usage/configuration error."""
    s = settings(data_dir, connectors)
    run_async(_run(s, name, stream or [], since, until, wait, as_json, allow_concurrent))


async def _run(
    s: Settings,
    name: str,
    streams: list[str],
    since: str | None,
    until: str | None,
    wait: bool,
    as_json: bool,
    allow_concurrent: bool,
) -> int:
    inp = control.new_run(
        Registry.load(s.connectors),
        name,
        streams,
        since,
        until,
        heartbeat_timeout_seconds=s.heartbeat_timeout_seconds,
        allow_concurrent=allow_concurrent,
    )
    found = servers(s)
    client = await connect(found.temporal_address, s.temporal_namespace)
    if not allow_concurrent:
        await control.refuse_concurrent(client, name)
    handle = await control.start_run(client, s.task_queue, inp)
    page = f"; in the web UI: {run_url(found.ui_url, inp.run_id)}" if found.ui_url else ""
    if not wait:
        if as_json:
            print(json.dumps({"run_id": inp.run_id}))
        else:
            out.print(f"started run {inp.run_id}  (pdpp-orch watch {inp.run_id}{page})", highlight=False)
        return 0
    err_console.print(f"started run {inp.run_id}{page}", highlight=False)
    return await follow(client, found.database_url, handle, inp.run_id, as_json)


async def follow(client: Client, database: str, handle: Any, run_id: str, as_json: bool) -> int:
    """Wait for the run's end, then print its outcome as the `runs` table holds it; returns the
    exit status it means. PostgreSQL is reached only when there is something to read (a prompt,
    the outcome): while the run waits out a database outage, so does this, quietly (a pool held
    open meanwhile logged a traceback at every reconnection attempt)."""

    async def prompt(request_id: str) -> str | None:
        async with command_store(database) as store:
            return await interactions.prompt(store, run_id, request_id)

    try:
        ended = await watch_run(handle, run_id, err_console, quiet=as_json, client=client, prompt=prompt)
        async with command_store(database) as store:
            outcome = await stored_outcome(store, run_id, ended)
    except RunEndedWithoutOutcome as e:
        raise UsageError(str(e)) from e
    return _print(outcome, as_json)


def _print(outcome: RunOutcome, as_json: bool) -> int:
    if as_json:
        print(outcome.model_dump_json(indent=2))
    else:
        print_outcome(outcome)
    return EXIT_CODES[outcome.status]


def watch(run_id: RunIdArg, as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Follow a run until it ends, from its live `progress` query: a bar per stream on a
    terminal, a plain line every 5 s otherwise, and a note when it waits on its owner or on a
    worker. The exit status tells the outcome, as for `run --wait`."""
    run_async(_watch(settings(data_dir), run_id, as_json))


async def _watch(s: Settings, run_id: str, as_json: bool) -> int:
    address, database = endpoints(s)
    client = await connect(address, s.temporal_namespace)
    handle = await control.existing_run(client, run_id)
    return await follow(client, database, handle, run_id, as_json)


def cancel(
    run_id: RunIdArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the cancelled run's outcome.")] = False,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Cancel a run: the connector's process group is ended, every accepted record stays durable,
    no checkpoint commits, the outcome says `cancelled` (once checkpoints have begun to commit
    it is too late: the run finishes, and its outcome says so)."""
    run_async(_cancel(settings(data_dir), run_id, wait, as_json))


async def _cancel(s: Settings, run_id: str, wait: bool, as_json: bool) -> int:
    address, database = endpoints(s)
    client = await connect(address, s.temporal_namespace)
    handle = await control.cancel_run(client, run_id)
    if not wait:
        out.print(f"cancellation of {run_id} requested  (pdpp-orch watch {run_id})")
        return 0
    return await follow(client, database, handle, run_id, as_json)


def status(run_id: RunIdArg, as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Show one run from the `runs` table: its outcome, why, what comes next, what the connector
    said (its error, the tail of its stderr) and how many lines were quarantined; of a run still
    going, whether it waits for a worker of its connector's task queue (asked of Temporal)."""
    run_async(_status(settings(data_dir), run_id, as_json))


async def _status(s: Settings, run_id: str, as_json: bool) -> int:
    address, database = endpoints(s)
    async with command_store(database) as store:
        row = await store.runs.get(run_id)
        if row is None:
            raise UsageError(f"no run {run_id!r}")
        said = await store.runs.diagnostics(run_id)
        quarantined = len(await store.runs.quarantined(run_id))
    if row.outcome is not None:
        if not as_json:
            out.print(f"run {run_id} · {row.connector} · {row.trigger.value} · {row.mode.value}")
        code = _print(row.outcome, as_json)
        if not as_json:
            _print_diagnostics(run_id, said, quarantined)
        return code
    waits = await run_worker_wait(address, s.temporal_namespace, run_id, STATUS_TEMPORAL_S)
    if as_json:
        print(
            json.dumps(
                {"run_id": run_id, "status": row.status.value, "records_durable": row.records_durable}
                | ({"waiting_for_worker": waits.as_json()} if waits else {})
            )
        )
    else:
        out.print(f"run {run_id} · {row.status.value} · {row.records_durable:,} records durable so far")
        if waits:
            out.print(f"it {waits.line()}", highlight=False)
        out.print(f"follow it with `pdpp-orch watch {run_id}`, cancel it with `pdpp-orch cancel {run_id}`")
    return 0


def _print_diagnostics(run_id: str, said: Diagnostics, quarantined: int) -> None:
    if said.connector_error:
        out.print(f"the connector said: {escape(said.connector_error)}", highlight=False)
    if said.stderr_tail:
        out.print(f"its stderr, last {min(len(said.stderr_tail), 20)} line(s):", highlight=False)
        for line in said.stderr_tail[-20:]:
            out.print(f"  {escape(line)}", highlight=False)
    if quarantined:
        out.print(f"{quarantined:,} line(s) quarantined: `pdpp-orch quarantine {run_id}`", highlight=False)


def runs(
    connector: Annotated[str | None, typer.Option("--connector", help="Only this connector.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 20,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """List recent runs from the `runs` table."""
    run_async(_runs(settings(data_dir), connector, limit, as_json))


async def _runs(s: Settings, connector: str | None, limit: int, as_json: bool) -> int:
    _, database = endpoints(s)
    async with command_store(database) as store:
        rows = await store.runs.recent(connector, limit)
        waiting: dict[str, list[Interaction]] = {}
        for w in await store.interactions.find():
            waiting.setdefault(w.run_id, []).append(w)
        asks: dict[str, list[Assistance]] = {}
        for a in await store.assistance.find():
            asks.setdefault(a.run_id, []).append(a)
    if as_json:
        print(
            json.dumps(
                [_run_json(r, waiting.get(r.run_id, []), asks.get(r.run_id, [])) for r in rows],
                indent=2,
                default=str,
            )
        )
    else:
        out.print(_runs_table(rows, waiting, asks))
    return 0


def _run_json(r: RunRow, waiting: list[Interaction], asks: list[Assistance]) -> dict[str, Any]:
    if r.outcome is not None:
        return r.outcome.model_dump(mode="json")
    return {
        "run_id": r.run_id,
        "connector": r.connector,
        "status": r.status.value,
        "records_durable": r.records_durable,
        "waiting_on": [
            w.model_dump(mode="json", include={"request_id", "kind", "message", "expires_at"})
            for w in waiting
        ],
        "assistance": [
            {"assistance_request_id": a.assistance_id}
            | a.model_dump(mode="json", include={"owner_action", "progress_posture", "message", "expires_at"})
            for a in asks
        ],
    }


def _runs_table(
    rows: list[RunRow], waiting: dict[str, list[Interaction]], asks: dict[str, list[Assistance]]
) -> Table:
    t = Table("run_id", "connector", "trigger", "status", "needs_retry", "durable", "reason", "started")
    for r in rows:
        reason = r.reason or ""
        if r.outcome is None and (r.run_id in waiting or r.run_id in asks):
            reason = "; ".join(
                [
                    f"{w.kind} until {w.expires_at:%H:%M} UTC: pdpp-orch respond {r.run_id}"
                    for w in waiting.get(r.run_id, [])
                ]
                + [
                    f"asks you to {owner_action_text(a.owner_action)}: {a.message}"
                    for a in asks.get(r.run_id, [])
                ]
            )
        t.add_row(
            r.run_id,
            r.connector,
            r.trigger.value,
            r.status.value,
            "yes" if r.needs_retry else "",
            f"{r.records_durable:,}",
            reason,
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return t
