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
import importlib.metadata
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg
import orjson
from _stack import (
    CHECKPOINT_EVERY,
    EXAMPLE_MANIFEST,
    CpuMeter,
    Stack,
    copy_baseline,
    embedded_stack,
    example_entry,
    example_records,
    workers,
)

from pdpp_orch.models import RunInput, RunOutcome, RunStatus, StreamScope
from workflows.connector_run import ConnectorRunWorkflow

DEFAULT_RECORDS = 100_000
_V = TypeVar("_V", bound=tuple[Any, ...])
PEERS = ("pdpp", "copy", "dlt", "dlt_csv", "singer", "singer_copy", "empty", "recovery")

# Reads START, answers DONE, waits for the runtime to close stdin: a connector with nothing to
# say, whose own cost is a fork and an exec.
EMPTY_CONNECTOR = [
    "sh",
    "-c",
    'read -r _; echo \'{"type":"DONE","status":"succeeded","records_emitted":0}\'; cat >/dev/null',
]

SINGER_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "n": {"type": "integer"},
        "title": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "body": {"type": "string"},
    },
}


@dataclass
class Row:
    key: str
    name: str
    records_per_s: float | None
    note: str = ""
    others: float | None = None  # share of the machine other processes used meanwhile


def pg_params(dsn: str) -> dict[str, Any]:
    """The embedded server's DSN (a Unix socket directory in `?host=`, trust authentication) as
    the separate fields the peers take. Both refuse an empty password, which trust ignores."""
    url = urlsplit(dsn)
    query = dict(parse_qsl(url.query))
    return {
        "host": query.get("host") or url.hostname or "localhost",
        "port": url.port or 5432,
        "user": unquote(url.username or "postgres"),
        "password": unquote(url.password or "") or "unused",
        "database": url.path.lstrip("/") or "postgres",
    }


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


async def count_rows(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


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


def run_dlt(dsn: str, records: list[dict[str, object]], workdir: Path, file_format: str | None) -> float:
    import dlt

    # No usage reports to the vendor (there is no network here anyway, and a failing send
    # would cost time inside the measurement).
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    dataset = f"bench_dlt_{file_format or 'default'}"
    pg = pg_params(dsn)
    # dlt insists on a host; libpq lets the socket directory in `?host=` override it.
    credentials = f"postgresql://{pg['user']}:{pg['password']}@localhost/{pg['database']}?host={pg['host']}"
    pipeline = dlt.pipeline(
        pipeline_name=dataset,
        destination=dlt.destinations.postgres(credentials=credentials),
        dataset_name=dataset,
        pipelines_dir=str(workdir / "dlt"),
    )
    t0 = time.perf_counter()
    pipeline.run(
        records,
        table_name="notes",
        write_disposition="merge",
        primary_key="id",
        loader_file_format=file_format,  # type: ignore[arg-type]
    )
    return time.perf_counter() - t0


def singer_messages(path: Path, n: int) -> None:
    """SCHEMA, then RECORDs with a STATE every 10,000, as a Singer tap would write them."""
    with path.open("wb") as f:
        f.write(
            orjson.dumps(
                {"type": "SCHEMA", "stream": "notes", "schema": SINGER_SCHEMA, "key_properties": ["id"]}
            )
            + b"\n"
        )
        for i, (_, data) in enumerate(example_records(n)):
            f.write(orjson.dumps({"type": "RECORD", "stream": "notes", "record": data}) + b"\n")
            if (i + 1) % CHECKPOINT_EVERY == 0 or i + 1 == n:
                f.write(
                    orjson.dumps({"type": "STATE", "value": {"bookmarks": {"notes": {"offset": i + 1}}}})
                    + b"\n"
                )


async def run_singer(dsn: str, messages: Path, workdir: Path, schema: str, use_copy: bool) -> float:
    exe = Path(sys.executable).parent / "target-postgres"
    pg = pg_params(dsn)
    config = {
        # A socket directory survives only as a query parameter of the URL form.
        "sqlalchemy_url": (
            f"postgresql+psycopg://{pg['user']}:{pg['password']}@/{pg['database']}"
            f"?host={pg['host']}&port={pg['port']}"
        ),
        "default_target_schema": schema,
        "use_copy": use_copy,
    }
    cfg = workdir / f"{schema}.json"
    cfg.write_text(json.dumps(config))
    log = workdir / f"{schema}.log"
    with messages.open("rb") as stdin, log.open("wb") as err:
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            str(exe), "--config", str(cfg), stdin=stdin, stdout=asyncio.subprocess.DEVNULL, stderr=err
        )
        rc = await proc.wait()
        elapsed = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"target-postgres exited {rc}; see the end of {log}:\n{log.read_text()[-2000:]}")
    return elapsed


@dataclass
class Recovery:
    gaps: int
    recovered: int
    open: int
    requests: int
    runs: int
    seconds: float

    @property
    def per_gap(self) -> float:
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


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def measure(
    rows: list[Row],
    stack: Stack,
    key: str,
    name: str,
    n: int,
    run: Callable[[], Awaitable[float]],
    check: Callable[[], Awaitable[int]],
) -> None:
    """Time one path (`run` returns its seconds), check it loaded n rows, and add its row (or
    why it has none), with the share of the machine other processes took meanwhile."""
    log(f"{name}: {n:,} records …")
    cpu = CpuMeter(stack)  # workers and peers' processes are children of this one: counted as ours
    try:
        elapsed = await run()
        loaded = await check()
    except Exception as e:  # a peer's failure is a finding to report, not a reason to stop
        rows.append(Row(key, name, None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"))
        log(f"{name}: failed: {e}")
        return
    used = cpu.used()
    if loaded != n:
        rows.append(Row(key, name, None, f"loaded {loaded:,} rows of {n:,}"))
        return
    rows.append(Row(key, name, n / elapsed, others=used["others"] / used["capacity"]))
    log(f"{name}: {n / elapsed:,.0f} records/s; {CpuMeter.describe(used)}")


NOT_INSTALLED = "not installed (pip install -e '.[bench]')"


def parse_args() -> argparse.Namespace:
    """--records, --empty-runs, --skip."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--empty-runs", type=int, default=10)
    parser.add_argument("--skip", action="append", default=[], choices=PEERS, help="leave this one out")
    return parser.parse_args()


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


def variants(
    rows: list[Row], skip: set[str], installed: str | None, peer: str, all_variants: tuple[_V, ...]
) -> Iterator[_V]:
    """The variants (key first) of a peer still to measure; none when the peer is not
    installed, which the first one not skipped reports as its row."""
    for variant in all_variants:
        if variant[0] in skip:
            continue
        if installed is None:
            rows.append(Row(variant[0], peer, None, NOT_INSTALLED))
            return
        yield variant


async def measure_dlt(
    rows: list[Row], stack: Stack, records: list[dict[str, object]], n: int, skip: set[str]
) -> None:
    """dlt's rows (the n `records`): its default loader file format, and csv."""
    dlt_v = version("dlt")
    for key, fmt, label in variants(
        rows, skip, dlt_v, "dlt", (("dlt", None, "default loader"), ("dlt_csv", "csv", "csv"))
    ):
        dataset = f"bench_dlt_{fmt or 'default'}"

        async def run_it(fmt: str | None = fmt) -> float:
            return await asyncio.to_thread(run_dlt, stack.dsn, [dict(r) for r in records], stack.workdir, fmt)

        async def check_it(dataset: str = dataset) -> int:
            return await count_rows(stack.dsn, f"{dataset}.notes")

        await measure(rows, stack, key, f"dlt {dlt_v} merge ({label})", n, run_it, check_it)


async def measure_singer(rows: list[Row], stack: Stack, n: int, skip: set[str]) -> None:
    """target-postgres's rows: its defaults, and use_copy."""
    singer_v = version("meltanolabs-target-postgres")
    messages = stack.workdir / "singer.jsonl"
    for key, use_copy, label in variants(
        rows,
        skip,
        singer_v,
        "target-postgres",
        (("singer", False, "defaults"), ("singer_copy", True, "use_copy")),
    ):
        if not messages.exists():
            singer_messages(messages, n)
        schema = f"bench_singer_{key}"

        async def run_singer_it(schema: str = schema, use_copy: bool = use_copy) -> float:
            return await run_singer(stack.dsn, messages, stack.workdir, schema, use_copy)

        async def check_singer(schema: str = schema) -> int:
            return await count_rows(stack.dsn, f"{schema}.notes")

        await measure(
            rows, stack, key, f"target-postgres {singer_v} upsert ({label})", n, run_singer_it, check_singer
        )


def print_rows(rows: list[Row], n: int) -> None:
    """The side-by-side table, fastest first, with each path's ratio to raw COPY."""
    copy_rps = next((r.records_per_s for r in rows if r.key == "copy"), None)
    print(f"\nSide by side: {n:,} records of ~650 bytes, one embedded PostgreSQL, one run")
    print(f"{'path':<44} {'records/s':>10}  {'vs raw COPY':>11}  {'others on the machine':>21}")
    for r in sorted(rows, key=lambda r: -(r.records_per_s or 0)):
        if r.records_per_s is None:
            print(f"{r.name:<44} {'—':>10}  {'':>11}  {'':>21}  {r.note}")
            continue
        ratio = f"{r.records_per_s / copy_rps:.2f}" if copy_rps else "—"
        others = f"{r.others:.0%}" if r.others is not None else ""
        print(f"{r.name:<44} {r.records_per_s:>10,.0f}  {ratio:>11}  {others:>21}")
    print("(others on the machine: the share of its CPU time other processes used during that measurement)")


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
