"""Ingest benchmark: N records through the whole path vs raw asyncpg COPY, in one run.

    python bench/ingest.py [--records N]

The whole path is a connector process (the bundled `example` connector, ~650-byte records, a
STATE every 10,000), the collect activity in a separate worker process, and PostgreSQL (COPY
into staging + upsert). The baseline is raw asyncpg COPY of the same records into a keyed table
of the same database. Both run against a fresh embedded PostgreSQL and Temporal dev server.
The last line is machine-readable:

    records=<n> records_per_s=<n> copy_records_per_s=<n> ratio=<r> history_events=<n> peak_rss_mb=<n>
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid

import asyncpg
from _stack import CpuMeter, RssSampler, Stack, copy_baseline, embedded_stack, example_entry, workers

from pdpp_orch.models import RunInput, RunOutcome, StreamScope
from workflows.connector_run import ConnectorRunWorkflow


async def checkpoint(dsn: str) -> None:
    """Start from a fresh PostgreSQL checkpoint, as the baseline does."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def whole_path(stack: Stack, n: int) -> tuple[float, int, float, RunOutcome]:
    registry = stack.workdir / "connectors.toml"
    registry.write_text(example_entry("bench", n))
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    async with workers(stack, task_queue, registry) as [worker]:
        sampler = RssSampler([worker.pid]).start()
        cpu = CpuMeter(stack, [worker.pid])
        try:
            inp = RunInput(
                connector="bench",
                run_id=f"bench-{uuid.uuid4().hex[:8]}",
                streams=[StreamScope(name="notes")],
            )
            await checkpoint(stack.dsn)
            t0 = time.perf_counter()
            outcome: RunOutcome = await stack.client.execute_workflow(
                ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=task_queue
            )
            elapsed = time.perf_counter() - t0
            print(f"whole path: {CpuMeter.describe(cpu.used())}", file=sys.stderr)
            events = await stack.history_events(inp.run_id)
        finally:
            sampler.stop()
    return n / elapsed, events, sampler.peak_mb(), outcome


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    async with embedded_stack() as stack:
        rps, events, rss, outcome = await whole_path(stack, args.records)
        assert outcome.records_durable == args.records, outcome
        copy_rps = await copy_baseline(stack.dsn, args.records)
    print(f"whole path: {outcome.status.value}, {outcome.records_durable:,} records durable", file=sys.stderr)
    print(
        f"records={args.records} records_per_s={rps:.0f} copy_records_per_s={copy_rps:.0f} "
        f"ratio={rps / copy_rps:.2f} history_events={events} peak_rss_mb={rss:.0f}"
    )
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
