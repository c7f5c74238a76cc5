"""The record store: one transaction per batch that COPYs its records in, with the gaps,
quarantined lines and checkpoints that came with them (DESIGN §2, §6)."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import orjson

from pdpp_orch import protocol, telemetry
from pdpp_orch.store import copydata, gaps
from pdpp_orch.store.batch import Flush, FlushResult, RefusedRecord
from pdpp_orch.store.common import INSERT_SPINE

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS records_stage (
    connector text, stream text, key text, data jsonb, deleted boolean,
    first_run_id text, last_run_id text
) ON COMMIT DELETE ROWS
"""

_UPSERT_RECORDS = """
INSERT INTO records AS r (connector, stream, key, data, deleted, first_run_id, last_run_id)
SELECT connector, stream, key, data, deleted, first_run_id, last_run_id FROM records_stage
ON CONFLICT (connector, stream, key) DO UPDATE SET
    data = EXCLUDED.data,
    deleted = EXCLUDED.deleted,
    last_run_id = EXCLUDED.last_run_id,
    updated_at = now()
"""

# A delete of a key the batch did not write: it marks the stored record a tombstone (the key and
# when, no data), if there is one; for a key never stored, nothing.
_DELETE_STORED = """
UPDATE records AS r SET deleted = true, data = 'null'::jsonb, last_run_id = $2, updated_at = now()
FROM unnest($3::text[], $4::text[]) AS t(stream, key)
WHERE r.connector = $1 AND r.stream = t.stream AND r.key = t.key
"""

_INSERT_QUARANTINE = """
INSERT INTO quarantine (run_id, attempt, line_no, kind, detail, line_bytes, excerpt)
SELECT $1, $2, q.line_no, q.kind, q.detail, q.line_bytes, q.excerpt
FROM unnest($3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::text[])
     AS q(line_no, kind, detail, line_bytes, excerpt)
ON CONFLICT DO NOTHING
"""

_UPSERT_RUN_CHECKPOINT = """
INSERT INTO run_checkpoints (run_id, stream, seq, cursor, cursor_bytes, facts)
VALUES ($1, $2, $3, $4::jsonb, $5, $6::jsonb)
ON CONFLICT (run_id, stream) DO UPDATE SET
    seq = EXCLUDED.seq, cursor = EXCLUDED.cursor, cursor_bytes = EXCLUDED.cursor_bytes,
    facts = EXCLUDED.facts, written_at = now()
"""

_INSERT_CONTINUATIONS = """
INSERT INTO continuations (run_id, attempt, line_no, connector, stream, reason, fact, message)
SELECT $1, $2, c.line_no, $3, c.stream, c.reason, c.fact::jsonb, c.message
FROM unnest($4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
     AS c(line_no, stream, reason, fact, message)
ON CONFLICT DO NOTHING
"""

# The last statement of a flush, and its fencing token: an attempt older than the run's current
# one updates nothing, and its whole batch is rolled back.
_RUN_PROGRESS = """
UPDATE runs SET records_emitted = $2, records_durable = $3, progress = $4::jsonb, attempt = $5
WHERE run_id = $1 AND attempt <= $5
RETURNING 1
"""


class StaleAttemptError(Exception):
    """A collect attempt tried to write after a newer attempt of its run had started."""


class RecordStore:
    """The `records` table and everything a flush writes with it."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def flush(
        self,
        connector: str,
        run_id: str,
        attempt: int,
        batch: Flush,
        progress: dict[str, Any],
        *,
        try_copy: bool = False,
    ) -> FlushResult:
        """Write one batch, its gaps, quarantined lines and the checkpoints it proves, atomically.

        With `try_copy`, records are first COPYed straight into `records` (the fast path for
        keys never seen before); a key that exists makes that attempt roll back to a savepoint
        and the batch goes through staging + upsert instead (FlushResult.conflicted)."""
        started = time.monotonic()
        with telemetry.span("pdpp.flush", connector=connector, rows=batch.rows, bytes=batch.bytes) as sp:
            async with self.pool.acquire() as conn, conn.transaction():
                result = FlushResult(gaps_recovered=0)
                if batch.rows:
                    result = await _write_records(conn, connector, run_id, batch, try_copy)
                deletes = batch.deletes()
                if deletes:
                    streams, keys = zip(*deletes, strict=True)
                    await conn.execute(_DELETE_STORED, connector, run_id, list(streams), list(keys))
                result.gaps_recovered = await _write_ledger(conn, connector, run_id, attempt, batch)
                await _write_checkpoints(conn, run_id, batch, result)
                await _write_spine(conn, connector, run_id, batch)
                await _fence(conn, run_id, attempt, progress)
            sp.set_attribute("conflicted", result.conflicted)
        elapsed = time.monotonic() - started
        attrs = {"connector": connector}
        telemetry.flush_latency.record(elapsed, attrs)
        if batch.accepted:
            telemetry.records_durable.add(batch.accepted, attrs)
            telemetry.rows_per_second.record(batch.accepted / max(elapsed, 1e-6), attrs)
        return result

    async def forget_connector(self, connector: str) -> None:
        """Delete a connector's records, committed state and gaps (its runs stay, as history)."""
        async with self.pool.acquire() as conn, conn.transaction():
            for table in ("records", "stream_state", "gaps"):
                await conn.execute(f"DELETE FROM {table} WHERE connector = $1", connector)


# What PostgreSQL says of a row it cannot store: a value its type refuses (jsonb, numeric, text)
# or a key too long for the primary key's index.
_REFUSED = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)


async def _write_records(conn: Any, connector: str, run_id: str, batch: Flush, try_copy: bool) -> FlushResult:
    """Write the batch's records. The collector passes data on as the connector wrote it, read
    as JSON text but not as PostgreSQL's jsonb: should PostgreSQL refuse any of it, the rows it
    refuses are found and left out (_sort_out), and the rest is written."""
    rows = batch.upserts()
    if not rows:
        return FlushResult(0)
    try:
        direct = await _copy_rows(conn, connector, run_id, rows, try_copy)
        return FlushResult(0, conflicted=not direct)
    except _REFUSED:
        pass
    return await _sort_out(conn, connector, run_id, batch, try_copy)


async def _sort_out(conn: Any, connector: str, run_id: str, batch: Flush, try_copy: bool) -> FlushResult:
    """Write a batch PostgreSQL refused part of: what is known to be refused is left out at once
    (U+0000), the rest is written piece by piece, each piece in a savepoint, a piece refused
    halved until each row PostgreSQL refuses is found, alone, with its reason."""
    kept: list[tuple[tuple[str, str], copydata.Row]] = []
    refused: list[RefusedRecord] = []
    for (stream, key), row in batch.upserts():
        err = protocol.refusal(key, row[0])
        if err is None:
            kept.append(((stream, key), row))
        else:
            refused.append(RefusedRecord(stream, key, err.kind, err.detail, row[3], row[2]))
    conflicted = False
    if try_copy and kept:
        try:
            async with conn.transaction():
                await _copy(conn, "records", connector, run_id, kept)
            return FlushResult(0, refused=refused)
        except _REFUSED:
            pass
        except asyncpg.UniqueViolationError:
            conflicted = True
    await conn.execute(_STAGE)
    todo = [kept] if kept else []
    while todo:
        piece = todo.pop()
        try:
            async with conn.transaction():
                await _copy(conn, "records_stage", connector, run_id, piece)
                await conn.execute(_UPSERT_RECORDS)
                await conn.execute("TRUNCATE records_stage")
        except _REFUSED as e:
            if len(piece) > 1:
                todo += [piece[len(piece) // 2 :], piece[: len(piece) // 2]]
                continue
            [((stream, key), row)] = piece
            why = f"PostgreSQL refused it: {e}" + (f" ({e.detail})" if getattr(e, "detail", None) else "")
            refused.append(RefusedRecord(stream, key, "schema_invalid", why, row[3], row[2]))
    return FlushResult(0, conflicted=conflicted, refused=refused)


async def _copy(conn: Any, table: str, connector: str, run_id: str, rows: copydata.Rows) -> None:
    data = copydata.slices(copydata.encode(connector, run_id, rows))
    await conn.copy_to_table(table, source=data, columns=copydata.COLUMNS, format="binary")


async def _copy_rows(
    conn: Any,
    connector: str,
    run_id: str,
    rows: copydata.Rows,
    try_copy: bool,
) -> bool:
    """COPY rows in; True if straight into `records` (every key new), False if through
    staging + upsert. Each step is a savepoint: a conflict or a refusal undoes only it."""
    if try_copy:
        try:
            async with conn.transaction():
                await _copy(conn, "records", connector, run_id, rows)
            return True
        except asyncpg.UniqueViolationError:
            pass
    async with conn.transaction():
        await conn.execute(_STAGE)
        await _copy(conn, "records_stage", connector, run_id, rows)
        await conn.execute(_UPSERT_RECORDS)
    return False


async def _write_ledger(conn: Any, connector: str, run_id: str, attempt: int, batch: Flush) -> int:
    """The batch's gaps, the gaps it recovered, its quarantined lines and its continuations;
    returns how many gaps it closed."""
    if batch.gaps:
        await gaps.upsert(conn, connector, run_id, batch.gaps)
    recovered = 0
    if batch.recovered_gap_ids:
        recovered = await gaps.mark_recovered(conn, connector, run_id, batch.recovered_gap_ids)
    if batch.quarantine:
        q = batch.quarantine
        await conn.execute(
            _INSERT_QUARANTINE,
            run_id,
            attempt,
            [r.line_no for r in q],
            [r.kind for r in q],
            [r.detail for r in q],
            [r.line_bytes for r in q],
            [r.excerpt for r in q],
        )
    if batch.continuations:
        c = batch.continuations
        await conn.execute(
            _INSERT_CONTINUATIONS,
            run_id,
            attempt,
            connector,
            [r.line_no for r in c],
            [r.stream for r in c],
            [r.reason for r in c],
            [r.fact_json for r in c],
            [r.message for r in c],
        )
    return recovered


async def _write_checkpoints(conn: Any, run_id: str, batch: Flush, result: FlushResult) -> None:
    # A refused record is a violation: no checkpoint after it is written.
    first_refused = min((r.line_no for r in result.refused), default=None)
    for cp in batch.checkpoints:
        if first_refused is not None and cp.seq > first_refused:
            continue
        await conn.execute(
            _UPSERT_RUN_CHECKPOINT, run_id, cp.stream, cp.seq, cp.cursor_json, cp.cursor_bytes, cp.facts_json
        )


async def _write_spine(conn: Any, connector: str, run_id: str, batch: Flush) -> None:
    if batch.rows:
        batch.spine.append(
            ("batch_ingested", {"records": batch.accepted, "rows": batch.rows, "bytes": batch.bytes})
        )
    if batch.spine:
        await conn.executemany(
            INSERT_SPINE, [(run_id, connector, t, orjson.dumps(p).decode()) for t, p in batch.spine]
        )


async def _fence(conn: Any, run_id: str, attempt: int, progress: dict[str, Any]) -> None:
    """Record the run's progress, or roll the whole batch back if a newer attempt has begun."""
    updated = await conn.fetchval(
        _RUN_PROGRESS,
        run_id,
        int(progress.get("records_emitted", 0)),
        int(progress.get("records_durable", 0)),
        orjson.dumps(progress).decode(),
        attempt,
    )
    if updated is None:
        current = await conn.fetchval("SELECT attempt FROM runs WHERE run_id = $1", run_id)
        if current is not None:
            raise StaleAttemptError(
                f"collect attempt {attempt} of {run_id} was superseded by attempt {current}"
            )
