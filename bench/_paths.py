"""The paths compare.py times on its own stack: the whole path, empty runs, the demo's Case E
recovery, and the raw COPY baseline."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from _measure import Row, count_rows, log, measure
from _stack import EXAMPLE_MANIFEST, Stack, copy_baseline, example_entry, workers

from pdpp_orch.models import RunInput, RunOutcome, RunStatus, StreamScope
from workflows.connector_run import ConnectorRunWorkflow

# Reads START, answers DONE, waits for the runtime to close stdin: a connector with nothing to
# say, whose own cost is a fork and an exec.
EMPTY_CONNECTOR = [
    "sh",
    "-c",
    'read -r _; echo \'{"type":"DONE","status":"succeeded","records_emitted":0}\'; cat >/dev/null',
]


async def whole_path(stack: Stack, task_queue: str, connector: str, n: int) -> float:
    """Seconds from workflow start to a clean outcome with all n records durable."""
    inp = RunInput(
        connector=connector, run_id=f"cmp-{uuid.uuid4().hex[:8]}", streams=[StreamScope(name="notes")]
    )
    t0 = time.perf_counter()
    outcome: RunOutcome = await stack.client.execute_workflow(
        ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=task_queue
    )
    elapsed = time.perf_counter() - t0
    assert outcome.status is RunStatus.SUCCEEDED and outcome.records_durable == n, outcome
    return elapsed


async def empty_runs(stack: Stack, task_queue: str, k: int) -> list[float]:
    """Start-to-outcome seconds of k empty runs, one after the other, after one unmeasured run
    that warms the worker (first workflow task, first connection from the pool)."""
    latencies = []
    for i in range(k + 1):
        inp = RunInput(
            connector="empty", run_id=f"empty-{uuid.uuid4().hex[:8]}", streams=[StreamScope(name="notes")]
        )
        t0 = time.perf_counter()
        outcome: RunOutcome = await stack.client.execute_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=task_queue
        )
        elapsed = time.perf_counter() - t0
        assert outcome.status is RunStatus.SUCCEEDED and outcome.records_durable == 0, outcome
        if i:
            latencies.append(elapsed)
    return latencies


@dataclass
class Recovery:
    """Case E's gaps, how many recovery recovered, and the upstream requests it took."""

    gaps: int
    recovered: int
    open: int
    requests: int
    runs: int
    seconds: float

    @property
    def per_gap(self) -> float:
        """Upstream requests per gap recovered (NaN when none was)."""
        return self.requests / self.recovered if self.recovered else float("nan")


async def recovery_case_e(stack: Stack) -> Recovery:
    """The demo's Case E and its recovery, with the demo's own plan, registry and measurement."""
    from pdpp_orch import demo
    from pdpp_orch.store import Store
    from pdpp_orch.upstream.process import UpstreamProcess

    [case] = [c for c in demo.cases(stack.workdir) if c.key == "E"]
    t0 = time.perf_counter()
    async with UpstreamProcess(world="seed", plan=demo.DEMO_PLAN) as up:
        registry = demo.write_registry(stack.workdir / "recovery.toml", [case], up.url)
        task_queue = f"cmp-recovery-{uuid.uuid4().hex[:6]}"
        store = await Store.connect(stack.dsn)
        try:
            async with workers(stack, task_queue, registry):
                [result] = await demo.run_cases(stack.client, task_queue, [case])
                assert result.as_designed, result.problems

                def requests() -> dict[str, int]:
                    ids: dict[str, int] = up.counters("chatgpt.conversation", ids=True)["ids"]
                    return ids

                shown = await demo.show_recovery(stack.client, store, requests, result)
        finally:
            await store.close()
    return Recovery(
        gaps=result.outcome.skipped_by_reason.get("rate_limited", 0),
        recovered=shown.recovered,
        open=shown.open,
        requests=shown.requests,
        runs=shown.runs,
        seconds=time.perf_counter() - t0,
    )


def write_registry(stack: Stack, n: int) -> Path:
    """The registry of the whole path's connector (`bench`, n records) and the empty one."""
    registry = stack.workdir / "connectors.toml"
    registry.write_text(
        example_entry("bench", n)
        + f"\n[connectors.empty]\ncommand = {json.dumps(EMPTY_CONNECTOR)}\n"
        + f"manifest = {json.dumps(str(EXAMPLE_MANIFEST))}\n"
    )
    return registry


async def measure_pdpp(rows: list[Row], stack: Stack, n: int, skip: set[str], empty: int) -> list[float]:
    """The whole path's row, then the latencies of `empty` empty runs, on the same workers."""
    task_queue = f"cmp-{uuid.uuid4().hex[:8]}"
    latencies: list[float] = []
    async with workers(stack, task_queue, write_registry(stack, n)):
        if "pdpp" not in skip:

            async def run_pdpp() -> float:
                return await whole_path(stack, task_queue, "bench", n)

            async def check_pdpp() -> int:
                return await count_rows(stack.dsn, "records WHERE connector = 'bench'")

            await measure(rows, stack, "pdpp", "pdpp-orchestrator (whole path)", n, run_pdpp, check_pdpp)
        if "empty" not in skip:
            log(f"orchestration overhead: {empty} empty runs …")
            latencies = await empty_runs(stack, task_queue, empty)
    return latencies


async def measure_copy(rows: list[Row], stack: Stack, n: int) -> None:
    """Raw asyncpg COPY's row."""

    async def run_copy() -> float:
        return n / await copy_baseline(stack.dsn, n)

    async def check_copy() -> int:
        return n  # copy_baseline drops its table; COPY either loads every row or raises

    await measure(rows, stack, "copy", "raw asyncpg COPY", n, run_copy, check_copy)
