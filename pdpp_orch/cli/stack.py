"""`dev`, `worker`, `migrate`, `health`: the servers and workers a deployment runs."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from typing import Annotated

import typer
from aiohttp import web
from rich.markup import escape
from temporalio.client import Client

from pdpp_orch import codec_server, forward
from pdpp_orch.cli.common import (
    ConnectorsOpt,
    DataDirOpt,
    database,
    err,
    out,
    run_async,
    servers,
    settings,
)
from pdpp_orch.cli.complete import connector_names
from pdpp_orch.cli.deployment import tell_joined
from pdpp_orch.cli.runs import follow
from pdpp_orch.codec import EncryptionCodec, Keyring
from pdpp_orch.control import UsageError
from pdpp_orch.control.connect import connect
from pdpp_orch.control.runs import new_run, start_run
from pdpp_orch.control.stack import RUNS_QUERY, Stack, workflows_url
from pdpp_orch.control.stack import health as check_health
from pdpp_orch.devstack import DevStack, Endpoints, alive, port_for, read_stack_file
from pdpp_orch.registry import Registry
from pdpp_orch.settings import Settings
from pdpp_orch.store import SCHEMA_VERSION, Store
from pdpp_orch.worker import run_worker

SHUTDOWN_S = 15.0
STACK_CHECK_S = 5.0


def stop_event() -> asyncio.Event:
    """Set on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def dev(
    data_dir: DataDirOpt = None,
    connectors: ConnectorsOpt = None,
    sync: Annotated[
        list[str] | None,
        typer.Option(
            "--sync",
            help="Run this connector once the stack is up (repeatable).",
            autocompletion=connector_names,
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Stop after the --sync runs instead of serving.")
    ] = False,
    temporal_port: Annotated[
        int, typer.Option(help="Preferred Temporal port (a busy one is replaced, and said).")
    ] = 7233,
    ui_port: Annotated[
        int, typer.Option(help="Preferred web UI port (a busy one is replaced, and said).")
    ] = 8233,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="ADDR",
            help="Also serve Temporal (on --temporal-port) and PostgreSQL (on --postgres-port) on this"
            " address of this machine, for workers on other machines; prints what they set.",
        ),
    ] = None,
    postgres_port: Annotated[int, typer.Option(help="PostgreSQL's port with --listen.")] = 5432,
) -> None:
    """Start Temporal (with its web UI), PostgreSQL and a worker; serve until Ctrl-C.

    PostgreSQL always asks for a password (generated once, kept in the data directory). Nothing
    embedded starts when Temporal's address and PDPP_DATABASE_URL are set: then this is a worker
    against those servers (plus the --sync runs).
    """
    s = settings(data_dir, connectors)
    run_async(_dev(s, sync or [], once, Ports(temporal_port, ui_port, postgres_port), listen))


@dataclass(frozen=True)
class Ports:
    temporal: int
    ui: int
    postgres: int


async def _loopback_codec_server(ui_port: int, notes: list[str]) -> tuple[str, web.AppRunner] | None:
    """With a key configured, a loopback codec server for the dev UI (its URL and runner)."""
    keyring = Keyring.from_env()
    if keyring is None:
        return None
    port = port_for("the codec server", 8888, notes)
    # The dev UI is served from loopback and calls the codec from the browser without a token.
    origins = [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"]
    runner = await codec_server.serve(EncryptionCodec(keyring), None, origins, "127.0.0.1", port)
    return f"http://127.0.0.1:{port}", runner


async def _dev(s: Settings, sync: list[str], once: bool, ports: Ports, listen: str | None) -> int:
    registry = Registry.load(s.connectors)
    for name in sync:
        registry.get(name).load_manifest()
    stack: DevStack | None = None
    codec: tuple[str, web.AppRunner] | None = None
    forwarder: asyncio.Server | None = None
    if s.temporal_address and s.database_url:
        if listen:
            raise UsageError("--listen serves the embedded stack; these servers are the environment's")
        ep = Endpoints(s.temporal_address, "(external)", s.database_url, os.getpid())
    else:
        if s.temporal_address or s.database_url:
            raise UsageError(
                "set both Temporal's address (TEMPORAL_ADDRESS, or the Temporal profile's) and "
                "PDPP_DATABASE_URL, or neither"
            )
        notes: list[str] = []
        ui_port = port_for("the web UI (--ui-port)", ports.ui, notes)
        codec = await _loopback_codec_server(ui_port, notes)
        stack = DevStack(
            s.data_dir,
            temporal_port=ports.temporal,
            ui_port=ui_port,
            codec_endpoint=codec[0] if codec else None,
            listen=listen,
            postgres_port=ports.postgres,
        )
        err.print(f"starting the dev stack in {s.data_dir} …")
        ep = await asyncio.to_thread(stack.start)
        for note in notes + stack.notes:
            err.print(f"note: {note}", highlight=False)
        if codec:
            err.print(f"payloads are encrypted; the web UI decrypts them through {codec[0]}")
    try:
        if listen:
            forwarder = await _listen(listen, ports.temporal, ep)
        return await _serve(s, ep, registry, sync, once)
    finally:
        if forwarder is not None:
            forwarder.close()
        if stack is not None:
            err.print("stopping the dev stack …")
            await asyncio.to_thread(stack.stop)
        if codec is not None:
            await codec[1].cleanup()


async def _listen(listen: str, port: int, ep: Endpoints) -> asyncio.Server:
    """Temporal's frontend on `listen`:`port` (forward.py says why it is forwarded)."""
    host, _, local = ep.temporal_address.rpartition(":")
    try:
        return await forward.serve(listen, port, host, int(local))
    except OSError as e:
        raise UsageError(f"cannot serve Temporal on {listen}:{port}: {e.strerror or e}") from e


def _print_remote(ep: Endpoints, task_queue: str) -> None:
    """What a worker on another machine sets (the database's password included)."""
    if ep.remote_temporal_address is None:
        return
    out.print("Other machines  : a worker there runs with", highlight=False)
    out.print(f"  TEMPORAL_ADDRESS={ep.remote_temporal_address}", highlight=False)
    out.print(f"  PDPP_DATABASE_URL={ep.remote_database_url}", highlight=False)
    keys = "  and the same PDPP_ENCRYPTION_KEYS" if Keyring.from_env() else ""
    out.print(
        f"  pdpp-orch worker   (PDPP_TASK_QUEUE={task_queue}, or a connector's own task_queue){keys}",
        highlight=False,
    )


async def _serve(s: Settings, ep: Endpoints, registry: Registry, sync: list[str], once: bool) -> int:
    """A worker on the stack, the --sync runs, then serve until stopped."""
    stop = stop_event()
    client = await connect(ep.temporal_address, s.temporal_namespace, wait_s=60)
    worker = _start_worker(s, client, ep.database_url, stop)
    out.print(f"Temporal web UI : {ep.ui_url}")
    if ep.ui_url.startswith("http"):
        out.print(f"  runs          : {workflows_url(ep.ui_url, RUNS_QUERY)}", highlight=False)
        partial = f'{RUNS_QUERY} AND PdppRunStatus = "partially_completed"'
        out.print(f"  partly done   : {workflows_url(ep.ui_url, partial)}", highlight=False)
    out.print(f"Temporal address: {ep.temporal_address}  (TEMPORAL_ADDRESS)")
    out.print(f"Database URL    : {ep.database_url}  (PDPP_DATABASE_URL)")
    out.print(f"Task queue      : {s.task_queue}")
    if version := s.worker_version():
        out.print(f"Worker build    : {escape(version.build_id)} of deployment {version.deployment_name}")
    _print_remote(ep, s.task_queue)
    code = 0
    for name in sync:
        inp = new_run(registry, name, [], heartbeat_timeout_seconds=s.heartbeat_timeout_seconds)
        handle = await start_run(client, s.task_queue, inp)
        err.print(f"started run {inp.run_id}")
        served = Stack(ep.temporal_address, ep.database_url, ep.ui_url, "this dev stack")
        code = max(code, await follow(s, served, client, handle, inp.run_id, as_json=False))
    if once:
        stop.set()
    else:
        err.print("serving; Ctrl-C to stop")
    await stop.wait()
    await stop_worker(worker)
    return code


def _start_worker(s: Settings, client: Client, database_url: str, stop: asyncio.Event) -> asyncio.Task[None]:
    """The worker as a task; a versioned one says, once it has joined, whether it takes new runs."""
    version = s.worker_version()
    worker = asyncio.create_task(
        run_worker(client, database_url, s.task_queue, s.connectors, stop, s.data_dir, deployment=version)
    )
    if version is not None:
        telling = asyncio.create_task(tell_joined(client, version))
        worker.add_done_callback(lambda _: telling.cancel())
    return worker


async def stop_worker(worker: asyncio.Task[None]) -> None:
    """Give the worker SHUTDOWN_S to stop (its activities are cancelled after the graceful
    shutdown timeout); one that will not stop is left, so that Ctrl-C always ends `dev`."""
    try:
        await asyncio.wait_for(worker, SHUTDOWN_S)
    except TimeoutError:
        err.print(f"the worker did not stop within {SHUTDOWN_S:.0f} s; leaving it")


def migrate(data_dir: DataDirOpt = None) -> None:
    """Create or migrate the record store's schema (idempotent), as the database owner. Workers
    and the CLI do this themselves unless PDPP_APPLY_SCHEMA=0, which a least-privilege role
    needs (deploy/postgres/worker-role.sql). Needs PostgreSQL only: PDPP_DATABASE_URL, else
    the dev stack's."""
    run_async(_migrate(settings(data_dir)))


async def _migrate(s: Settings) -> int:
    store = await Store.connect(database(s), max_size=1, apply_schema=True)
    await store.close()
    out.print(f"record store schema at v{SCHEMA_VERSION}")
    return 0


def health(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each server.")] = 5.0,
    data_dir: DataDirOpt = None,
) -> None:
    """Exit 0 when Temporal and PostgreSQL answer (for container liveness/readiness probes),
    1 with the reason otherwise."""
    run_async(_health(settings(data_dir), timeout))


async def _health(s: Settings, wait_s: float) -> int:
    try:
        problems = await check_health(s, wait_s)
    except UsageError as e:  # nothing to check: as unhealthy as a server that does not answer
        problems = [str(e)]
    for p in problems:
        err.print(f"[red]unhealthy:[/red] {escape(p)}", highlight=False)
    if not problems:
        out.print("ok: Temporal and PostgreSQL answer")
    return 1 if problems else 0


def worker(connectors: ConnectorsOpt = None, data_dir: DataDirOpt = None) -> None:
    """Run just a worker (against TEMPORAL_ADDRESS/PDPP_DATABASE_URL or the running dev stack)."""
    run_async(_worker(settings(data_dir, connectors)))


async def _worker(s: Settings) -> int:
    found = servers(s)
    stop = stop_event()
    # A worker started beside its server (compose, a pod) waits for it to come up.
    client = await connect(found.temporal_address, s.temporal_namespace, wait_s=60)
    version = s.worker_version()
    build = f", build {version.build_id} of deployment {version.deployment_name}" if version else ""
    err.print(f"worker on {found.temporal_address}, task queue {s.task_queue}{build}; Ctrl-C to stop")
    gone: list[str] = []
    watch = asyncio.create_task(_while_stack_serves(s, found, stop, gone))
    worker = _start_worker(s, client, found.database_url, stop)
    await stop.wait()
    watch.cancel()
    await stop_worker(worker)
    if gone:
        err.print(f"[red]stopped:[/red] {gone[0]}", highlight=False)
        return 1
    return 0


async def _while_stack_serves(s: Settings, found: Stack, stop: asyncio.Event, gone: list[str]) -> None:
    """A worker on the dev stack ends, saying why, when that stack stops or restarts elsewhere:
    it would otherwise retry a dead address for ever."""
    if found.ui_url is None:  # servers of the environment's, not a dev stack
        return
    while not stop.is_set():
        await asyncio.sleep(STACK_CHECK_S)
        now = read_stack_file(s.data_dir)
        if now is None or not alive(now) or now.temporal_address != found.temporal_address:
            where = f"; it now serves Temporal at {now.temporal_address}" if now and alive(now) else ""
            gone.append(
                f"the dev stack this worker served ({found.temporal_address}) has stopped{where}; "
                "start the worker again"
            )
            stop.set()
