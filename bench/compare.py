"""Benchmarks side by side: this project, raw COPY, dlt and the Singer target-postgres, in one run.

    python bench/compare.py [--records N] [--empty-runs K] [--skip NAME ...]

Every path loads the same N records (the bundled `example` connector's ~650-byte `notes`
records) into the same fresh embedded PostgreSQL, keyed on the record id:

- pdpp-orchestrator: the whole path, as bench/ingest.py measures it (connector process, worker
  process, Temporal), timed from workflow start to outcome;
- raw COPY: asyncpg `copy_records_to_table` into a keyed jsonb table (the practical limit);
- dlt: `pipeline.run(..., write_disposition="merge", primary_key="id")` into its postgres
  destination, with its default loader file format and, as `dlt csv`, with `csv` (COPY);
- target-postgres (MeltanoLabs, Singer): the records as SCHEMA/RECORD/STATE messages on its
  stdin, key_properties ["id"] (it upserts), with its defaults and, as `+ use_copy`, with COPY.

The peers get their input ready-made (a list of dicts, a file of Singer messages); the whole
path generates it in its connector process as it goes. Then, on the same stack:

- orchestration overhead: start-to-outcome latency of a run whose connector emits nothing but
  DONE (a shell one-liner, so no interpreter start-up is counted), median of K runs;
- recovery efficiency: the demo's Case E (14,784 ChatGPT conversations, 4,188 answered 429
  once) against the simulated upstream, then its gap recovery within a budget of 2,000 units per
  10 s; upstream requests per gap recovered, counted by the upstream (target 1.00).

dlt and target-postgres come from the `bench` extra (pip install -e '.[bench]'); a peer that
is not installed is reported as such and skipped. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time

from _measure import Row, log, print_rows
from _paths import Recovery, measure_copy, measure_pdpp, recovery_case_e
from _peers import measure_dlt, measure_singer
from _stack import embedded_stack, example_records

DEFAULT_RECORDS = 100_000
PEERS = ("pdpp", "copy", "dlt", "dlt_csv", "singer", "singer_copy", "empty", "recovery")


def parse_args() -> argparse.Namespace:
    """--records, --empty-runs, --skip."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--empty-runs", type=int, default=10)
    parser.add_argument("--skip", action="append", default=[], choices=PEERS, help="leave this one out")
    return parser.parse_args()


def print_report(rows: list[Row], n: int, latencies: list[float], recovery: Recovery | None) -> list[str]:
    """The table, the overhead and recovery lines; returns the machine-readable fields so far."""
    print_rows(rows, n)
    summary = [f"records={n}"]
    for r in rows:
        summary.append(f"{r.key}_rps={r.records_per_s:.0f}" if r.records_per_s else f"{r.key}_rps=na")
    if latencies:
        med = statistics.median(latencies)
        print(
            f"\nOrchestration overhead (empty run, start to outcome, {len(latencies)} runs): "
            f"median {med * 1000:.0f} ms, min {min(latencies) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms"
        )
        summary.append(f"empty_run_median_ms={med * 1000:.0f}")
    if recovery is not None:
        print(
            f"Recovery efficiency (Case E): {recovery.gaps:,} gaps, {recovery.recovered:,} recovered, "
            f"{recovery.open:,} open, in {recovery.runs} recovery runs; upstream requests "
            f"{recovery.requests:,} ({recovery.per_gap:.2f} per gap; target 1.00); {recovery.seconds:.0f} s"
        )
        summary.append(f"requests_per_gap={recovery.per_gap:.2f}")
    return summary


async def main() -> None:
    """Measure every path not skipped on one embedded stack, then report."""
    args = parse_args()
    n: int = args.records
    skip = set(args.skip)
    t_start = time.perf_counter()
    records = [data for _, data in example_records(n)]
    rows: list[Row] = []
    recovery: Recovery | None = None
    async with embedded_stack("pdpp-compare-", history_file=True) as stack:
        latencies = await measure_pdpp(rows, stack, n, skip, args.empty_runs)
        if "copy" not in skip:
            await measure_copy(rows, stack, n)
        await measure_dlt(rows, stack, records, n, skip)
        await measure_singer(rows, stack, n, skip)
        if "recovery" not in skip:
            log("recovery: the demo's Case E and its recovery (budget 2,000 per 10 s) …")
            recovery = await recovery_case_e(stack)
    summary = print_report(rows, n, latencies, recovery)
    summary.append(f"elapsed_s={time.perf_counter() - t_start:.0f}")
    print(" ".join(summary))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
