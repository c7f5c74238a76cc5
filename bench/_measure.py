"""Timing one path of compare.py into a row of its table, and the table."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from _stack import CpuMeter, Stack

_V = TypeVar("_V", bound=tuple[Any, ...])


@dataclass
class Row:
    """One path's line of the table: records per second, or why there are none."""

    key: str
    name: str
    records_per_s: float | None
    note: str = ""
    others: float | None = None  # share of the machine other processes used meanwhile


def log(msg: str) -> None:
    """A progress line on stderr (stdout is the report)."""
    print(msg, file=sys.stderr, flush=True)


async def count_rows(dsn: str, table: str) -> int:
    """`SELECT count(*) FROM table` (a table name, possibly with a WHERE clause)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


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
