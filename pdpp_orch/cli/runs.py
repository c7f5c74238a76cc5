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
    out,
    run_async,
    servers,
    settings,
    whole,
)
from pdpp_orch.cli.common import err as err_console
from pdpp_orch.cli.complete import connector_names, run_ids
from pdpp_orch.cli.progress import watch_run
from pdpp_orch.cli.show import as_json as as_json_with_now
from pdpp_orch.cli.show import present_of, print_outcome, temporal
from pdpp_orch.control import UsageError, interactions
from pdpp_orch.control import runs as control
from pdpp_orch.control.connect import connect
from pdpp_orch.control.placement import run_worker_wait
from pdpp_orch.control.resolve import refuse_unknown
from pdpp_orch.control.stack import Stack, command_store, known_connector, registry, run_url
from pdpp_orch.control.waiting import RunEndedWithoutOutcome, stored_outcome
from pdpp_orch.models.progress import owner_action_text
from pdpp_orch.present.derive import brief
from pdpp_orch.present.model import Present
from pdpp_orch.settings import Settings
from pdpp_orch.store import Assistance, Diagnostics, Interaction, RunRow
from pdpp_orch.times import utc

# How long `status` asks Temporal whether a running run waits for a worker.
STATUS_TEMPORAL_S = 3.0
RunIdArg = Annotated[str, typer.Argument(help="The run id (also its workflow id).", autocompletion=run_ids)]


def run(
    name: Annotated[
        str, typer.Argument(help="Connector name from the registry.", autocompletion=connector_names)
    ],
    stream: Annotated[
        list[str] | None, typer.Option("--stream", help="Only this stream (repeatable).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="ISO date or time (no offset: UTC): collect from here, included (time_range.since)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="ISO date or time: collect up to here, excluded (time_range.until; half-open, as the"
            " protocol's ranges: --until 2026-02-01 ends with January 31)."
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress and wait for the outcome.")] = False,
    allow_concurrent: Annotated[
        bool, typer.Option("--allow-concurrent", help="Start even if a run of NAME is in progress.")
    ] = False,
    as_json: JsonOpt = False,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Start a run of connector NAME (refused, naming the registry it reads, when the worker of
    the task queue cannot run it). With --wait the exit status tells the outcome:
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
    # The connector, its manifest and the scope are checked before the servers are needed.
    try:
        known: Stack | None = servers(s)
    except UsageError:
        known = None
    reg = registry(s, known)
    inp = control.new_run(
        reg,
        name,
        streams,
        since,
        until,
        heartbeat_timeout_seconds=s.heartbeat_timeout_seconds,
        allow_concurrent=allow_concurrent,
    )
    found = known or servers(s)
    client = await connect(found.temporal_address, s.temporal_namespace)
    note = await refuse_unknown(client, s.task_queue, reg, name, streams)
    if note:
        err_console.print(f"note: {note}", highlight=False)
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
    return await follow(s, found, client, handle, inp.run_id, as_json)


async def follow(s: Settings, found: Stack, client: Client, handle: Any, run_id: str, as_json: bool) -> int:
    """Wait for the run's end, then print its outcome as the `runs` table holds it; returns the
    exit status it means. PostgreSQL is reached only when there is something to read (a prompt,
    the outcome): while the run waits out a database outage, so does this, quietly (a pool held
    open meanwhile logged a traceback at every reconnection attempt)."""

    async def prompt(request_id: str) -> str | None:
        async with command_store(found.database_url) as store:
            return await interactions.prompt(store, run_id, request_id)

    try:
        ended = await watch_run(handle, run_id, err_console, quiet=as_json, client=client, prompt=prompt)
        async with command_store(found.database_url) as store:
            outcome = await stored_outcome(store, run_id, ended)
            row = await store.runs.get(run_id)
            started = row.started_at if row is not None else outcome.started_at
            now = None if as_json else await present_of(s, found, store, client, outcome, started)
    except RunEndedWithoutOutcome as e:
        raise UsageError(str(e)) from e
    if as_json:
        # `run --wait --json` is the outcome exactly (DESIGN §3): the run ended just now.
        print(outcome.model_dump_json(indent=2))
    else:
        print_outcome(outcome, now)
    return EXIT_CODES[outcome.status]


def watch(run_id: RunIdArg, as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Follow a run until it ends, from its live `progress` query: a bar per stream on a
    terminal, a plain line every 5 s otherwise, and a note when it waits on its owner or on a
    worker. The exit status tells the outcome, as for `run --wait`."""
    run_async(_watch(settings(data_dir), run_id, as_json))


async def _watch(s: Settings, run_id: str, as_json: bool) -> int:
    found = servers(s)
    client = await connect(found.temporal_address, s.temporal_namespace)
    handle = await control.existing_run(client, run_id)
    return await follow(s, found, client, handle, run_id, as_json)


def cancel(
    run_id: RunIdArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the cancelled run's outcome.")] = False,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Cancel a run: the connector's process group is ended, every accepted record stays durable,
    no checkpoint commits, the outcome says `cancelled` (once checkpoints have begun to commit
    it is too late: the run finishes, and its outcome says so). A run that had already ended is
    not cancelled: the command says how it ended and exits 2."""
    run_async(_cancel(settings(data_dir), run_id, wait, as_json))


async def _cancel(s: Settings, run_id: str, wait: bool, as_json: bool) -> int:
    found = servers(s)
    client = await connect(found.temporal_address, s.temporal_namespace)
    try:
        handle = await control.cancel_run(client, run_id)
    except control.RunAlreadyEnded as e:
        async with command_store(found.database_url) as store:
            row = await store.runs.get(run_id)
        if row is None or row.finished_at is None:
            raise
        how = row.status.value + (f", reason {row.reason}" if row.reason else "")
        raise UsageError(
            f"run {run_id} had already ended: {how}, at {utc(row.finished_at)}; "
            f"nothing to cancel (its outcome: `pdpp-orch status {run_id}`)"
        ) from e
    if not wait:
        out.print(f"cancellation of {run_id} requested  (pdpp-orch watch {run_id})")
        return 0
    return await follow(s, found, client, handle, run_id, as_json)


def status(
    run_id: RunIdArg, as_json: JsonOpt = False, connectors: ConnectorsOpt = None, data_dir: DataDirOpt = None
) -> None:
    """Show one run: its outcome as it was at its end (why, what was missing) and, where it
    differs, what is missing now and what became of its retries (recovered, cancelled and by
    whom, superseded by a later run); what happens next, with the command; what the connector
    said (its error, the tail of its stderr) and how many lines were quarantined. --json: the
    outcome's fields and the present as `now`. Of a run still going: whether it waits for a
    worker of its connector's task queue (asked of Temporal)."""
    run_async(_status(settings(data_dir, connectors), run_id, as_json))


async def _status(s: Settings, run_id: str, as_json: bool) -> int:
    found = servers(s)
    async with command_store(found.database_url) as store:
        row = await store.runs.get(run_id)
        if row is None:
            raise UsageError(f"no run {run_id!r}")
        said = await store.runs.diagnostics(run_id)
        quarantined = len(await store.runs.quarantined(run_id))
        now = None
        if row.outcome is not None:
            client = await temporal(found, s.temporal_namespace)
            now = await present_of(s, found, store, client, row.outcome, row.started_at)
    if row.outcome is not None:
        if as_json:
            print(json.dumps(as_json_with_now(row.outcome, now), indent=2))
            return EXIT_CODES[row.outcome.status]
        build = f" · build {escape(row.outcome.build_id)}" if row.outcome.build_id else ""
        # A recovery run is triggered by and runs as a recovery: said once.
        how = (
            row.trigger.value
            if row.trigger.value == row.mode.value
            else f"{row.trigger.value} · {row.mode.value}"
        )
        out.print(f"run {run_id} · {row.connector} · {how}{build}")
        print_outcome(row.outcome, now)
        _print_diagnostics(run_id, said, quarantined)
        return EXIT_CODES[row.outcome.status]
    waits = await run_worker_wait(found.temporal_address, s.temporal_namespace, run_id, STATUS_TEMPORAL_S)
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
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List recent runs from the `runs` table."""
    run_async(_runs(settings(data_dir, connectors), connector, limit, as_json))


async def _runs(s: Settings, connector: str | None, limit: int, as_json: bool) -> int:
    found = servers(s)
    async with command_store(found.database_url) as store:
        if connector is not None:
            await known_connector(store, connector, lambda: registry(s, found))
        rows = await store.runs.recent(connector, limit)
        client = await temporal(found, s.temporal_namespace)
        nows = {
            r.run_id: await present_of(s, found, store, client, r.outcome, r.started_at)
            for r in rows
            if r.outcome is not None
        }
        waiting: dict[str, list[Interaction]] = {}
        for w in await store.interactions.find():
            waiting.setdefault(w.run_id, []).append(w)
        asks: dict[str, list[Assistance]] = {}
        for a in await store.assistance.find():
            asks.setdefault(a.run_id, []).append(a)
    if as_json:
        print(
            json.dumps(
                [
                    _run_json(r, nows.get(r.run_id), waiting.get(r.run_id, []), asks.get(r.run_id, []))
                    for r in rows
                ],
                indent=2,
                default=str,
            )
        )
    else:
        out.print(whole(_runs_table(rows, nows, waiting, asks), "run_id"))
    return 0


def _run_json(
    r: RunRow, now: Present | None, waiting: list[Interaction], asks: list[Assistance]
) -> dict[str, Any]:
    if r.outcome is not None:
        return as_json_with_now(r.outcome, now)
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
    rows: list[RunRow],
    nows: dict[str, Present],
    waiting: dict[str, list[Interaction]],
    asks: dict[str, list[Assistance]],
) -> Table:
    t = Table(
        "run_id", "connector", "trigger", "status", "needs_retry", "durable", "reason", "started", "now"
    )
    for r in rows:
        reason = r.reason or ""
        if r.outcome is None and (r.run_id in waiting or r.run_id in asks):
            reason = "; ".join(
                [
                    f"{w.kind} until {utc(w.expires_at)}: pdpp-orch respond {r.run_id}"
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
            utc(r.started_at),
            escape(brief(nows[r.run_id])) if r.run_id in nows else "",
        )
    return t
