"""`demo` (the five seed cases) and `upstream` (the simulated upstreams alone)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pdpp_orch import demo as d
from pdpp_orch.cli.common import DataDirOpt, err, out, run_async, settings
from pdpp_orch.cli.stack import stop_event, stop_worker
from pdpp_orch.control.connect import connect
from pdpp_orch.devstack import DevStack, find_running
from pdpp_orch.settings import Settings
from pdpp_orch.store import Store
from pdpp_orch.worker import run_worker


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
    s = settings(data_dir)
    wanted = {c.strip().upper() for c in case or []}
    if wanted - set("ABCDE"):
        raise typer.BadParameter(f"unknown case(s): {', '.join(sorted(wanted - set('ABCDE')))}")
    run_async(_demo(s, wanted, world, as_json, serve))


async def _demo(s: Settings, wanted: set[str], world: str, as_json: bool, serve: bool) -> int:
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
    try:
        store = await Store.connect(database)
        try:
            client = await connect(address, s.temporal_namespace, wait_s=60)
            ran = await d.run_demo(client, store, work, selected, world, err.print)
        finally:
            await store.close()
        _print(ran, as_json, ui)
        if serve and stack is not None:
            # The stack left up works like `pdpp-orch dev`'s: a worker on the default task queue.
            err.print(f"serving, with a worker on task queue {s.task_queue}; Ctrl-C to stop")
            stop = stop_event()
            worker = asyncio.create_task(
                run_worker(client, database, s.task_queue, s.connectors, stop, s.data_dir)
            )
            await stop.wait()
            await stop_worker(worker)
    finally:
        if stack is not None:
            err.print("stopping the dev stack …")
            await asyncio.to_thread(stack.stop)
    return 0 if ran.as_designed else 1


def _print(ran: d.DemoRun, as_json: bool, ui: str | None) -> None:
    shown = ran.recovery
    if as_json:
        for r in ran.results:
            item = r.as_json()
            if r.case.key == "E" and shown is not None:
                item["recovery"] = shown.as_json()
            print(json.dumps(item))
        return
    _table(ran.results)
    if shown is not None:
        out.print(
            f"Case E recovery: {shown.recovered:,} recovered, {shown.open:,} open, in {shown.runs} "
            f"recovery runs; per budget window ({d.DEMO_BUDGET_WINDOW}, 2,000 units): "
            + " / ".join(f"{n:,}" for n in shown.per_window)
            + f"; upstream requests {shown.requests:,} ({shown.requests_per_gap:.2f} per gap)"
        )
    if ran.cancelled_recoveries:
        out.print(f"{ran.cancelled_recoveries} recoveries still waiting for their not_before were cancelled.")
    if ui:
        out.print(f"Inspect the runs in the Temporal web UI: {ui}")


def _table(results: list[d.CaseResult]) -> None:
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
            d.next_retry(o),
            "yes" if r.as_designed else "[red]NO[/red]",
        )
    out.print(t)


def upstream(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8766,
    world: Annotated[str, typer.Option(help="seed, small, or a JSON world file.")] = "seed",
    plan: Annotated[Path | None, typer.Option(help="Fault plan JSON file.")] = None,
) -> None:
    """Serve the simulated Gmail, Slack, ChatGPT and bank upstreams (see docs/simulated-upstreams.md)."""
    from pdpp_orch.upstream.server import serve

    serve(host, port, world, str(plan) if plan else None, None)
