"""`pdpp-orch`: the operator's command line.

Exit status: 0 succeeded, 3 partially_completed, 1 failed or cancelled, 2 usage or configuration
error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import warnings
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pdpp_orch.devstack import DevStack, DevStackError, Endpoints, find_running
from pdpp_orch.manifest import ConfigError
from pdpp_orch.models import Mode, RunInput, RunOutcome, RunStatus, StreamScope, TimeRange, Trigger
from pdpp_orch.registry import Registry
from pdpp_orch.settings import Settings
from pdpp_orch.store import SchemaError, Store

app = typer.Typer(
    help="Run PDPP connectors as Temporal workflows and tell the truth about every run.",
    no_args_is_help=True,
    add_completion=False,
)
# Off a terminal, keep table rows whole instead of wrapping them at 80 columns.
out = Console(width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 240)

EXIT_CODES = {
    RunStatus.SUCCEEDED: 0,
    RunStatus.PARTIALLY_COMPLETED: 3,
    RunStatus.FAILED: 1,
    RunStatus.CANCELLED: 1,
}

ConnectorsOpt = Annotated[
    Path | None,
    typer.Option(
        "--connectors", help="Connector registry TOML [env: PDPP_CONNECTORS; default ./connectors.toml]"
    ),
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the dev stack keeps its data [env: PDPP_DATA_DIR]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class UsageError(Exception):
    """Something the operator must fix; exit status 2."""


def _settings(data_dir: Path | None = None, connectors: Path | None = None) -> Settings:
    s = Settings()
    if data_dir is not None:
        s.data_dir = data_dir
    if connectors is not None:
        s.connectors = connectors
    return s


def _finish(code: int) -> None:
    from pdpp_orch import telemetry

    telemetry.shutdown()  # exports what is still batched
    # The Temporal client can crash the interpreter at exit (a known SDK issue): leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_async(coro: Coroutine[Any, Any, int]) -> None:
    try:
        code = asyncio.run(coro)
    except (UsageError, ConfigError, DevStackError, SchemaError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        code = 2
    except KeyboardInterrupt:
        code = 130
    _finish(code)


def _endpoints(s: Settings) -> tuple[str, str]:
    """Temporal address and database URL: from the environment, else the running dev stack."""
    stack = None if (s.temporal_address and s.database_url) else find_running(s.data_dir)
    address = s.temporal_address or (stack.temporal_address if stack else None)
    database = s.database_url or (stack.database_url if stack else None)
    if not address or not database:
        raise UsageError(
            "no Temporal/PostgreSQL to talk to: start `pdpp-orch dev` in another shell, or set "
            "TEMPORAL_ADDRESS and PDPP_DATABASE_URL"
        )
    return address, database


@contextlib.asynccontextmanager
async def _store(database: str) -> AsyncIterator[Store]:
    """A one-connection store for a command."""
    store = await Store.connect(database, max_size=1)
    try:
        yield store
    finally:
        await store.close()


def new_run_id(connector: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{connector}-{stamp}-{secrets.token_hex(3)}"


# -- dev / worker -----------------------------------------------------------------------------


@app.command()
def dev(
    data_dir: DataDirOpt = None,
    connectors: ConnectorsOpt = None,
    sync: Annotated[
        list[str] | None, typer.Option("--sync", help="Run this connector once the stack is up (repeatable).")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Stop after the --sync runs instead of serving.")
    ] = False,
    temporal_port: Annotated[int, typer.Option(help="Preferred Temporal port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Preferred web UI port.")] = 8233,
) -> None:
    """Start Temporal (with its web UI), PostgreSQL and a worker; serve until Ctrl-C.

    Nothing embedded starts when TEMPORAL_ADDRESS and PDPP_DATABASE_URL are set: then this is
    a worker against those servers (plus the --sync runs).
    """
    s = _settings(data_dir, connectors)
    _run_async(_dev(s, sync or [], once, temporal_port, ui_port))


async def _start_dev_codec_server(ui_port: int) -> tuple[str, Any] | None:
    """With a key configured, a loopback codec server for the dev UI (its URL and runner)."""
    from aiohttp import web

    from pdpp_orch.codec import EncryptionCodec, Keyring
    from pdpp_orch.codec_server import make_app
    from pdpp_orch.devstack import free_port

    keyring = Keyring.from_env()
    if keyring is None:
        return None
    port = free_port(8888)
    # The dev UI is served from loopback and calls the codec from the browser without a token.
    origins = [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"]
    runner = web.AppRunner(make_app(EncryptionCodec(keyring), None, origins))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}", runner


async def _dev(s: Settings, sync: list[str], once: bool, temporal_port: int, ui_port: int) -> int:
    from pdpp_orch.client import connect
    from pdpp_orch.worker import run_worker

    registry = Registry.load(s.connectors)
    for name in sync:
        registry.get(name).load_manifest()
    stack: DevStack | None = None
    codec: tuple[str, Any] | None = None
    if s.temporal_address and s.database_url:
        ep = Endpoints(s.temporal_address, "(external)", s.database_url, os.getpid())
    else:
        if s.temporal_address or s.database_url:
            raise UsageError("set both TEMPORAL_ADDRESS and PDPP_DATABASE_URL, or neither")
        from pdpp_orch.devstack import free_port

        ui_port = free_port(ui_port)
        codec = await _start_dev_codec_server(ui_port)
        stack = DevStack(
            s.data_dir,
            temporal_port=temporal_port,
            ui_port=ui_port,
            codec_endpoint=codec[0] if codec else None,
        )
        err.print(f"starting the dev stack in {s.data_dir} …")
        ep = await asyncio.to_thread(stack.start)
        if codec:
            err.print(f"payloads are encrypted; the web UI decrypts them through {codec[0]}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        client = await connect(ep.temporal_address, s.temporal_namespace, wait_s=60)
        worker = asyncio.create_task(run_worker(client, ep.database_url, s.task_queue, s.connectors, stop))
        out.print(f"Temporal web UI : {ep.ui_url}")
        out.print(f"Temporal address: {ep.temporal_address}  (TEMPORAL_ADDRESS)")
        out.print(f"Database URL    : {ep.database_url}  (PDPP_DATABASE_URL)")
        out.print(f"Task queue      : {s.task_queue}")
        for name in sync:
            outcome = await _start_and_wait(client, s, _run_input(s, name, [], None, None), False)
            code = max(code, EXIT_CODES[outcome.status])
        if once:
            stop.set()
        else:
            err.print("serving; Ctrl-C to stop")
        await stop.wait()
        await worker
    finally:
        if stack is not None:
            err.print("stopping the dev stack …")
            await asyncio.to_thread(stack.stop)
        if codec is not None:
            await codec[1].cleanup()
    return code


@app.command()
def migrate(data_dir: DataDirOpt = None) -> None:
    """Create or migrate the record store's schema (idempotent), as the database owner. Workers
    and the CLI do this themselves unless PDPP_APPLY_SCHEMA=0, which a least-privilege role
    needs (deploy/postgres/worker-role.sql)."""
    _run_async(_migrate(_settings(data_dir)))


async def _migrate(s: Settings) -> int:
    from pdpp_orch.store import SCHEMA_VERSION, Store

    _, database = _endpoints(s)
    store = await Store.connect(database, max_size=1, apply_schema=True)
    await store.close()
    out.print(f"record store schema at v{SCHEMA_VERSION}")
    return 0


@app.command()
def health(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each server.")] = 5.0,
    data_dir: DataDirOpt = None,
) -> None:
    """Exit 0 when Temporal and PostgreSQL answer (for container liveness/readiness probes),
    1 with the reason otherwise."""
    _run_async(_health(_settings(data_dir), timeout))


async def _health(s: Settings, wait_s: float) -> int:
    import asyncpg

    from pdpp_orch.client import connect

    address, database = _endpoints(s)
    problems = []
    try:
        client = await asyncio.wait_for(connect(address, s.temporal_namespace), wait_s)
        await asyncio.wait_for(client.service_client.check_health(), wait_s)
    except Exception as e:
        problems.append(f"Temporal at {address}: {type(e).__name__}: {e}"[:300])
    try:
        conn = await asyncpg.connect(database, timeout=wait_s)
        try:
            await conn.fetchval("SELECT 1", timeout=wait_s)
        finally:
            await conn.close()
    except Exception as e:
        # Never print the DSN: it may hold a password.
        problems.append(f"PostgreSQL: {type(e).__name__}: {e}"[:300])
    for p in problems:
        err.print(f"[red]unhealthy:[/red] {escape(p)}", highlight=False)
    if not problems:
        out.print("ok: Temporal and PostgreSQL answer")
    return 1 if problems else 0


@app.command()
def worker(connectors: ConnectorsOpt = None, data_dir: DataDirOpt = None) -> None:
    """Run just a worker (against TEMPORAL_ADDRESS/PDPP_DATABASE_URL or the running dev stack)."""
    s = _settings(data_dir, connectors)
    _run_async(_worker(s))


async def _worker(s: Settings) -> int:
    from pdpp_orch.client import connect
    from pdpp_orch.worker import run_worker

    address, database = _endpoints(s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # A worker started beside its server (compose, a pod) waits for it to come up.
    client = await connect(address, s.temporal_namespace, wait_s=60)
    err.print(f"worker on {address}, task queue {s.task_queue}; Ctrl-C to stop")
    await run_worker(client, database, s.task_queue, s.connectors, stop)
    return 0


# -- runs -------------------------------------------------------------------------------------


def _run_input(s: Settings, name: str, streams: list[str], since: str | None, until: str | None) -> RunInput:
    entry = Registry.load(s.connectors).get(name)
    manifest = entry.load_manifest()  # validated before anything is started
    for st in streams:
        if manifest.stream(st) is None:
            known = ", ".join(x.name for x in manifest.streams)
            raise UsageError(f"connector {name!r} has no stream {st!r} (streams: {known})")
    tr = TimeRange(since=since, until=until) if since or until else None
    if tr and not streams:
        streams = [x.name for x in manifest.streams]
    return RunInput(
        connector=name,
        run_id=new_run_id(name),
        trigger=Trigger.MANUAL,
        mode=Mode.FORWARD,
        streams=[StreamScope(name=st, time_range=tr) for st in streams],
        heartbeat_timeout_seconds=s.heartbeat_timeout_seconds,
    )


async def _start_and_wait(client: Any, s: Settings, inp: RunInput, quiet: bool) -> RunOutcome:
    from pdpp_orch.progress import watch_run
    from workflows.connector_run import ConnectorRunWorkflow

    handle = await client.start_workflow(
        ConnectorRunWorkflow.run,
        inp,
        id=inp.run_id,
        task_queue=s.task_queue,
        static_summary=f"{inp.connector} · {inp.mode.value} · {inp.trigger.value}",
        static_details=f"run `{inp.run_id}` of connector `{inp.connector}`",
        search_attributes=_start_attributes(inp),
    )
    err.print(f"started run {inp.run_id}")
    outcome: RunOutcome = await watch_run(handle, inp.run_id, err, quiet=quiet)
    if not quiet:
        print_outcome(outcome)
    return outcome


def _start_attributes(inp: RunInput) -> Any:
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    from pdpp_orch import search_attributes as sa

    return TypedSearchAttributes(
        [SearchAttributePair(sa.CONNECTOR, inp.connector), SearchAttributePair(sa.TRIGGER, inp.trigger.value)]
    )


async def running_runs(client: Any, connector: str) -> list[str]:
    """Forward runs of `connector` that are in progress (recoveries run alongside them)."""
    query = (
        f"WorkflowType = 'ConnectorRunWorkflow' AND ExecutionStatus = 'Running' "
        f"AND PdppConnector = '{connector}' AND PdppTrigger != 'recovery'"
    )
    return [w.id async for w in client.list_workflows(query)]


@app.command()
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
    s = _settings(data_dir, connectors)
    _run_async(_run(s, name, stream or [], since, until, wait, as_json, allow_concurrent))


async def _run(
    s: Settings,
    name: str,
    streams: list[str],
    since: str | None,
    until: str | None,
    wait: bool,
    as_json: bool,
    allow_concurrent: bool = False,
) -> int:
    from pdpp_orch.client import connect

    for value in (since, until):
        if value:
            try:
                datetime.fromisoformat(value)
            except ValueError as e:
                raise UsageError(f"not an ISO time: {value!r}") from e
    inp = _run_input(s, name, streams, since, until)
    inp.allow_concurrent = allow_concurrent
    address, _ = _endpoints(s)
    client = await connect(address, s.temporal_namespace)
    if not allow_concurrent:
        running = await running_runs(client, name)
        if running:
            raise UsageError(
                f"connector {name!r} has a run in progress: {', '.join(running)} "
                "(wait for it, cancel it with `pdpp-orch cancel RUN_ID`, or pass --allow-concurrent)"
            )
    if not wait:
        from workflows.connector_run import ConnectorRunWorkflow

        await client.start_workflow(
            ConnectorRunWorkflow.run,
            inp,
            id=inp.run_id,
            task_queue=s.task_queue,
            static_summary=f"{inp.connector} · {inp.mode.value} · {inp.trigger.value}",
            search_attributes=_start_attributes(inp),
        )
        if as_json:
            print(json.dumps({"run_id": inp.run_id}))
        else:
            out.print(f"started run {inp.run_id}  (pdpp-orch status {inp.run_id})")
        return 0
    outcome = await _start_and_wait(client, s, inp, quiet=as_json)
    if as_json:
        print(outcome.model_dump_json(indent=2))
    return EXIT_CODES[outcome.status]


@app.command()
def watch(
    run_id: Annotated[str, typer.Argument(help="The run id (also its workflow id).")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Follow a run until it ends, from its live `progress` query: a bar per stream on a
    terminal, a plain line every 5 s otherwise, and a note when it waits on its owner. The exit
    status tells the outcome, as for `run --wait`."""
    _run_async(_watch(_settings(data_dir), run_id, as_json))


async def _watch(s: Settings, run_id: str, as_json: bool) -> int:
    from pdpp_orch.client import connect
    from pdpp_orch.progress import watch_run

    address, _ = _endpoints(s)
    client = await connect(address, s.temporal_namespace)
    handle = client.get_workflow_handle(run_id, result_type=RunOutcome)
    try:
        await handle.describe()
    except Exception as e:
        raise UsageError(f"no run {run_id!r}") from e
    outcome = await _outcome_or_exit(watch_run(handle, run_id, err, quiet=as_json))
    if as_json:
        print(outcome.model_dump_json(indent=2))
    else:
        print_outcome(outcome)
    return EXIT_CODES[outcome.status]


async def _outcome_or_exit(coro: Coroutine[Any, Any, RunOutcome]) -> RunOutcome:
    from temporalio.client import WorkflowFailureError

    try:
        return await coro
    except WorkflowFailureError as e:
        raise UsageError(f"the run's workflow ended without an outcome: {e.cause or e}") from e


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run id (also its workflow id).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the cancelled run's outcome.")] = False,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Cancel a run: the connector's process group is ended, every accepted record stays durable,
    no checkpoint commits, the outcome says `cancelled`."""
    _run_async(_cancel(_settings(data_dir), run_id, wait, as_json))


async def _cancel(s: Settings, run_id: str, wait: bool, as_json: bool) -> int:
    from temporalio.service import RPCError

    from pdpp_orch.client import connect

    address, _ = _endpoints(s)
    client = await connect(address, s.temporal_namespace)
    handle = client.get_workflow_handle(run_id, result_type=RunOutcome)
    try:
        await handle.cancel()
    except RPCError as e:
        raise UsageError(f"cannot cancel {run_id!r}: {e.message}") from e
    if not wait:
        out.print(f"cancellation of {run_id} requested")
        return 0
    outcome = await _outcome_or_exit(handle.result())
    if as_json:
        print(outcome.model_dump_json(indent=2))
    else:
        print_outcome(outcome)
    return EXIT_CODES[outcome.status]


@app.command()
def respond(
    run_id: Annotated[str, typer.Argument(help="The run waiting on its owner.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="The answer, a JSON object; `-` reads it from stdin and `@FILE` from a file, which "
            "keeps it out of your shell history.",
        ),
    ] = None,
    request: Annotated[
        str | None, typer.Option("--request", help="The request id, when the run waits on several.")
    ] = None,
    cancel_: Annotated[bool, typer.Option("--cancel", help="Decline: answer `cancelled`.")] = False,
    ttl: Annotated[
        float, typer.Option(help="Seconds the answer may wait in PostgreSQL for the run to read it.")
    ] = 600.0,
    data_dir: DataDirOpt = None,
) -> None:
    """Answer a run's INTERACTION (credentials, OTP, manual action). The answer goes to the
    connector through PostgreSQL, read once and then erased; it never enters Temporal history
    and is never printed or logged. Without --data or --cancel, on a terminal, you are prompted
    for it without echo."""
    if cancel_ and data is not None:
        raise typer.BadParameter("--data and --cancel exclude each other")
    _run_async(_respond(_settings(data_dir), run_id, data, request, cancel_, ttl))


def _answer_json(data: str | None, prompt: str | None) -> str:
    """The answer as JSON text, from the option, stdin, a file, or a hidden prompt."""
    import getpass

    if data is None:
        if not sys.stdin.isatty():
            raise UsageError("give the answer with --data (or --cancel to decline)")
        data = getpass.getpass(f"{prompt or 'answer'} (JSON object, not echoed): ")
    elif data == "-":
        data = sys.stdin.read()
    elif data.startswith("@"):
        try:
            data = Path(data[1:]).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read {data[1:]}: {e.strerror}") from e
    try:
        value = json.loads(data)
    except json.JSONDecodeError as e:
        # Never echo the answer: it may be a password.
        raise UsageError(f"the answer is not valid JSON ({e.msg} at position {e.pos})") from None
    if not isinstance(value, dict):
        raise UsageError('the answer must be a JSON object, e.g. {"code": "123456"}')
    return json.dumps(value)


async def _respond(
    s: Settings, run_id: str, data: str | None, request: str | None, cancel: bool, ttl: float
) -> int:
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from pdpp_orch.client import connect
    from pdpp_orch.models import RespondInput, RespondResult

    address, database = _endpoints(s)
    async with _store(database) as store:
        pending = await store.interactions(run_id)
        prompt = next((p["message"] for p in pending if request in (None, p["request_id"])), None)
        answer = None if cancel else _answer_json(data, prompt)
        client = await connect(address, s.temporal_namespace)
        try:
            accepted: RespondResult = await client.get_workflow_handle(run_id).execute_update(
                "respond", RespondInput(request_id=request, cancel=cancel), result_type=RespondResult
            )
        except WorkflowUpdateFailedError as e:
            raise UsageError(str(e.cause or e)) from None
        except RPCError as e:
            raise UsageError(f"cannot answer {run_id!r}: {e.message}") from None
        status = "cancelled" if cancel else "success"
        if not await store.answer_interaction(run_id, accepted.request_id, status, answer, ttl):
            raise UsageError(f"request {accepted.request_id} of {run_id} is no longer waiting")
        for _ in range(int(30 / 0.25)):
            rows = [
                r
                for r in await store.interactions(run_id, pending_only=False)
                if r["request_id"] == accepted.request_id
            ]
            if rows and rows[0]["status"] != "pending":
                out.print(f"{accepted.kind} answer delivered to the connector of {run_id}")
                return 0
            await asyncio.sleep(0.25)
        out.print(
            f"{accepted.kind} answer stored for {run_id}; the run reads it within {ttl:.0f} s or it is erased"
        )
        return 0


def print_outcome(o: RunOutcome) -> None:
    """A human-readable outcome."""
    color = {"succeeded": "green", "partially_completed": "yellow"}.get(o.status.value, "red")
    out.print(
        f"[bold {color}]{o.status.value}[/]"
        + (" · needs retry" if o.needs_retry else "")
        + (f" · reason {o.reason}" if o.reason else ""),
        highlight=False,
    )
    out.print(
        f"records: {o.records_durable:,} durable of {o.records_emitted:,} emitted, "
        f"{o.records_rejected:,} rejected, {o.buffered_records_dropped} dropped"
    )
    out.print(
        f"checkpoints: {o.state_streams_committed} of {o.state_streams_staged} committed "
        f"({o.checkpoint_commit_status.value})"
    )
    if o.skipped_by_reason:
        out.print("skipped: " + ", ".join(f"{k} {v:,}" for k, v in o.skipped_by_reason.items()))
    t = Table("stream", "collected", "checkpoint", "coverage", "gaps open")
    for st in o.streams:
        t.add_row(st.stream, f"{st.collected:,}", st.checkpoint, st.coverage, str(st.gaps_open))
    out.print(t)


@app.command()
def status(
    run_id: Annotated[str, typer.Argument(help="The run id (also its workflow id).")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Show one run from the `runs` table."""
    _run_async(_status(_settings(data_dir), run_id, as_json))


async def _status(s: Settings, run_id: str, as_json: bool) -> int:

    _, database = _endpoints(s)
    async with _store(database) as store:
        row = await store.get_run(run_id)
    if row is None:
        raise UsageError(f"no run {run_id!r}")
    if row["outcome"]:
        outcome = RunOutcome.model_validate_json(row["outcome"])
        if as_json:
            print(outcome.model_dump_json(indent=2))
        else:
            out.print(f"run {run_id} · {row['connector']} · {row['trigger']} · {row['mode']}")
            print_outcome(outcome)
        return EXIT_CODES[outcome.status]
    if as_json:
        print(
            json.dumps({"run_id": run_id, "status": row["status"], "records_durable": row["records_durable"]})
        )
    else:
        out.print(f"run {run_id} · {row['status']} · {row['records_durable']:,} records durable so far")
    return 0


@app.command()
def runs(
    connector: Annotated[str | None, typer.Option("--connector", help="Only this connector.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 20,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """List recent runs from the `runs` table."""
    _run_async(_runs(_settings(data_dir), connector, limit, as_json))


async def _runs(s: Settings, connector: str | None, limit: int, as_json: bool) -> int:

    _, database = _endpoints(s)
    async with _store(database) as store:
        rows = await store.list_runs(connector, limit)
        waiting: dict[str, list[dict[str, Any]]] = {}
        for w in await store.interactions():
            waiting.setdefault(w["run_id"], []).append(
                {k: w[k] for k in ("request_id", "kind", "message", "expires_at")}
            )
    if as_json:
        items = [
            json.loads(r["outcome"])
            if r["outcome"]
            else {
                "run_id": r["run_id"],
                "connector": r["connector"],
                "status": r["status"],
                "records_durable": r["records_durable"],
                "waiting_on": waiting.get(r["run_id"], []),
            }
            for r in rows
        ]
        print(json.dumps(items, indent=2, default=str))
        return 0
    t = Table("run_id", "connector", "trigger", "status", "needs_retry", "durable", "reason", "started")
    for r in rows:
        reason = r["reason"] or ""
        if not r["outcome"] and r["run_id"] in waiting:
            reason = "; ".join(
                f"{w['kind']} until {w['expires_at']:%H:%M} UTC: pdpp-orch respond {r['run_id']}"
                for w in waiting[r["run_id"]]
            )
        t.add_row(
            r["run_id"],
            r["connector"],
            r["trigger"],
            r["status"],
            "yes" if r["needs_retry"] else "",
            f"{r['records_durable']:,}",
            reason,
            r["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(t)
    return 0


# -- gaps / recover / budget ------------------------------------------------------------------


@app.command()
def gaps(
    name: Annotated[
        str | None, typer.Argument(help="Connector name, or `requeue` followed by a gap id.")
    ] = None,
    gap_id: Annotated[str | None, typer.Argument(help="With `requeue`: the gap to requeue.")] = None,
    status_: Annotated[
        str | None,
        typer.Option("--status", help="Only gaps in this status: pending, leased, recovered, terminal."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows in the table.")] = 50,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """The gap ledger: `gaps [NAME] [--status S]` lists gaps; `gaps requeue GAP_ID` gives a
    terminal (or stuck) gap a fresh start and a recovery of its own."""
    s = _settings(data_dir)
    if name == "requeue":
        if not gap_id:
            raise typer.BadParameter("usage: pdpp-orch gaps requeue GAP_ID")
        _run_async(_requeue(s, gap_id, as_json))
    else:
        if status_ and status_ not in ("pending", "leased", "recovered", "terminal"):
            raise typer.BadParameter(f"unknown status {status_!r}")
        _run_async(_gaps(s, name, status_, limit, as_json))


async def _gaps(s: Settings, connector: str | None, status: str | None, limit: int, as_json: bool) -> int:

    _, database = _endpoints(s)
    async with _store(database) as store:
        rows = await store.list_gaps(connector, status)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    t = Table("gap_id", "connector", "stream", "kind", "reason", "class", "status", "attempts", "not_before")
    for r in rows[:limit]:
        t.add_row(
            r["gap_id"],
            r["connector"],
            r["stream"],
            r["kind"],
            r["reason"],
            r["recovery_class"],
            r["status"] + (f" ({r['terminal_reason']})" if r["terminal_reason"] else ""),
            str(r["attempts"]),
            r["not_before"].strftime("%Y-%m-%d %H:%M") if r["not_before"] else "",
        )
    out.print(t)
    if len(rows) > limit:
        out.print(f"… {len(rows) - limit:,} more (--limit, --status or --json)")
    return 0


async def _requeue(s: Settings, gap_id: str, as_json: bool) -> int:
    from pdpp_orch.client import connect
    from pdpp_orch.hints import MAX_NO_PROGRESS
    from pdpp_orch.models import HintScope, RecoveryClass, RecoveryInput, ResourceRef, RetryHint
    from workflows.recovery import GapRecoveryWorkflow, recovery_workflow_id

    address, database = _endpoints(s)
    async with _store(database) as store:
        row = await store.requeue_gap(gap_id)
    if row is None:
        raise UsageError(f"no gap {gap_id!r}")
    hint = RetryHint(
        hint_id=row["hint_id"],
        reason=row["reason"],
        recovery_class=RecoveryClass(row["recovery_class"]),
        not_before=datetime.now(UTC),
        scope=HintScope(
            stream=None if row["stream"] == "*" else row["stream"],
            include_resources=ResourceRef(count=1, ref=f"gaps?hint_id={row['hint_id']}")
            if row["kind"] == "item"
            else None,
        ),
        gap_count=1,
        estimated_cost=1,
        attempt=1,
        max_attempts=MAX_NO_PROGRESS,
    )
    client = await connect(address, s.temporal_namespace)
    wid = recovery_workflow_id(hint.hint_id)
    await client.start_workflow(
        GapRecoveryWorkflow.run,
        RecoveryInput(connector=row["connector"], hint=hint, found_run_id=row["last_seen_run_id"]),
        id=wid,
        task_queue=s.task_queue,
        static_summary=f"{row['connector']} · requeued gap {gap_id}",
    )
    if as_json:
        print(json.dumps({"gap_id": gap_id, "recovery_workflow_id": wid}))
    else:
        out.print(f"requeued {gap_id}; recovery {wid} started")
    return 0


@app.command()
def recover(
    name: Annotated[str, typer.Argument(help="Connector name, or `cancel` followed by the connector name.")],
    target: Annotated[str | None, typer.Argument(help="With `cancel`: the connector.")] = None,
    now: Annotated[
        bool, typer.Option("--now", help="Bring waiting recoveries forward (the budget still rules).")
    ] = False,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """The connector's recoveries (one per retry hint with open gaps): `recover NAME` shows
    them, `--now` ends their wait for not_before or back-off (and starts again those that
    ended while their gaps are open), `recover cancel NAME` cancels them (their gaps stay open)."""
    s = _settings(data_dir)
    if name == "cancel":
        if not target:
            raise typer.BadParameter("usage: pdpp-orch recover cancel NAME")
        _run_async(_recover(s, target, "cancel", as_json))
    else:
        _run_async(_recover(s, name, "now" if now else "show", as_json))


async def _recover(s: Settings, connector: str, action: str, as_json: bool) -> int:
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    from activities.runs import hint_for
    from pdpp_orch.client import connect
    from pdpp_orch.hints import MAX_NO_PROGRESS
    from pdpp_orch.models import RecoveryInput
    from workflows.recovery import GapRecoveryWorkflow, recovery_workflow_id

    address, database = _endpoints(s)
    client = await connect(address, s.temporal_namespace)
    rows = []
    async with _store(database) as store:
        hints = await store.open_hints(connector)
        for h in hints:
            wid = recovery_workflow_id(h["hint_id"])
            handle = client.get_workflow_handle(wid)
            try:
                desc = await handle.describe()
                running = desc.status == WorkflowExecutionStatus.RUNNING
                state = desc.status.name.lower() if desc.status else "unknown"
            except RPCError:
                running, state = False, "not started"
            if not running and action == "now":
                # Its recovery ended (cancelled, failed) or never started: start it again, due now.
                group = await store.hint_group(connector, h["hint_id"], MAX_NO_PROGRESS)
                if group is not None:
                    entry = Registry.load(s.connectors).get(connector)
                    hint = hint_for(h["hint_id"], group, entry, datetime.now(UTC), MAX_NO_PROGRESS)
                    hint.not_before = datetime.now(UTC)
                    await client.start_workflow(
                        GapRecoveryWorkflow.run,
                        RecoveryInput(connector=connector, hint=hint, found_run_id=h["run_id"]),
                        id=wid,
                        task_queue=s.task_queue,
                        static_summary=f"{connector} · recover {hint.gap_count:,} × {hint.reason} (again)",
                    )
                    state = "started"
            elif running and action == "now":
                await handle.signal(GapRecoveryWorkflow.run_now)
                state = "brought forward"
            elif running and action == "cancel":
                await handle.cancel()
                state = "cancel requested"
            elif running:
                try:
                    state = await handle.query(GapRecoveryWorkflow.phase)
                except RPCError:
                    state = "running (no worker to ask)"
            rows.append({**h, "workflow_id": wid, "state": state})
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    t = Table("workflow_id", "stream", "reason", "open", "recovered", "terminal", "state")
    for r in rows:
        t.add_row(
            r["workflow_id"],
            r["stream"],
            r["reason"],
            f"{r['open']:,}",
            f"{r['recovered']:,}",
            f"{r['terminal']:,}",
            r["state"],
        )
    out.print(t if rows else f"no open retry hints for {connector!r}")
    return 0


@app.command()
def budget(
    name: Annotated[str, typer.Argument(help="Connector name.")],
    as_json: JsonOpt = False,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The connector's cost budget: units per window, spent, remaining, when the window ends."""
    s = _settings(data_dir, connectors)
    _run_async(_budget(s, name, as_json))


async def _budget(s: Settings, connector: str, as_json: bool) -> int:
    from activities.budget import budget_status
    from pdpp_orch.budget import format_window
    from pdpp_orch.client import connect

    entry = Registry.load(s.connectors).get(connector)
    address, _ = _endpoints(s)
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


# -- report -----------------------------------------------------------------------------------


@app.command()
def report(
    name: Annotated[str | None, typer.Argument(help="Only this connector.")] = None,
    as_json: JsonOpt = False,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report to this file.")
    ] = None,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Am I missing anything? Per connector and stream: records held, the last committed
    checkpoint and its age, coverage, open gaps by reason and recovery class, the next retry and
    its cost, and what waits on the owner."""
    _run_async(_report(_settings(data_dir, connectors), name, as_json, html_file))


async def _report(s: Settings, name: str | None, as_json: bool, html_file: Path | None) -> int:
    from pdpp_orch import report as rp

    _, database = _endpoints(s)
    async with _store(database) as store:
        rows = await store.report_rows(name)
    registry = Registry.load(s.connectors)
    costs = {n: e.budget.cost_per_item for n, e in registry.entries.items()}
    now = rp.generated_at()
    reports = rp.build(rows, costs, now)
    if name is not None and not reports:
        raise UsageError(f"nothing recorded for connector {name!r}")
    if html_file is not None:
        await asyncio.to_thread(html_file.write_text, rp.to_html(reports, now), encoding="utf-8")
    if as_json:
        print(rp.to_json(reports))
        return 0
    for r in reports:
        verdict = "[green]nothing missing[/]" if not r.missing_anything else "[yellow]something is missing[/]"
        retry = (
            f"next retry {r.next_retry:%Y-%m-%d %H:%M} UTC ({r.next_retry_cost:,} units)"
            if r.next_retry
            else "no retry planned"
        )
        owner = f" · [red]{r.waiting_on_owner:,} waiting on you[/]" if r.waiting_on_owner else ""
        out.print(f"[bold]{r.connector}[/]: {verdict} · {retry}{owner}")
        for a in r.asks:
            out.print(
                f"  [red]run {a.run_id} waits for your {a.kind}[/] until {a.expires_at:%Y-%m-%d %H:%M} UTC:"
                f" pdpp-orch respond {a.run_id} --data -",
                highlight=False,
            )
        t = Table("stream", "records held", "checkpoint", "age (h)", "coverage", "open gaps")
        for st in r.streams:
            t.add_row(
                st.stream,
                f"{st.records_held:,}",
                f"{st.checkpoint_committed_at:%Y-%m-%d %H:%M}" if st.checkpoint_committed_at else "none",
                "" if st.checkpoint_age_hours is None else str(st.checkpoint_age_hours),
                st.coverage,
                "; ".join(f"{g.open:,} {g.reason} ({g.recovery_class})" for g in st.gaps),
            )
        out.print(t)
    if html_file is not None:
        err.print(f"wrote {html_file}")
    return 0


# -- schedules --------------------------------------------------------------------------------

# -- encryption --------------------------------------------------------------------------------


@app.command()
def keygen(
    key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. the date: 2026-11.")],
) -> None:
    """Print a new AES-256 key entry `KEY_ID=BASE64` for PDPP_ENCRYPTION_KEYS or the key file.
    Put it first to encrypt with it; keep the old entries after it so old histories decrypt."""
    from pdpp_orch.codec import new_key_entry

    try:
        print(new_key_entry(key_id))
    except ConfigError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        _finish(2)


@app.command("codec-server")
def codec_server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8888,
    ui_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--ui-origin", help="A web UI origin allowed to call it (repeatable), e.g. http://localhost:8233."
        ),
    ] = None,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated",
            help="No token, on any address: only behind a proxy that authenticates the UI's users.",
        ),
    ] = False,
) -> None:
    """Serve Temporal's remote codec endpoints (/decode, /encode) with the configured keys, so
    the web UI (its codec server setting, or TEMPORAL_CODEC_ENDPOINT) and `temporal workflow
    show --codec-endpoint URL --codec-auth "Bearer TOKEN"` show payloads in clear. Requests must
    carry `Authorization: Bearer $PDPP_CODEC_TOKEN`; without a token it only listens on
    loopback."""
    _run_async(_codec_server(host, port, ui_origin or [], allow_unauthenticated))


async def _codec_server(host: str, port: int, origins: list[str], allow_unauthenticated: bool = False) -> int:
    from aiohttp import web

    from pdpp_orch.codec import EncryptionCodec, Keyring
    from pdpp_orch.codec_server import make_app

    keyring = Keyring.from_env()
    if keyring is None:
        raise UsageError("no key configured: set PDPP_ENCRYPTION_KEYS or PDPP_ENCRYPTION_KEY_FILE")
    token = os.environ.get("PDPP_CODEC_TOKEN") or None
    if token is None and not allow_unauthenticated and host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError("set PDPP_CODEC_TOKEN to listen beyond loopback (or --allow-unauthenticated)")
    runner = web.AppRunner(make_app(EncryptionCodec(keyring), token, origins))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    err.print(
        f"codec server on http://{host}:{port} ({len(keyring.keys)} key(s), "
        f"{'bearer token required' if token else 'no token: loopback only'}); Ctrl-C to stop"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


schedule_app = typer.Typer(
    help="Recurring syncs on Temporal Schedules (one per connector, id sync-NAME).", no_args_is_help=True
)
app.add_typer(schedule_app, name="schedule")

EveryOpt = Annotated[str | None, typer.Option("--every", help='Interval, e.g. "6h", "30m", "1d".')]
CronOpt = Annotated[str | None, typer.Option("--cron", help='Cron expression, e.g. "0 */6 * * *".')]
OverlapOpt = Annotated[
    str | None,
    typer.Option(
        "--overlap", help="When the previous run is still going: skip (default), buffer_one, allow_all."
    ),
]


def _check_overlap(overlap: str | None) -> None:
    from pdpp_orch.schedules import OVERLAP

    if overlap is not None and overlap not in OVERLAP:
        raise typer.BadParameter(f"--overlap must be one of {', '.join(OVERLAP)}")


@schedule_app.command("create")
def schedule_create(
    name: Annotated[str, typer.Argument(help="Connector name.")],
    every: EveryOpt = None,
    cron: CronOpt = None,
    stream: Annotated[
        list[str] | None, typer.Option("--stream", help="Only this stream (repeatable).")
    ] = None,
    overlap: OverlapOpt = None,
    jitter: Annotated[str | None, typer.Option(help='Random delay up to this, e.g. "5m".')] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    connectors: ConnectorsOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Sync connector NAME on a schedule; its runs carry trigger `scheduled`."""
    _check_overlap(overlap)
    s = _settings(data_dir, connectors)
    _run_async(_schedule_create(s, name, every, cron, stream or [], overlap or "skip", jitter, paused))


async def _schedule_create(
    s: Settings,
    name: str,
    every: str | None,
    cron: str | None,
    streams: list[str],
    overlap: str,
    jitter: str | None,
    paused: bool,
) -> int:
    from temporalio.service import RPCError

    from pdpp_orch import schedules
    from pdpp_orch.client import connect

    _run_input(s, name, streams, None, None)  # validates the connector and its streams
    try:
        spec = schedules.spec(every, cron, jitter)
    except ValueError as e:
        raise UsageError(str(e)) from e
    address, _ = _endpoints(s)
    client = await connect(address, s.temporal_namespace)
    sched = schedules.build(name, s.task_queue, spec, streams, overlap, paused, s.heartbeat_timeout_seconds)
    try:
        await client.create_schedule(schedules.schedule_id(name), sched)
    except RPCError as e:
        raise UsageError(f"cannot create schedule {schedules.schedule_id(name)}: {e.message}") from e
    out.print(f"schedule {schedules.schedule_id(name)} created" + (" (paused)" if paused else ""))
    return 0


@schedule_app.command("update")
def schedule_update(
    name: Annotated[str, typer.Argument(help="Connector name.")],
    every: EveryOpt = None,
    cron: CronOpt = None,
    jitter: Annotated[str | None, typer.Option(help="New jitter (with --every or --cron).")] = None,
    overlap: OverlapOpt = None,
    rekey: Annotated[
        bool,
        typer.Option(
            "--rekey",
            help="Only encrypt the schedule's stored run input again, under the first key of "
            "the keyring (after a key rotation); every update does this too.",
        ),
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Change a schedule's timing (--every or --cron) or overlap policy, or re-encrypt its
    stored run input under the first key (--rekey)."""
    _check_overlap(overlap)
    _run_async(_schedule_update(_settings(data_dir), name, every, cron, jitter, overlap, rekey))


async def _schedule_update(
    s: Settings,
    name: str,
    every: str | None,
    cron: str | None,
    jitter: str | None,
    overlap: str | None,
    rekey: bool = False,
) -> int:
    from pdpp_orch import schedules
    from pdpp_orch.client import connect

    try:
        spec = schedules.spec(every, cron, jitter) if every or cron else None
    except ValueError as e:
        raise UsageError(str(e)) from e
    if spec is None and overlap is None and not rekey:
        raise UsageError("nothing to change: give --every, --cron, --overlap or --rekey")
    address, _ = _endpoints(s)
    client = await connect(address, s.temporal_namespace)
    try:
        await _schedule_call(schedules.update(client, name, spec, overlap), name)
    except ValueError as e:  # the codec: its input is under a key this keyring lacks
        raise UsageError(
            f"the schedule's stored run input cannot be decrypted: {e}; keep the old key in the "
            "keyring (after the new one) until every schedule is updated"
        ) from e
    out.print(f"schedule {schedules.schedule_id(name)} updated")
    return 0


async def _schedule_call(coro: Coroutine[Any, Any, Any], name: str) -> Any:
    from temporalio.service import RPCError, RPCStatusCode

    try:
        return await coro
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UsageError(f"no schedule for connector {name!r}") from e
        raise


@schedule_app.command("list")
def schedule_list(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Every schedule: timing, overlap policy, paused, next run, runs and skipped overlaps."""
    _run_async(_schedule_list(_settings(data_dir), None, as_json))


@schedule_app.command("describe")
def schedule_describe(
    name: Annotated[str, typer.Argument(help="Connector name.")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """One connector's schedule."""
    _run_async(_schedule_list(_settings(data_dir), name, as_json))


async def _schedule_list(s: Settings, name: str | None, as_json: bool) -> int:
    from pdpp_orch import schedules
    from pdpp_orch.client import connect

    address, _ = _endpoints(s)
    client = await connect(address, s.temporal_namespace)
    if name is not None:
        ids = [schedules.schedule_id(name)]
    else:
        ids = sorted([e.id async for e in await client.list_schedules() if e.id.startswith("sync-")])
    rows = []
    for sid in ids:
        desc = await _schedule_call(client.get_schedule_handle(sid).describe(), sid.removeprefix("sync-"))
        rows.append(schedules.summary(desc))
    if as_json:
        print(json.dumps(rows if name is None else rows[0], indent=2, default=str))
        return 0
    t = Table(
        "schedule", "every / cron", "overlap", "paused", "next run", "runs", "skipped (overlap)", "running"
    )
    for r in rows:
        t.add_row(
            r["schedule_id"],
            r["every"] or r["cron"] or "",
            r["overlap"],
            "yes" if r["paused"] else "",
            (r["next_run"] or "")[:19],
            str(r["runs"]),
            str(r["skipped_overlaps"]),
            ", ".join(r["running"]),
        )
    out.print(t if rows else "no schedules")
    return 0


def _schedule_action(action: str) -> Any:
    def command(
        name: Annotated[str, typer.Argument(help="Connector name.")], data_dir: DataDirOpt = None
    ) -> None:
        _run_async(_schedule_do(_settings(data_dir), name, action))

    command.__doc__ = {
        "pause": "Pause a schedule (no runs start until unpaused).",
        "unpause": "Unpause a schedule.",
        "trigger": "Start a scheduled run now (the overlap policy applies).",
        "delete": "Delete a schedule (runs already started go on).",
    }[action]
    return command


async def _schedule_do(s: Settings, name: str, action: str) -> int:
    from pdpp_orch import schedules
    from pdpp_orch.client import connect

    address, _ = _endpoints(s)
    client = await connect(address, s.temporal_namespace)
    handle = client.get_schedule_handle(schedules.schedule_id(name))
    calls = {
        "pause": lambda: handle.pause(note="paused by pdpp-orch"),
        "unpause": lambda: handle.unpause(note="unpaused by pdpp-orch"),
        "trigger": lambda: handle.trigger(),
        "delete": lambda: handle.delete(),
    }
    await _schedule_call(calls[action](), name)
    out.print(f"schedule {schedules.schedule_id(name)}: {action}d".replace("triggerd", "triggered"))
    return 0


for _action in ("pause", "unpause", "trigger", "delete"):
    schedule_app.command(_action)(_schedule_action(_action))


# -- demo / upstream --------------------------------------------------------------------------


@app.command()
def demo(
    case: Annotated[
        list[str] | None, typer.Option("--case", help="Only this case: A, B, C, D or E (repeatable).")
    ] = None,
    world: Annotated[
        str,
        typer.Option(help="Simulated upstream data: seed (the incidents' numbers), small, or a JSON file."),
    ] = "seed",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per case.")] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="Keep the stack and its web UI up afterwards, until Ctrl-C.")
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Run the five seed cases of the partial-run question against the simulated upstreams.

    Uses the running dev stack (or TEMPORAL_ADDRESS/PDPP_DATABASE_URL), else starts the embedded
    one. Runs its own worker; the runs stay inspectable in the Temporal UI. Each demo starts its
    demo_* connectors from scratch. Exit status 0 when every case ended as designed.
    """
    s = _settings(data_dir)
    wanted = {c.strip().upper() for c in case or []}
    if wanted - set("ABCDE"):
        raise typer.BadParameter(f"unknown case(s): {', '.join(sorted(wanted - set('ABCDE')))}")
    _run_async(_demo(s, wanted, world, as_json, serve))


async def _demo(s: Settings, wanted: set[str], world: str, as_json: bool, serve: bool) -> int:
    from pdpp_orch import demo as d
    from pdpp_orch.client import connect
    from pdpp_orch.store import Store
    from pdpp_orch.upstream.process import UpstreamProcess
    from pdpp_orch.worker import build_worker

    stack: DevStack | None = None
    if s.temporal_address and s.database_url:
        address, database, ui = s.temporal_address, s.database_url, None
    elif (running := find_running(s.data_dir)) is not None:
        address, database, ui = running.temporal_address, running.database_url, running.ui_url
    else:
        stack = DevStack(s.data_dir)
        err.print(f"starting the dev stack in {s.data_dir} …")
        ep = await asyncio.to_thread(stack.start)
        address, database, ui = ep.temporal_address, ep.database_url, ep.ui_url
    work = s.data_dir / "demo"
    work.mkdir(parents=True, exist_ok=True)
    selected = [c for c in d.cases(work) if not wanted or c.key[0] in wanted]
    shown: d.RecoveryShown | None = None
    try:
        await asyncio.to_thread(d.prepare_inputs, work, selected, err.print)
        store = await Store.connect(database)
        client = await connect(address, s.temporal_namespace, wait_s=60)
        try:
            await d.reset_connectors(store, [c.connector for c in selected])
            async with UpstreamProcess(world=world, plan=d.DEMO_PLAN) as up:
                registry = d.write_registry(work / "connectors.toml", selected, up.url)
                task_queue = f"pdpp-demo-{secrets.token_hex(4)}"
                worker = build_worker(client, store, task_queue, lambda: Registry.load(registry))
                async with worker:
                    results = await d.run_cases(
                        client,
                        task_queue,
                        selected,
                        lambda r: err.print(
                            f"case {r.case.key:<2} {r.outcome.status.value:<20} "
                            f"{r.outcome.records_durable:>9,} durable  {r.seconds:5.1f} s"
                        ),
                    )
                    e = next((r for r in results if r.case.key == "E"), None)
                    if e is not None and e.outcome.recovery_workflow_ids:
                        err.print(
                            f"case E  recovering (demo budget: 2,000 units per {d.DEMO_BUDGET_WINDOW}, "
                            "not per day; the 24 h wait brought forward as `recover --now` would) …"
                        )
                        shown = await d.show_recovery(
                            client, store, lambda: up.counters("chatgpt.conversation", ids=True)["ids"], e
                        )
                    cancelled = await d.cancel_waiting_recoveries(client, results)
        finally:
            await store.close()
        if as_json:
            for r in results:
                item = r.as_json()
                if r.case.key == "E" and shown is not None:
                    item["recovery"] = shown.as_json()
                print(json.dumps(item))
        else:
            _demo_table(results)
            if shown is not None:
                out.print(
                    f"Case E recovery: {shown.recovered:,} recovered, {shown.open:,} open, in {shown.runs} "
                    f"recovery runs; per budget window ({d.DEMO_BUDGET_WINDOW}, 2,000 units): "
                    + " / ".join(f"{n:,}" for n in shown.per_window)
                    + f"; upstream requests {shown.requests:,} ({shown.requests_per_gap:.2f} per gap)"
                )
            if cancelled:
                out.print(f"{cancelled} recoveries still waiting for their not_before were cancelled.")
            if ui:
                out.print(f"Inspect the runs in the Temporal web UI: {ui}")
        if serve and stack is not None:
            err.print("serving; Ctrl-C to stop")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    finally:
        if stack is not None:
            err.print("stopping the dev stack …")
            await asyncio.to_thread(stack.stop)
    recovered = shown is None or (shown.open == 0 and shown.requests == shown.recovered)
    return 0 if all(r.as_designed for r in results) and recovered else 1


def _demo_table(results: list[Any]) -> None:
    from pdpp_orch.demo import next_retry

    t = Table(
        "case", "connector", "status", "needs_retry", "records_durable", "checkpoints", "skipped_by_reason",
        "next retry", "as designed",
    )  # fmt: skip
    for r in results:
        o = r.outcome
        t.add_row(
            r.case.key,
            r.case.connector,
            o.status.value,
            "yes" if o.needs_retry else "no",
            f"{o.records_durable:,}",
            f"{o.state_streams_committed}/{o.state_streams_staged}",
            ", ".join(f"{k}: {v:,}" for k, v in o.skipped_by_reason.items()),
            next_retry(o),
            "yes" if r.as_designed else "[red]NO[/red]",
        )
    out.print(t)


@app.command()
def upstream(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8766,
    world: Annotated[str, typer.Option(help="seed, small, or a JSON world file.")] = "seed",
    plan: Annotated[Path | None, typer.Option(help="Fault plan JSON file.")] = None,
) -> None:
    """Serve the simulated Gmail, Slack, ChatGPT and bank upstreams (see docs/simulated-upstreams.md)."""
    from pdpp_orch.upstream.server import serve

    serve(host, port, world, str(plan) if plan else None, None)


def main() -> None:
    from pdpp_orch.telemetry import configure_logging

    configure_logging(os.environ.get("PDPP_LOG_LEVEL", "WARNING"), os.environ.get("PDPP_LOG_FORMAT", "text"))
    # platformdirs warns when asked for a runtime dir in a container without XDG_RUNTIME_DIR;
    # its fallback under /tmp is fine for the embedded stack.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    app()


if __name__ == "__main__":
    main()
