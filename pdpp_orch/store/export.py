"""Reading the stored records back (`pdpp-orch records`), streamed: PostgreSQL builds each line
and COPY sends them in chunks (JSON lines, CSV), or a server-side cursor hands rows over a
thousand at a time (a table); nothing holds more than a chunk, whatever the stream's size.

A tombstone (`op: delete`) is shown as its key, `deleted` and when, never with data: what a
tombstone keeps is its key and time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

Write = Callable[[bytes], Coroutine[Any, Any, None]]

# One JSON object per record, built by PostgreSQL with `||` (about 15% more of its CPU than
# COPYing the columns; `concat()` looks each argument's output function up per row and costs
# 50% more). Times are written by to_json in the session's zone, set to UTC. A tombstone is its
# key, `deleted` and when: no data.
_LINE = """'{"stream":' || to_json(stream)::text || ',"key":' || to_json(key)::text || CASE
  WHEN deleted THEN ',"deleted":true,"deleted_at":' || to_json(updated_at)::text
                    || ',"run_id":' || to_json(last_run_id)::text || '}'
  ELSE ',"deleted":false,"updated_at":' || to_json(updated_at)::text
       || ',"run_id":' || to_json(last_run_id)::text || ',"data":' || data::text || '}' END"""
# The same as columns: for the table's cursor, and for CSV (`deleted` as true/false there).
_ROW = """stream, key, deleted, to_json(updated_at) #>> '{}' AS updated_at, last_run_id AS run_id,
CASE WHEN NOT deleted THEN data::text END AS data"""
_CSV = """stream, key, CASE WHEN deleted THEN 'true' ELSE 'false' END AS deleted,
to_json(updated_at) #>> '{}' AS updated_at, last_run_id AS run_id,
CASE WHEN NOT deleted THEN data::text END AS data"""
_WHERE = """FROM records WHERE connector = $1 AND ($2::text IS NULL OR stream = $2)
AND ($3::timestamptz IS NULL OR updated_at >= $3) AND ($4::text IS NULL OR key = $4)
ORDER BY stream, key LIMIT $5"""
_UTC = "SET LOCAL TIME ZONE 'UTC'"
# COPY's CSV quotes a value only when it holds the quote or delimiter character or a line
# break; JSON text holds none of \x01, \x02 or a raw line break, so each line comes out exactly
# as PostgreSQL built it: no quoting, no escaping, nothing to undo here.
_QUOTE, _DELIMITER = "\x01", "\x02"
CURSOR_ROWS = 1000


@dataclass(frozen=True)
class RecordQuery:
    """Which stored records: a connector's, optionally one stream, those written since a time,
    one key; at most `limit` (None: all)."""

    connector: str
    stream: str | None = None
    since: datetime | None = None
    key: str | None = None
    limit: int | None = None

    def args(self) -> tuple[Any, ...]:
        return (self.connector, self.stream, self.since, self.key, self.limit)


@dataclass(frozen=True)
class StoredRecord:
    stream: str
    key: str
    deleted: bool
    updated_at: str
    run_id: str
    data: str | None  # JSON text; None for a tombstone


class RecordExport:
    """Streams of stored records, in the formats `pdpp-orch records` writes."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def json_lines(self, q: RecordQuery, write: Write) -> None:
        """One JSON object a line, through COPY."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_UTC)
            await conn.copy_from_query(
                f"SELECT {_LINE} {_WHERE}",
                *q.args(),
                output=write,
                format="csv",
                quote=_QUOTE,
                delimiter=_DELIMITER,
            )

    async def csv(self, q: RecordQuery, write: Write) -> None:
        """CSV with a header row, through COPY; `data` is JSON text, empty for a tombstone."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_UTC)
            await conn.copy_from_query(
                f"SELECT {_CSV} {_WHERE}", *q.args(), output=write, format="csv", header=True
            )

    async def rows(self, q: RecordQuery) -> AsyncIterator[StoredRecord]:
        """The records one by one, from a server-side cursor."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_UTC)
            async for r in conn.cursor(f"SELECT {_ROW} {_WHERE}", *q.args(), prefetch=CURSOR_ROWS):
                yield StoredRecord(**dict(r))

    async def streams(self, connector: str) -> dict[str, int]:
        """How many records each of a connector's streams holds (tombstones included)."""
        rows = await self.pool.fetch(
            "SELECT stream, count(*) AS n FROM records WHERE connector = $1 GROUP BY stream ORDER BY stream",
            connector,
        )
        return {r["stream"]: int(r["n"]) for r in rows}
