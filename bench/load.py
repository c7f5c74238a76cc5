"""Load: many connectors at once, and one long run.

    python bench/load.py [--only many|long] [--runs 50] [--run-records 2000] [--records 5000000]

Both parts run on a fresh embedded stack kept the way `pdpp-orch dev` keeps it (PostgreSQL 18,
Temporal dev server with its history in a SQLite file; `--history memory` keeps it in memory)
and on worker processes (`python worker.py`), each connector being the bundled `example`
(~650-byte records). Each part also says where the CPU time went, the share of other
processes on the machine included.

- many: `--runs` connectors (each its own registry entry, `--run-records` records, a STATE every
  500) started together against 2 worker processes. Every run must end `succeeded` with every
  record durable and its checkpoint committed; reports runs per minute (all runs / time from the
  first start to the last outcome) and the p50/p95/max start-to-outcome latency.
- long: one run of `--records` records with a STATE every `--every` (10,000) on one worker
  process. Reports the worker's peak RSS (sampled every 50 ms), the run workflow's history
  events, and the throughput of each tenth of the records, timed by polling the run's latest
  proven checkpoint in PostgreSQL (`run_checkpoints`) every 0.25 s.

The last line of each part is machine-readable (`many: …`, `long: …`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from typing import Any

import asyncpg
import psutil
from _long_report import LongRun, Sample, report_long_run
from _stack import CpuMeter, RssSampler, Stack, embedded_stack, example_entry, percentile, workers
from temporalio.client import WorkflowHandle

from pdpp_orch.models import RunInput, RunOutcome, RunStatus, StreamScope
from workflows.connector_run import ConnectorRunWorkflow

POLL_S = 0.25


def log(msg: str) -> None:
    """A progress line on stderr (stdout is the report)."""
    print(msg, file=sys.stderr, flush=True)


def check(outcome: RunOutcome, records: int) -> list[str]:
    """How a load run's outcome departs from a clean run of `records` records (empty: it doesn't)."""
    problems = []
    if outcome.status is not RunStatus.SUCCEEDED:
        problems.append(f"status {outcome.status.value} ({outcome.reason})")
    if outcome.records_durable != records or outcome.records_emitted != records:
        problems.append(
            f"{outcome.records_durable:,} durable / {outcome.records_emitted:,} emitted of {records:,}"
        )
    if outcome.state_streams_committed != 1 or outcome.gaps_opened or outcome.needs_retry:
        problems.append(
            f"checkpoints {outcome.state_streams_committed}, gaps {outcome.gaps_opened}, "
            f"needs_retry {outcome.needs_retry}"
        )
    return problems


async def many(stack: Stack, runs: int, records: int, worker_count: int) -> None:
    """`runs` connectors of `records` records started together on `worker_count` workers, and
    their report."""
    names = [f"load_{i:03d}" for i in range(runs)]
    registry = stack.workdir / "many.toml"
    registry.write_text("\n".join(example_entry(name, records, every=500) for name in names))
    task_queue = f"load-{uuid.uuid4().hex[:8]}"
    async with workers(stack, task_queue, registry, worker_count) as procs:
        sampler = RssSampler([p.pid for p in procs]).start()
        cpu = CpuMeter(stack, [p.pid for p in procs])

        async def one(name: str) -> tuple[float, RunOutcome]:
            inp = RunInput(
                connector=name, run_id=f"{name}-{uuid.uuid4().hex[:6]}", streams=[StreamScope(name="notes")]
            )
            t0 = time.perf_counter()
            handle = await stack.client.start_workflow(
                ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=task_queue
            )
            outcome: RunOutcome = await handle.result()
            return time.perf_counter() - t0, outcome

        log(f"many: {runs} runs × {records:,} records on {worker_count} worker processes …")
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(name) for name in names))
        wall = time.perf_counter() - t0
        sampler.stop()
        used = cpu.used()
    bad = {o.run_id: p for _, o in results if (p := check(o, records))}
    assert not bad, f"{len(bad)} of {runs} runs did not end as a clean run: {bad}"
    latencies = sorted(lat for lat, _ in results)
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    print(
        f"\nMany connectors at once: {runs} runs × {records:,} records, {worker_count} worker processes; "
        f"all {runs} succeeded with every record durable and their checkpoint committed"
    )
    print(f"  wall time, first start to last outcome   {wall:8.1f} s")
    print(f"  runs per minute                          {runs / wall * 60:8.0f}")
    print(f"  records per second, all runs together    {runs * records / wall:8,.0f}")
    print(f"  start-to-outcome latency p50 / p95 / max {p50:5.1f} / {p95:.1f} / {latencies[-1]:.1f} s")
    print(
        "  peak RSS per worker process              "
        + " / ".join(f"{sampler.peak_mb(p.pid):.0f}" for p in procs)
        + " MB"
    )
    print(f"  {CpuMeter.describe(used)}")
    print(
        f"many: runs={runs} records_each={records} workers={worker_count} wall_s={wall:.1f} "
        f"runs_per_min={runs / wall * 60:.0f} p50_s={p50:.2f} p95_s={p95:.2f} max_s={latencies[-1]:.2f} "
        f"min_s={latencies[0]:.2f} median_s={statistics.median(latencies):.2f} "
        f"peak_rss_mb={sampler.peak_mb():.0f}"
    )


async def poll_checkpoints(
    pg: asyncpg.Connection,
    proc: psutil.Process,
    handle: WorkflowHandle[Any, RunOutcome],
    records: int,
    t0: float,
) -> tuple[list[Sample], RunOutcome]:
    """The run's latest proven checkpoint every POLL_S until its outcome, logged each tenth."""
    samples: list[Sample] = []
    result = asyncio.ensure_future(handle.result())
    next_log = 0.1
    while not result.done():
        offset = await pg.fetchval(
            "SELECT (cursor->>'offset')::bigint FROM run_checkpoints WHERE run_id = $1 AND stream = 'notes'",
            handle.id,
        )
        if offset is not None:
            samples.append(Sample(time.perf_counter() - t0, int(offset), proc.memory_info().rss))
            if offset >= next_log * records:
                log(f"  {offset:,} durable after {samples[-1].t:.0f} s")
                next_log = (offset * 10 // records + 1) / 10
        await asyncio.wait([result], timeout=POLL_S)
    return samples, await result


async def long_run(stack: Stack, records: int, every: int) -> None:
    """One run of `records` records with a STATE every `every` on one worker, then its report."""
    registry = stack.workdir / "long.toml"
    registry.write_text(example_entry("long", records, every=every))
    task_queue = f"long-{uuid.uuid4().hex[:8]}"
    pg = await asyncpg.connect(stack.dsn)
    try:
        async with workers(stack, task_queue, registry) as [worker]:
            sampler = RssSampler([worker.pid]).start()
            cpu = CpuMeter(stack, [worker.pid])
            proc = psutil.Process(worker.pid)
            inp = RunInput(
                connector="long", run_id=f"long-{uuid.uuid4().hex[:8]}", streams=[StreamScope(name="notes")]
            )
            log(f"long: {records:,} records, a STATE every {every:,} …")
            t0 = time.perf_counter()
            handle = await stack.client.start_workflow(
                ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=task_queue
            )
            samples, outcome = await poll_checkpoints(pg, proc, handle, records, t0)
            elapsed = time.perf_counter() - t0
            inferred = not samples or samples[-1].durable < outcome.records_durable
            if inferred:
                # The run ended between two polls: its last records were durable by its outcome at
                # the latest, so the last tenth ends there (late by at most a poll, the commit and
                # the finish).
                samples.append(Sample(elapsed, outcome.records_durable, proc.memory_info().rss))
            sampler.stop()
            used = cpu.used()
            events = await stack.history_events(inp.run_id)
    finally:
        await pg.close()
    problems = check(outcome, records)
    assert not problems, problems
    peak_mb = sampler.peak_mb()
    report_long_run(LongRun(records, every, outcome, elapsed, events, peak_mb, used, samples, inferred))


async def main() -> None:
    """Run the parts asked for on one embedded stack."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", choices=("many", "long"))
    parser.add_argument("--runs", type=int, default=50, help="connectors started together (many)")
    parser.add_argument("--run-records", type=int, default=2_000, help="records per run (many)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (many)")
    parser.add_argument("--records", type=int, default=5_000_000, help="records of the long run")
    parser.add_argument("--every", type=int, default=10_000, help="records between STATEs (long)")
    parser.add_argument(
        "--history",
        choices=("file", "memory"),
        default="file",
        help="Temporal's history in a SQLite file as `pdpp-orch dev` keeps it (default), or in memory",
    )
    args = parser.parse_args()
    async with embedded_stack("pdpp-load-", history_file=args.history == "file") as stack:
        if args.only in (None, "many"):
            await many(stack, args.runs, args.run_records, args.workers)
        if args.only in (None, "long"):
            await long_run(stack, args.records, args.every)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
