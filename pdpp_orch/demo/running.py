"""Running the seed cases end to end (`pdpp-orch demo`): each case's bundled connector against
the simulated upstream with the fault that caused the real incident, through the real workflow,
worker, Temporal and PostgreSQL. The numbers are the incidents' own (`seed` world); tests may
pass a smaller world."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from pdpp_orch.control.budget import budget_status
from pdpp_orch.control.runs import start_run
from pdpp_orch.demo.cases import DEMO_BUDGET_WINDOW, DEMO_PLAN, Case, CaseResult
from pdpp_orch.models import RunInput
from pdpp_orch.registry import Registry, bundled_entries, toml_value
from pdpp_orch.store import Store
from workflows import ids
from workflows.recovery import GapRecoveryWorkflow


def write_registry(path: Path, selected: list[Case], upstream_url: str) -> Path:
    """A registry with one entry per case: the bundled connector's command and manifest, the
    case's settings, and the simulated upstream's address."""
    bundled = bundled_entries()
    blocks = []
    for case in selected:
        entry = bundled[case.bundled]
        env = {**entry.env, "PDPP_UPSTREAM_URL": upstream_url, **case.env}
        lines = [
            f"[connectors.{case.connector}]",
            f"command = {json.dumps(entry.command)}",
            f"manifest = {json.dumps(str(case.manifest or entry.manifest))}",
            "env = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items()) + " }",
        ]
        lines += [f"{k} = {toml_value(v)}" for k, v in case.settings.items()]
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def prepare_inputs(work_dir: Path, selected: list[Case], log: Callable[[str], None]) -> None:
    """Generate Case B's session files once (they are kept between demos) and remove Case C's
    Slack archive, so the dump happens as it did in the incident."""
    from pdpp_orch.connectors.claude_code_gen import generate

    if any(c.bundled == "claude_code" for c in selected):
        root = work_dir / "claude-code"
        marker = work_dir / "claude-code.json"
        if not marker.exists():
            log(f"generating claude-code session files in {root} …")
            summary = generate(root)  # the incident's sizes: 350,563 records in 640 sessions
            marker.write_text(json.dumps(summary.counts()))
    for c in selected:
        archive = c.env.get("SLACK_ARCHIVE")
        if archive:
            Path(archive).unlink(missing_ok=True)


async def reset_connectors(store: Store, names: list[str]) -> None:
    """Forget what earlier demos left for these connectors, so every demo starts from scratch."""
    for name in names:
        await store.records.forget_connector(name)


async def run_cases(
    client: Client,
    task_queue: str,
    selected: list[Case],
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Run each case's connector once through ConnectorRunWorkflow, one after the other."""
    results = []
    for case in selected:
        run_id = ids.run_id(case.connector, datetime.now(UTC), secrets.token_hex(3))
        inp = RunInput(connector=case.connector, run_id=run_id, streams=list(case.streams))
        started = time.monotonic()
        outcome = await (await start_run(client, task_queue, inp)).result()
        result = CaseResult(case, outcome, time.monotonic() - started)
        if on_result:
            on_result(result)
        results.append(result)
    return results


@dataclass
class RecoveryShown:
    """What Case E's recovery did, measured: per budget window, and upstream requests per gap."""

    recovered: int
    open: int
    runs: int
    per_window: list[int]
    requests: int

    @property
    def requests_per_gap(self) -> float:
        return self.requests / self.recovered if self.recovered else 0.0

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "requests_per_gap": round(self.requests_per_gap, 4)}


async def show_recovery(
    client: Client, store: Store, requests: Callable[[], dict[str, int]], result: CaseResult
) -> RecoveryShown:
    """Bring Case E's recovery forward (as `pdpp-orch recover demo_chatgpt --now` would; the
    budget still rules) and wait for it, counting the upstream requests it makes."""
    [wid] = result.outcome.recovery_workflow_ids
    before = requests()
    handle = client.get_workflow_handle_for(GapRecoveryWorkflow.run, wid)
    await handle.signal(GapRecoveryWorkflow.run_now)
    done = await handle.result()
    after = requests()
    runs = await store.runs.recovery_outcomes(result.case.connector)
    budget = await budget_status(client, result.case.connector)
    windows: dict[int, int] = {}
    if budget is not None:
        for r in runs:  # a run draws on the window its grant came from, the one it started in
            k = math.floor((r.started_at - budget.window_started).total_seconds() / budget.window_seconds)
            windows[k] = windows.get(k, 0) + r.records_durable
    per_window = [windows[k] for k in sorted(windows)]
    return RecoveryShown(
        recovered=done.progress.recovered,
        open=done.progress.open,
        runs=done.runs,
        per_window=per_window,
        requests=sum(n - before.get(k, 0) for k, n in after.items()),
    )


# Who cancelled, as the recoveries record it and every surface says it.
DEMO_CANCEL = "the demo (its worker stops with it)"


async def cancel_waiting_recoveries(client: Client, results: list[CaseResult]) -> int:
    """The demo's worker stops with the demo: cancel the recoveries still waiting for their
    not_before (A, C, D), saying the demo did, rather than leave them running with nobody to
    execute them. `pdpp-orch recover now NAME` starts one again (while `demo --serve` serves)."""
    n = 0
    for r in results:
        for wid in r.outcome.recovery_workflow_ids:
            handle = client.get_workflow_handle(wid)
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.cancel(reason=DEMO_CANCEL)
                # Let the (still running) demo worker process the cancellation before it stops.
                with contextlib.suppress(WorkflowFailureError):
                    await asyncio.wait_for(handle.result(), timeout=30)
                n += 1
    return n


@dataclass
class DemoRun:
    """What a whole demo did: each case's result, and Case E's recovery if it ran."""

    results: list[CaseResult]
    recovery: RecoveryShown | None
    cancelled_recoveries: int

    @property
    def as_designed(self) -> bool:
        shown = self.recovery
        recovered = shown is None or (shown.open == 0 and shown.requests == shown.recovered)
        return all(r.as_designed for r in self.results) and recovered


@dataclass
class DemoWorld:
    """The demo's simulated upstream, the registry of its connectors, and the task queue its
    own worker polls (while the world stands, its runs answer their queries)."""

    upstream: Any
    registry: Path
    task_queue: str


@contextlib.asynccontextmanager
async def demo_world(
    client: Client, store: Store, work: Path, selected: list[Case], world: str, log: Callable[[str], None]
) -> AsyncIterator[DemoWorld]:
    """The cases' inputs, a simulated upstream with the incidents' faults, and a worker of the
    demo's own, for as long as the block runs (`demo --serve`: until Ctrl-C)."""
    from activities.sandbox import Sandbox
    from pdpp_orch.upstream.process import UpstreamProcess
    from pdpp_orch.worker import build_worker

    await asyncio.to_thread(prepare_inputs, work, selected, log)
    await reset_connectors(store, [c.connector for c in selected])
    async with UpstreamProcess(world=world, plan=DEMO_PLAN) as up:
        registry = write_registry(work / "connectors.toml", selected, up.url)
        task_queue = f"pdpp-demo-{secrets.token_hex(4)}"
        # `work` is DATA_DIR/demo (cli/demo.py): the sandboxes hide the whole data directory.
        sandbox = Sandbox.for_worker(work.parent)
        async with build_worker(client, store, task_queue, lambda: Registry.load(registry), sandbox=sandbox):
            yield DemoWorld(up, registry, task_queue)


async def run_demo(
    client: Client, store: Store, w: DemoWorld, selected: list[Case], log: Callable[[str], None]
) -> DemoRun:
    """Run the selected cases in the demo's world, then Case E's recovery within the demo budget;
    the other recoveries are cancelled (the demo says so)."""
    shown: RecoveryShown | None = None
    results = await run_cases(
        client,
        w.task_queue,
        selected,
        lambda r: log(
            f"case {r.case.key:<2} {r.outcome.status.value:<20} "
            f"{r.outcome.records_durable:>9,} durable  {r.seconds:5.1f} s"
        ),
    )
    e = next((r for r in results if r.case.key == "E"), None)
    if e is not None and e.outcome.recovery_workflow_ids:
        log(
            f"case E  recovering (demo budget: 2,000 units per {DEMO_BUDGET_WINDOW}, "
            "not per day; the 24 h wait brought forward as `recover now` would) …"
        )

        def requests() -> dict[str, int]:
            counted: dict[str, int] = w.upstream.counters("chatgpt.conversation", ids=True)["ids"]
            return counted

        shown = await show_recovery(client, store, requests, e)
    cancelled = await cancel_waiting_recoveries(client, results)
    return DemoRun(results, shown, cancelled)
