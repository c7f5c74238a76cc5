"""`demo` (the five seed cases) and `upstream` (the simulated upstreams alone)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client

from activities.sandbox import Sandbox
from activities.sandbox.probe import sandbox_problem
from pdpp_orch import demo as d
from pdpp_orch.cli.common import DataDirOpt, err, out, run_async, settings
from pdpp_orch.cli.stack import stop_event
from pdpp_orch.control.connect import connect
from pdpp_orch.control.present import run_present
from pdpp_orch.control.stack import Stack, demo_registry, registry
from pdpp_orch.devstack import DevStack, find_running, serve_registry
from pdpp_orch.models import RunOutcome
from pdpp_orch.present.derive import fate_brief
from pdpp_orch.present.estimate import Missing, missing_text
from pdpp_orch.present.model import Present
from pdpp_orch.settings import Settings
from pdpp_orch.store import Store
from pdpp_orch.worker import build_worker


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
        bool,
        typer.Option(
            "--serve",
            help="Keep the stack, its web UI, the demo's upstream and workers up afterwards, until Ctrl-C:"
            " the demo's runs answer their queries and its connectors' commands work.",
        ),
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Run the five seed cases of the partial-run question against the simulated upstreams.

    Uses the running dev stack (or TEMPORAL_ADDRESS/PDPP_DATABASE_URL), else starts the embedded
    one. Runs its own worker. Its table shows each case at its end and now: Case E's 4,188 gaps
    recovered; the recoveries of A, C and D cancelled by the demo (its worker stops with it),
    with the command that runs them, which works while `--serve` serves. Each demo starts its
    demo_* connectors from scratch. Exit status 0 when every case ended as designed.
    """
    s = settings(data_dir)
    wanted = {c.strip().upper() for c in case or []}
    if wanted - set("ABCDE"):
        raise typer.BadParameter(f"unknown case(s): {', '.join(sorted(wanted - set('ABCDE')))}")
    run_async(_demo(s, wanted, world, as_json, serve))


async def _demo(s: Settings, wanted: set[str], world: str, as_json: bool, serve: bool) -> int:
    if problem := await sandbox_problem():
        err.print(
            f"note: connectors cannot be sandboxed here ({escape(problem)}): every case will fail,"
            " reason sandbox_unavailable; PDPP_SANDBOX=off runs them without (docs/security.md)",
            highlight=False,
        )
    stack: DevStack | None = None
    if s.temporal_address and s.database_url:
        address, database, ui = s.temporal_address, s.database_url, None
    elif (running := find_running(s.data_dir)) is not None:
        address, database, ui = running.temporal_address, running.database_url, running.ui_url
    else:
        stack = DevStack(s.data_dir)
        err.print(f"starting the dev stack in {s.data_dir} …")
        ep = await asyncio.to_thread(stack.start)
        for note in stack.notes:
            err.print(f"note: {note}", highlight=False)
        address, database, ui = ep.temporal_address, ep.database_url, ep.ui_url
    work = demo_registry(s).parent
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o700)  # the demo's upstream data: its user's alone (connectors get grants)
    selected = [c for c in d.cases(work) if not wanted or c.key[0] in wanted]
    try:
        store = await Store.connect(database)
        try:
            client = await connect(address, s.temporal_namespace, wait_s=60)
            async with d.demo_world(client, store, work, selected, world, err.print) as w:
                ran = await d.run_demo(client, store, w, selected, err.print)
                serving = serve and stack is not None
                note = "" if serving else DEMO_NOTE
                presents = [await _now(store, client, r.outcome, note) for r in ran.results]
                _print(ran, presents, as_json, ui)
                if serve and stack is None:
                    err.print(
                        "not serving: the stack in use is not the demo's own"
                        " (its workers do not know the demo's connectors)"
                    )
                if serving:
                    await _serve(s, client, store, w)
        finally:
            await store.close()
    finally:
        if stack is not None:
            err.print("stopping the dev stack …")
            await asyncio.to_thread(stack.stop)
    return 0 if ran.as_designed else 1


# After a command that needs a demo connector, when the demo is not serving.
DEMO_NOTE = " (the demo's connectors run while `pdpp-orch demo --serve` serves)"


async def _now(store: Store, client: Client, o: RunOutcome, note: str) -> Present:
    row = await store.runs.get(o.run_id)
    started = row.started_at if row is not None else o.started_at
    return await run_present(store, client, o, started, datetime.now(UTC), note)


async def _serve(s: Settings, client: Client, store: Store, w: d.DemoWorld) -> None:
    """Keep the demo inspectable until Ctrl-C: its own worker answers its runs' queries (the web
    UI's current details), its upstream stays up, and a worker on the default task queue runs
    what the commands start for the demo's connectors (`recover now`, `run`), which the stack
    file tells every command about."""
    serve_registry(s.data_dir, w.registry)
    found = Stack("", "", None, "the demo", registries=(w.registry,))
    err.print(
        f"serving, with workers on task queues {s.task_queue} and {w.task_queue} (the demo's runs);"
        " the demo's connectors stay runnable; Ctrl-C to stop"
    )
    stop = stop_event()
    sandbox = Sandbox.for_worker(s.data_dir)
    async with build_worker(client, store, s.task_queue, lambda: registry(s, found), sandbox=sandbox):
        await stop.wait()


def _print(ran: d.DemoRun, presents: list[Present], as_json: bool, ui: str | None) -> None:
    shown = ran.recovery
    if as_json:
        for r, p in zip(ran.results, presents, strict=True):
            item = r.as_json() | {"now": p.model_dump(mode="json")}
            if r.case.key == "E" and shown is not None:
                item["recovery"] = shown.as_json()
            print(json.dumps(item))
        return
    _table(ran.results, presents)
    if shown is not None:
        out.print(
            f"Case E recovery: {shown.recovered:,} recovered, {shown.open:,} open, in {shown.runs} "
            f"recovery runs; per budget window ({d.DEMO_BUDGET_WINDOW}, 2,000 units): "
            + " / ".join(f"{n:,}" for n in shown.per_window)
            + f"; upstream requests {shown.requests:,} ({shown.requests_per_gap:.2f} per gap)"
        )
    for r, p in zip(ran.results, presents, strict=True):
        for h in p.hints:
            if not h.fate.settled and h.command:
                out.print(f"Case {r.case.key}: {escape(h.says)}: {escape(h.command)}", highlight=False)
    if ui:
        out.print(f"Inspect the runs in the Temporal web UI: {ui}")


def _now_cell(p: Present) -> str:
    """Where a case stands now: its retries' fates, or what nobody retries."""
    if p.hints:
        return "; ".join(fate_brief(h) for h in p.hints)
    if p.not_retried:
        return "; ".join(f"{n.open:,} × {n.reason}: not retried on its own" for n in p.not_retried)
    return missing_text(Missing(p.records_missing_estimate, p.gaps_of_unknown_size))


def _table(results: list[d.CaseResult], presents: list[Present]) -> None:
    t = Table(
        "case", "connector", "status", "needs_retry", "records_durable", "checkpoints", "skipped_by_reason",
        "at the end: next retry", "now", "as designed",
    )  # fmt: skip
    for r, p in zip(results, presents, strict=True):
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
            escape(_now_cell(p)),
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
