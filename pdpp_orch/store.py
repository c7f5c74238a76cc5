"""The record store and run ledger on PostgreSQL (asyncpg). All SQL of the project lives here.

Writes are set-based: a flush is one transaction of COPY into a temporary staging table, one
upsert, and the checkpoint that the flushed records prove (DESIGN §2, §6).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from array import array
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg
import orjson

from pdpp_orch import protocol, telemetry
from pdpp_orch.models import CheckpointFact, RecoveryClass, RunOutcome, RunStatus, StreamCommit

SCHEMA_VERSION = "5"

TERMINAL_EVENTS = {
    RunStatus.SUCCEEDED: "run.completed",
    RunStatus.PARTIALLY_COMPLETED: "run.partially_completed",
    RunStatus.FAILED: "run.failed",
    RunStatus.CANCELLED: "run.cancelled",
}

RETRYABLE_CLASSES = [c.value for c in RecoveryClass if c.runtime_retryable]

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS records_stage (
    connector text, stream text, key text, data jsonb, deleted boolean,
    first_run_id text, last_run_id text
) ON COMMIT DELETE ROWS
"""

# One column list for the direct COPY and for staging, so one COPY payload serves both.
_COPY_COLUMNS = ["connector", "stream", "key", "data", "deleted", "first_run_id", "last_run_id"]

_UPSERT_RECORDS = """
INSERT INTO records AS r (connector, stream, key, data, deleted, first_run_id, last_run_id)
SELECT connector, stream, key, data, deleted, first_run_id, last_run_id FROM records_stage
ON CONFLICT (connector, stream, key) DO UPDATE SET
    data = CASE WHEN EXCLUDED.deleted THEN r.data ELSE EXCLUDED.data END,
    deleted = EXCLUDED.deleted,
    last_run_id = EXCLUDED.last_run_id,
    updated_at = now()
"""

_UPSERT_GAPS = """
INSERT INTO gaps AS g (gap_id, connector, stream, kind, subject, reason, recovery_class,
                       locator, not_before, last_error, found_run_id, last_seen_run_id)
SELECT u.gap_id, $1, u.stream, u.kind, u.subject, u.reason, u.recovery_class,
       u.locator::jsonb, u.not_before, u.last_error, $2, $2
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
            $10::timestamptz[], $11::text[])
     AS u(gap_id, stream, kind, subject, reason, recovery_class, locator, not_before, last_error)
ON CONFLICT (gap_id) DO UPDATE SET
    reason = EXCLUDED.reason,
    recovery_class = EXCLUDED.recovery_class,
    locator = COALESCE(EXCLUDED.locator, g.locator),
    not_before = EXCLUDED.not_before,
    last_error = EXCLUDED.last_error,
    last_seen_run_id = EXCLUDED.last_seen_run_id,
    -- A settled miss found again is open again, with a clean slate and no hint yet.
    status = CASE WHEN g.status IN ('recovered', 'terminal') THEN 'pending' ELSE g.status END,
    attempts = CASE WHEN g.status IN ('recovered', 'terminal') THEN 0 ELSE g.attempts END,
    hint_id = CASE WHEN g.status IN ('recovered', 'terminal') THEN NULL ELSE g.hint_id END,
    terminal_reason = NULL,
    updated_at = now()
"""

_SETTLE_RECOVERED = """
UPDATE gaps SET status = 'recovered', recovered_run_id = $2, updated_at = now()
WHERE connector = $1 AND gap_id = ANY($3::text[]) AND status <> 'recovered'
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

# The last statement of a flush, and its fencing token: an attempt older than the run's current
# one updates nothing, and its whole batch is rolled back.
_RUN_PROGRESS = """
UPDATE runs SET records_emitted = $2, records_durable = $3, progress = $4::jsonb, attempt = $5
WHERE run_id = $1 AND attempt <= $5
RETURNING 1
"""

_INSERT_SPINE = """
INSERT INTO spine_events (run_id, connector, event_type, payload) VALUES ($1, $2, $3, $4::jsonb)
"""


@dataclass
class GapRow:
    """One miss for the gap ledger; identity is (connector, stream, kind, subject)."""

    stream: str
    kind: str
    subject: str
    reason: str
    recovery_class: str
    locator: str | None = None
    not_before: datetime | None = None
    last_error: str | None = None

    def gap_id(self, connector: str) -> str:
        h = hashlib.sha256("\x1f".join((connector, self.stream, self.kind, self.subject)).encode())
        return "gap_" + h.hexdigest()[:24]


@dataclass
class GapGroup:
    """Open gaps of one run that one retry hint will cover."""

    stream: str
    kind: str
    reason: str
    recovery_class: str
    count: int
    not_before: datetime | None
    attempts: int
    ranges: list[str]
    max_days: int | None


_GAP_GROUPS = """
SELECT stream, kind, reason, recovery_class, count(*) AS n, max(not_before) AS not_before,
       max(attempts) AS attempts,
       array_agg(subject ORDER BY subject) FILTER (WHERE kind = 'range') AS ranges,
       max((locator->>'max_days')::int) FILTER (WHERE kind = 'range') AS max_days
FROM gaps
WHERE connector = $1 AND {where} AND recovery_class = ANY($3::text[]) AND attempts < $4
GROUP BY stream, kind, reason, recovery_class
ORDER BY stream, kind, reason
"""


def _group(r: Any) -> GapGroup:
    return GapGroup(
        stream=r["stream"],
        kind=r["kind"],
        reason=r["reason"],
        recovery_class=r["recovery_class"],
        count=int(r["n"]),
        not_before=r["not_before"],
        attempts=int(r["attempts"]),
        ranges=list(r["ranges"] or []),
        max_days=r["max_days"],
    )


@dataclass
class QuarantineRow:
    line_no: int
    kind: str
    detail: str
    line_bytes: int
    excerpt: str


@dataclass
class CheckpointWrite:
    stream: str
    seq: int
    cursor_json: str
    cursor_bytes: int
    facts_json: str


SOCKET_BUFFER_BYTES = 8 << 20
Row = tuple[bytes, bool, int]


@dataclass
class Flush:
    """One transaction's worth of work, in the order the connector emitted it."""

    # (stream, key) -> its latest version in the batch: (data JSON, deleted, line number)
    records: dict[tuple[str, str], Row] = field(default_factory=dict)
    # What `seal` turns the records into: their COPY data, how many rows that holds, and each
    # row's line number (for the rare batch PostgreSQL refuses part of).
    payload: bytes = b""
    rows: int = 0
    lines: array[int] = field(default_factory=lambda: array("q"))
    gaps: list[GapRow] = field(default_factory=list)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    recovered_gap_ids: list[str] = field(default_factory=list)
    checkpoints: list[CheckpointWrite] = field(default_factory=list)
    spine: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    accepted: int = 0
    bytes: int = 0

    def seal(self, connector: str, run_id: str) -> None:
        """Turn the records into their COPY data and let the records go: a batch waiting for
        its write then holds its data once, not twice."""
        if not self.records:
            return
        self.payload = _copy_payload(connector, run_id, self.records)
        self.rows = len(self.records)
        self.lines = array("q", [line_no for _, _, line_no in self.records.values()])
        self.records = {}

    def empty(self) -> bool:
        return not (
            self.records
            or self.rows
            or self.gaps
            or self.quarantine
            or self.recovered_gap_ids
            or self.checkpoints
        )


@dataclass(frozen=True)
class RefusedRecord:
    """A record whose data PostgreSQL would not store (what the full JSON check says of it)."""

    stream: str
    key: str
    kind: str
    detail: str
    data: bytes
    line_no: int


@dataclass
class FlushResult:
    gaps_recovered: int
    conflicted: bool = False
    # Records left out of the batch; no checkpoint after the first of them was written.
    refused: list[RefusedRecord] = field(default_factory=list)


# COPY's binary format: no escaping to do here, no delimiters to scan for in PostgreSQL.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
_COPY_TRAILER = b"\xff\xff"
_JSONB_VERSION = b"\x01"
_BOOLS = {True: b"\x00\x00\x00\x01\x01", False: b"\x00\x00\x00\x01\x00"}


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _copy_payload(connector: str, run_id: str, rows: dict[tuple[str, str], Row]) -> bytes:
    """Binary COPY data for `rows`, in the columns of _COPY_COLUMNS."""
    count = len(_COPY_COLUMNS).to_bytes(2, "big")
    head = count + _field(connector.encode())
    run = _field(run_id.encode())
    ends = {flag: _BOOLS[flag] + run + run for flag in (True, False)}
    out = [_COPY_HEADER]
    last, start = None, b""
    for (stream, key), (data, deleted, _) in rows.items():
        if stream != last:  # batches are mostly runs of one stream
            last, start = stream, head + _field(stream.encode())
        k = key.encode()
        out.append(
            b"".join(
                (
                    start,
                    len(k).to_bytes(4, "big"),
                    k,
                    (len(data) + 1).to_bytes(4, "big"),
                    _JSONB_VERSION,
                    data,
                    ends[deleted],
                )
            )
        )
    out.append(_COPY_TRAILER)
    return b"".join(out)


def _payload_rows(payload: bytes) -> Iterator[tuple[str, str, bytes, bool]]:
    """(stream, key, data JSON, deleted) of each row of _copy_payload's data, in order."""
    view, pos = memoryview(payload), len(_COPY_HEADER)
    while int.from_bytes(view[pos : pos + 2], "big", signed=True) != -1:
        pos += 2
        fields = []
        for _ in range(len(_COPY_COLUMNS)):
            n = int.from_bytes(view[pos : pos + 4], "big")
            fields.append(bytes(view[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        _, stream, key, data, deleted, _, _ = fields
        yield stream.decode(), key.decode(), data[1:], deleted == b"\x01"


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """A connection whose socket buffers a whole batch: a COPY then streams into PostgreSQL
    while the collector parses the next batch, instead of a socketful at a time between the
    collector's lines."""
    conn: asyncpg.Connection = await asyncpg.connect(*args, **kwargs)
    transport = getattr(conn, "_transport", None)  # asyncpg keeps its socket private
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):  # the kernel caps it at net.core.wmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    return conn


async def _slices(data: bytes) -> AsyncIterator[memoryview]:
    """COPY data as asyncpg sends it: 256 KiB at a time, without copying it into pieces."""
    view = memoryview(data)
    for i in range(0, len(view), 1 << 18):
        yield view[i : i + (1 << 18)]


class StaleAttemptError(Exception):
    """A collect attempt tried to write after a newer attempt of its run had started."""


class SchemaError(Exception):
    """The database's schema is not the one this code needs (and it may not migrate it)."""


# Answers nobody picked up are erased after their TTL, whatever happens to the run.
_PURGE_RESPONSES = (
    "UPDATE interactions SET response = NULL, response_status = NULL, response_expires_at = NULL "
    "WHERE response_expires_at < now()"
)


class Store:
    """Typed access to the record store; construct with `Store.connect(dsn)`."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 10, apply_schema: bool | None = None
    ) -> Store:
        """A pool on `dsn`, with the schema applied, or (`apply_schema` False; default: the
        environment's PDPP_APPLY_SCHEMA, on unless `0`) only checked to be the version this
        code needs, for a least-privilege role that cannot run DDL."""
        if apply_schema is None:
            apply_schema = os.environ.get("PDPP_APPLY_SCHEMA", "1").strip().lower() not in (
                "0",
                "false",
                "no",
            )
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, connect=_connect)
        store = cls(pool)
        try:
            await (store.apply_schema() if apply_schema else store.check_schema())
        except BaseException:
            await pool.close()
            raise
        return store

    async def check_schema(self) -> None:
        """Raise SchemaError unless the database's schema is the version this code needs."""
        try:
            found = await self.pool.fetchval("SELECT value FROM schema_meta WHERE key = 'version'")
        except asyncpg.UndefinedTableError:
            found = None
        if found != SCHEMA_VERSION:
            raise SchemaError(
                f"the record store's schema is {'v' + found if found else 'missing'}, this code needs "
                f"v{SCHEMA_VERSION}: run `pdpp-orch migrate` as the database owner"
            )

    async def close(self) -> None:
        await self.pool.close()

    async def apply_schema(self) -> None:
        """Create or migrate the schema; safe to run at every start and concurrently."""
        ddl = resources.files("pdpp_orch").joinpath("schema.sql").read_text(encoding="utf-8")
        async with self.pool.acquire() as conn, conn.transaction():
            # One writer at a time: concurrent CREATE IF NOT EXISTS can still collide.
            await conn.execute("SELECT pg_advisory_xact_lock(7723001)")
            await conn.execute(ddl)
            await conn.execute(
                "INSERT INTO schema_meta (key, value) VALUES ('version', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                SCHEMA_VERSION,
            )

    # -- one run per connector --------------------------------------------------------------

    async def claim_connector(self, connector: str, run_id: str) -> str | None:
        """Take the connector's run lock for `run_id`, or return the run holding it. A holder
        whose run has its outcome is replaced; whether a holder without one is still alive is
        the caller's to judge (`release_if_held_by`)."""
        async with self.pool.acquire() as conn, conn.transaction():
            holder = await conn.fetchval(
                "SELECT l.run_id FROM connector_locks l LEFT JOIN runs r ON r.run_id = l.run_id "
                "WHERE l.connector = $1 AND l.run_id <> $2 AND r.finished_at IS NULL FOR UPDATE OF l",
                connector,
                run_id,
            )
            if holder is not None:
                return str(holder)
            await conn.execute(
                "INSERT INTO connector_locks (connector, run_id) VALUES ($1, $2) "
                "ON CONFLICT (connector) DO UPDATE SET run_id = EXCLUDED.run_id, acquired_at = now()",
                connector,
                run_id,
            )
            return None

    async def release_connector(self, connector: str, run_id: str) -> None:
        """Give the lock up if `run_id` holds it (a dead holder is released by whoever saw it)."""
        await self.pool.execute(
            "DELETE FROM connector_locks WHERE connector = $1 AND run_id = $2", connector, run_id
        )

    # -- interactions -----------------------------------------------------------------------

    async def open_interaction(
        self,
        run_id: str,
        connector: str,
        request_id: str,
        kind: str,
        message: str | None,
        expires_at: datetime,
    ) -> None:
        """Record that the run waits on its owner (a repeated request id starts over)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_PURGE_RESPONSES)
            await conn.execute(
                """
                INSERT INTO interactions (run_id, request_id, connector, kind, message, expires_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (run_id, request_id) DO UPDATE SET kind = EXCLUDED.kind,
                    message = EXCLUDED.message, expires_at = EXCLUDED.expires_at, status = 'pending',
                    response = NULL, response_status = NULL, response_expires_at = NULL, closed_at = NULL
                """,
                run_id,
                request_id,
                connector,
                kind,
                message,
                expires_at,
            )
            await conn.execute("UPDATE runs SET status = 'waiting_on_owner' WHERE run_id = $1", run_id)

    async def answer_interaction(
        self, run_id: str, request_id: str, status: str, data_json: str | None, ttl_seconds: float
    ) -> bool:
        """Leave the owner's answer for the run to pick up; False if it no longer waits."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_PURGE_RESPONSES)
            return bool(
                await conn.fetchval(
                    "UPDATE interactions SET response = $3::jsonb, response_status = $4, "
                    "response_expires_at = now() + make_interval(secs => $5) "
                    "WHERE run_id = $1 AND request_id = $2 AND status = 'pending' RETURNING 1",
                    run_id,
                    request_id,
                    data_json,
                    status,
                    ttl_seconds,
                )
            )

    async def take_interaction_response(self, run_id: str, request_id: str) -> tuple[str, str | None] | None:
        """The owner's answer (status, data JSON), once: reading it erases it."""
        row = await self.pool.fetchrow(
            """
            WITH old AS (
                SELECT response::text AS response, response_status FROM interactions
                WHERE run_id = $1 AND request_id = $2 AND status = 'pending'
                  AND response_status IS NOT NULL AND response_expires_at > now()
                FOR UPDATE
            )
            UPDATE interactions i SET response = NULL, response_expires_at = NULL
            FROM old WHERE i.run_id = $1 AND i.request_id = $2
            RETURNING old.response, old.response_status
            """,
            run_id,
            request_id,
        )
        return (row["response_status"], row["response"]) if row else None

    async def close_interaction(self, run_id: str, request_id: str, status: str) -> None:
        """The connector got its answer (or the wait ended): erase any response data."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE interactions SET status = $3, closed_at = now(), response = NULL, "
                "response_expires_at = NULL WHERE run_id = $1 AND request_id = $2",
                run_id,
                request_id,
                status,
            )
            await conn.execute(
                "UPDATE runs SET status = 'running' WHERE run_id = $1 AND status = 'waiting_on_owner' "
                "AND NOT EXISTS (SELECT 1 FROM interactions WHERE run_id = $1 AND status = 'pending')",
                run_id,
            )

    async def interactions(
        self, run_id: str | None = None, *, pending_only: bool = True
    ) -> list[dict[str, Any]]:
        """Interactions (prompt included, never the answer), newest first."""
        rows = await self.pool.fetch(
            "SELECT run_id, request_id, connector, kind, message, status, expires_at, created_at, closed_at "
            "FROM interactions WHERE ($1::text IS NULL OR run_id = $1) AND (NOT $2 OR status = 'pending') "
            "ORDER BY created_at DESC",
            run_id,
            pending_only,
        )
        return [dict(r) for r in rows]

    # -- runs -------------------------------------------------------------------------------

    async def start_run(self, run_id: str, connector: str, trigger: str, mode: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO runs (run_id, connector, trigger, mode, status) "
                "VALUES ($1, $2, $3, $4, 'running') ON CONFLICT (run_id) DO NOTHING RETURNING 1",
                run_id,
                connector,
                trigger,
                mode,
            )
            if inserted:
                await conn.execute(
                    _INSERT_SPINE,
                    run_id,
                    connector,
                    "run.started",
                    orjson.dumps({"trigger": trigger, "mode": mode}).decode(),
                )

    async def run_finished(self, run_id: str) -> bool:
        """Whether `run_id` already has its outcome (a run id is never run twice)."""
        return bool(
            await self.pool.fetchval("SELECT finished_at IS NOT NULL FROM runs WHERE run_id = $1", run_id)
        )

    async def begin_attempt(self, run_id: str, attempt: int) -> None:
        """Mark `attempt` as the run's current collect attempt: from now on an older attempt
        still running (its heartbeat timed out, it did not die) can no longer flush."""
        await self.pool.execute(
            "UPDATE runs SET attempt = greatest(attempt, $2) WHERE run_id = $1", run_id, attempt
        )

    async def save_facts(self, run_id: str, facts_json: str) -> None:
        await self.pool.execute(
            "UPDATE runs SET facts = $2::jsonb, records_durable = ($2::jsonb->>'records_durable')::bigint "
            "WHERE run_id = $1",
            run_id,
            facts_json,
        )

    async def load_facts(self, run_id: str) -> tuple[str | None, int, int]:
        """(saved facts JSON or None, records emitted and durable as of the last flush)."""
        row = await self.pool.fetchrow(
            "SELECT facts::text AS facts, records_emitted, records_durable FROM runs WHERE run_id = $1",
            run_id,
        )
        if row is None:
            return None, 0, 0
        return row["facts"], int(row["records_emitted"]), int(row["records_durable"])

    async def resume_points(self, run_id: str) -> dict[str, Any]:
        """Per stream, the counters snapshotted with this run's latest proven checkpoint."""
        rows = await self.pool.fetch(
            "SELECT stream, facts::text AS facts FROM run_checkpoints WHERE run_id = $1 ORDER BY seq",
            run_id,
        )
        return {r["stream"]: orjson.loads(r["facts"]) for r in rows}

    async def finish_run(self, outcome: RunOutcome, events: list[tuple[str, dict[str, Any]]]) -> bool:
        """Write the outcome, `events` and the terminal spine event, once; False if they were
        already written (a retried activity)."""
        payload = outcome.model_dump_json()
        async with self.pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchval(
                """
                UPDATE runs SET status = $2, needs_retry = $3, reason = $4, records_emitted = $5,
                       records_durable = $6, outcome = $7::jsonb, finished_at = $8
                WHERE run_id = $1 AND finished_at IS NULL RETURNING 1
                """,
                outcome.run_id,
                outcome.status.value,
                outcome.needs_retry,
                outcome.reason,
                outcome.records_emitted,
                outcome.records_durable,
                payload,
                outcome.finished_at,
            )
            if updated:
                rows = [(t, orjson.dumps(p).decode()) for t, p in events]
                rows.append((TERMINAL_EVENTS[outcome.status], payload))
                await conn.executemany(
                    _INSERT_SPINE, [(outcome.run_id, outcome.connector, t, p) for t, p in rows]
                )
            return bool(updated)

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT run_id, connector, trigger, mode, status, needs_retry, reason, attempt, "
            "records_emitted, records_durable, outcome::text AS outcome, started_at, finished_at "
            "FROM runs WHERE run_id = $1",
            run_id,
        )
        return dict(row) if row else None

    async def list_runs(self, connector: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT run_id, connector, trigger, mode, status, needs_retry, reason, "
            "records_emitted, records_durable, outcome::text AS outcome, started_at, finished_at "
            "FROM runs WHERE ($1::text IS NULL OR connector = $1) "
            "ORDER BY started_at DESC LIMIT $2",
            connector,
            limit,
        )
        return [dict(r) for r in rows]

    async def recovery_runs(self, connector: str) -> list[dict[str, Any]]:
        """The connector's finished recovery runs, oldest first."""
        rows = await self.pool.fetch(
            "SELECT run_id, status, records_durable, outcome::text AS outcome FROM runs "
            "WHERE connector = $1 AND mode = 'recovery' AND outcome IS NOT NULL ORDER BY started_at",
            connector,
        )
        return [dict(r) for r in rows]

    async def report_rows(self, connector: str | None) -> dict[str, list[dict[str, Any]]]:
        """What `pdpp-orch report` shows, per connector and stream: records held, committed
        checkpoints, open gaps by reason and class, recent runs, and runs waiting on the owner."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(
                "SELECT connector, stream, count(*) FILTER (WHERE NOT deleted) AS held, "
                "count(*) FILTER (WHERE deleted) AS deleted, max(updated_at) AS last_write FROM records "
                "WHERE ($1::text IS NULL OR connector = $1) GROUP BY connector, stream",
                connector,
            )
            state = await conn.fetch(
                "SELECT connector, stream, cursor_bytes, run_id, committed_at FROM stream_state "
                "WHERE ($1::text IS NULL OR connector = $1)",
                connector,
            )
            gaps = await conn.fetch(
                "SELECT connector, stream, reason, recovery_class, status, count(*) AS n, "
                "min(not_before) AS next_retry, count(*) FILTER (WHERE hint_id IS NOT NULL) AS planned "
                "FROM gaps WHERE ($1::text IS NULL OR connector = $1) AND status IN ('pending', 'leased') "
                "GROUP BY connector, stream, reason, recovery_class, status",
                connector,
            )
            runs = await conn.fetch(
                "SELECT connector, run_id, trigger, mode, status, records_durable, started_at, "
                "outcome::text AS outcome FROM ("
                "  SELECT *, row_number() OVER (PARTITION BY connector ORDER BY started_at DESC) AS k "
                "  FROM runs WHERE ($1::text IS NULL OR connector = $1)) r "
                "WHERE k <= 20 ORDER BY connector, started_at",
                connector,
            )
            asks = await conn.fetch(
                "SELECT connector, run_id, request_id, kind, expires_at FROM interactions "
                "WHERE ($1::text IS NULL OR connector = $1) AND status = 'pending' ORDER BY created_at",
                connector,
            )
        return {
            "asks": [dict(r) for r in asks],
            "records": [dict(r) for r in records],
            "state": [dict(r) for r in state],
            "gaps": [dict(r) for r in gaps],
            "runs": [dict(r) for r in runs],
        }

    async def spine_events(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT event_type, payload::text AS payload FROM spine_events WHERE run_id = $1 ORDER BY id",
            run_id,
        )
        return [dict(r) for r in rows]

    async def forget_connector(self, connector: str) -> None:
        """Delete a connector's records, committed state and gaps (its runs stay, as history)."""
        async with self.pool.acquire() as conn, conn.transaction():
            for table in ("records", "stream_state", "gaps"):
                await conn.execute(f"DELETE FROM {table} WHERE connector = $1", connector)

    # -- state ------------------------------------------------------------------------------

    async def start_state(
        self, connector: str, run_id: str, streams: list[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """START.state for an attempt: committed cursors overlaid by this run's resume points.
        Returns (state, resume facts per stream)."""
        state: dict[str, Any] = {}
        resume: dict[str, Any] = {}
        async with self.pool.acquire() as conn:
            for row in await conn.fetch(
                "SELECT stream, cursor::text AS cursor FROM stream_state "
                "WHERE connector = $1 AND stream = ANY($2::text[])",
                connector,
                streams,
            ):
                state[row["stream"]] = orjson.loads(row["cursor"]) if row["cursor"] else None
            for row in await conn.fetch(
                "SELECT stream, seq, cursor::text AS cursor, facts::text AS facts "
                "FROM run_checkpoints WHERE run_id = $1 ORDER BY seq",
                run_id,
            ):
                state[row["stream"]] = orjson.loads(row["cursor"]) if row["cursor"] else None
                resume[row["stream"]] = orjson.loads(row["facts"])
        return state, resume

    async def committed_state_sizes(self, connector: str) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT stream, cursor_bytes FROM stream_state WHERE connector = $1", connector
        )
        return {r["stream"]: int(r["cursor_bytes"]) for r in rows}

    async def commit_checkpoint(
        self, connector: str, run_id: str, fact: CheckpointFact, max_state_bytes: int
    ) -> StreamCommit:
        """Commit a stream's proven checkpoint of `run_id`, in its own transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT seq, cursor_bytes FROM run_checkpoints WHERE run_id = $1 AND stream = $2",
                run_id,
                fact.stream,
            )
            if row is None:
                return StreamCommit(stream=fact.stream, committed=False, reason="no_proven_checkpoint")
            size = int(row["cursor_bytes"])
            if size > max_state_bytes:
                return StreamCommit(
                    stream=fact.stream,
                    committed=False,
                    bytes=size,
                    reason="state_too_large",
                    message=f"cursor of {size} bytes exceeds max_state_bytes={max_state_bytes}",
                )
            await conn.execute(
                """
                INSERT INTO stream_state (connector, stream, cursor, cursor_bytes, run_id)
                SELECT $1, stream, cursor, cursor_bytes, run_id FROM run_checkpoints
                WHERE run_id = $2 AND stream = $3
                ON CONFLICT (connector, stream) DO UPDATE SET cursor = EXCLUDED.cursor,
                    cursor_bytes = EXCLUDED.cursor_bytes, run_id = EXCLUDED.run_id,
                    committed_at = now()
                """,
                connector,
                run_id,
                fact.stream,
            )
            return StreamCommit(stream=fact.stream, committed=True, bytes=size)

    # -- gaps -------------------------------------------------------------------------------

    async def open_gaps(self, connector: str) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT stream, count(*) AS n FROM gaps WHERE connector = $1 "
            "AND status IN ('pending', 'leased') GROUP BY stream",
            connector,
        )
        return {r["stream"]: int(r["n"]) for r in rows}

    async def open_gaps_by_class(self, connector: str) -> dict[str, int]:
        """Open gaps per recovery class (every class present, zeros included)."""
        rows = await self.pool.fetch(
            "SELECT recovery_class, count(*) FILTER (WHERE status IN ('pending', 'leased')) AS n "
            "FROM gaps WHERE connector = $1 GROUP BY recovery_class",
            connector,
        )
        return {r["recovery_class"]: int(r["n"]) for r in rows}

    async def list_gaps(
        self, connector: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT gap_id, connector, stream, kind, subject, reason, recovery_class, status, attempts, "
            "not_before, found_run_id, recovered_run_id, hint_id, terminal_reason FROM gaps "
            "WHERE ($1::text IS NULL OR connector = $1) AND ($2::text IS NULL OR status = $2) "
            "ORDER BY created_at, gap_id",
            connector,
            status,
        )
        return [dict(r) for r in rows]

    async def open_item_gaps(self, connector: str, streams: list[str], limit: int) -> dict[str, list[str]]:
        """Per stream, the resources that open, runtime-retryable gaps stand for."""
        rows = await self.pool.fetch(
            "SELECT stream, subject FROM gaps WHERE connector = $1 AND stream = ANY($2::text[]) "
            "AND kind = 'item' AND status IN ('pending', 'leased') AND recovery_class = ANY($3::text[]) "
            "ORDER BY stream, subject LIMIT $4",
            connector,
            streams,
            RETRYABLE_CLASSES,
            limit,
        )
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["stream"], []).append(r["subject"])
        return out

    async def settle_checkpoint_gaps(
        self, connector: str, run_id: str, opened: list[GapRow], committed_streams: list[str]
    ) -> int:
        """Open a gap for each stream whose latest checkpoint did not commit and close those of
        streams whose latest did; returns how many were closed."""
        async with self.pool.acquire() as conn, conn.transaction():
            if opened:
                await self._upsert_gaps(conn, connector, run_id, opened)
            status = await conn.execute(
                "UPDATE gaps SET status = 'recovered', recovered_run_id = $2, updated_at = now() "
                "WHERE connector = $1 AND kind = 'checkpoint' AND stream = ANY($3::text[]) "
                "AND status IN ('pending', 'leased')",
                connector,
                run_id,
                committed_streams,
            )
            return int(status.split()[-1])

    async def open_gap(self, connector: str, run_id: str, gap: GapRow) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._upsert_gaps(conn, connector, run_id, [gap])

    async def gap_groups(self, connector: str, run_id: str, max_attempts: int) -> list[GapGroup]:
        """The pending, runtime-retryable gaps last seen by `run_id` and owned by no hint yet,
        one group per hint to be."""
        rows = await self.pool.fetch(
            _GAP_GROUPS.format(where="last_seen_run_id = $2 AND status = 'pending' AND hint_id IS NULL"),
            connector,
            run_id,
            RETRYABLE_CLASSES,
            max_attempts,
        )
        return [_group(r) for r in rows]

    async def hint_group(self, connector: str, hint_id: str, max_attempts: int) -> GapGroup | None:
        """The open gaps of an existing hint, as the group it was planned from."""
        row = await self.pool.fetchrow(
            _GAP_GROUPS.format(where="hint_id = $2 AND status IN ('pending', 'leased')"),
            connector,
            hint_id,
            RETRYABLE_CLASSES,
            max_attempts,
        )
        return _group(row) if row else None

    async def assign_hints(self, connector: str, run_id: str, hints: list[tuple[str, GapGroup]]) -> None:
        """Tie each group's gaps to its hint, so the hint can refer to them by id."""
        await self.pool.executemany(
            "UPDATE gaps SET hint_id = $3 WHERE connector = $1 AND last_seen_run_id = $2 "
            "AND stream = $4 AND kind = $5 AND reason = $6 AND status = 'pending' AND hint_id IS NULL",
            [(connector, run_id, hid, g.stream, g.kind, g.reason) for hid, g in hints],
        )

    async def lease_gaps(
        self, connector: str, hint_id: str, lease_id: str, limit: int, max_attempts: int, lease_seconds: float
    ) -> int:
        """Lease up to `limit` open gaps of a hint to one recovery run; returns how many are
        leased under `lease_id` (idempotent: a retried call returns the same lease). The least
        tried and longest waiting go first, so an item that keeps failing cannot starve the
        ones behind it."""
        async with self.pool.acquire() as conn, conn.transaction():
            held = await conn.fetchval(
                "SELECT count(*) FROM gaps WHERE connector = $1 AND lease_id = $2 AND status = 'leased'",
                connector,
                lease_id,
            )
            if held:
                return int(held)
            status = await conn.execute(
                """
                UPDATE gaps SET status = 'leased', lease_id = $3,
                       leased_until = now() + make_interval(secs => $6), updated_at = now()
                WHERE gap_id IN (
                    SELECT gap_id FROM gaps
                    WHERE connector = $1 AND hint_id = $2 AND attempts < $5
                      AND (status = 'pending' OR (status = 'leased' AND leased_until < now()))
                    ORDER BY attempts, last_attempt_at NULLS FIRST, gap_id
                    LIMIT $4 FOR UPDATE SKIP LOCKED)
                """,
                connector,
                hint_id,
                lease_id,
                limit,
                max_attempts,
                lease_seconds,
            )
            return int(status.split()[-1])

    async def leased_gaps(self, connector: str, lease_id: str) -> list[dict[str, Any]]:
        """The gaps of a lease as START.detail_gaps entries (what the connector is served)."""
        rows = await self.pool.fetch(
            "SELECT gap_id, stream, subject, locator::text AS locator FROM gaps "
            "WHERE connector = $1 AND lease_id = $2 AND status = 'leased' AND kind = 'item' ORDER BY gap_id",
            connector,
            lease_id,
        )
        return [
            {
                "gap_id": r["gap_id"],
                "lease_id": lease_id,
                "stream": r["stream"],
                "record_key": r["subject"],
                "detail_locator": orjson.loads(r["locator"]) if r["locator"] else None,
                "status": "pending",
                "reference_only": True,
            }
            for r in rows
        ]

    async def settle_lease(
        self,
        connector: str,
        lease_id: str,
        run_id: str,
        run_clean: bool,
        max_attempts: int,
        max_no_progress: int,
    ) -> None:
        """Settle the gaps a recovery run was served. Recovered ones were closed during the run
        (DETAIL_GAP_RECOVERED). A resource gap the run neither re-reported nor failed on is
        recovered when the run was clean. Every other one used an attempt: it goes back to
        pending, or terminal — `permanent` after `max_attempts` when it is no longer
        runtime-retryable (404/410/401/403), `quarantined` after `max_no_progress`."""
        async with self.pool.acquire() as conn, conn.transaction():
            if run_clean:
                await conn.execute(
                    "UPDATE gaps SET status = 'recovered', recovered_run_id = $3, lease_id = NULL, "
                    "updated_at = now() WHERE connector = $1 AND lease_id = $2 AND status = 'leased' "
                    "AND locator IS NULL AND last_seen_run_id <> $3",
                    connector,
                    lease_id,
                    run_id,
                )
            await conn.execute(
                """
                UPDATE gaps SET attempts = attempts + 1, last_attempt_at = now(), lease_id = NULL,
                    status = CASE
                        WHEN recovery_class <> ALL($3::text[]) AND attempts + 1 >= $4 THEN 'terminal'
                        WHEN attempts + 1 >= $5 THEN 'terminal'
                        ELSE 'pending' END,
                    terminal_reason = CASE
                        WHEN recovery_class <> ALL($3::text[]) AND attempts + 1 >= $4
                            THEN 'permanent:' || reason
                        WHEN attempts + 1 >= $5 THEN 'quarantined'
                        ELSE NULL END,
                    updated_at = now()
                WHERE connector = $1 AND lease_id = $2 AND status = 'leased'
                """,
                connector,
                lease_id,
                RETRYABLE_CLASSES,
                max_attempts,
                max_no_progress,
            )

    async def hint_progress(self, connector: str, hint_id: str) -> tuple[dict[str, int], float]:
        """How the gaps of a hint stand, by status, and the seconds until the earliest pending
        one's `not_before` (0 when one is due)."""
        rows = await self.pool.fetch(
            "SELECT status, count(*) AS n, "
            "GREATEST(0, EXTRACT(EPOCH FROM min(not_before) - now())) AS wait "
            "FROM gaps WHERE connector = $1 AND hint_id = $2 GROUP BY status",
            connector,
            hint_id,
        )
        counts = {r["status"]: int(r["n"]) for r in rows}
        wait = next((float(r["wait"] or 0) for r in rows if r["status"] == "pending"), 0.0)
        return counts, wait

    async def close_hint(self, connector: str, hint_id: str, run_id: str) -> int:
        """Mark every open gap of a hint recovered by `run_id` (a range fetched chunk by chunk)."""
        status = await self.pool.execute(
            "UPDATE gaps SET status = 'recovered', recovered_run_id = $3, lease_id = NULL, "
            "updated_at = now() WHERE connector = $1 AND hint_id = $2 AND status IN ('pending', 'leased')",
            connector,
            hint_id,
            run_id,
        )
        return int(status.split()[-1])

    async def adopt_gaps(self, connector: str, run_id: str, hint_id: str) -> int:
        """Give the gaps a recovery run found and no hint owns to the hint it was executing."""
        status = await self.pool.execute(
            "UPDATE gaps SET hint_id = $3 WHERE connector = $1 AND last_seen_run_id = $2 "
            "AND hint_id IS NULL AND status = 'pending'",
            connector,
            run_id,
            hint_id,
        )
        return int(status.split()[-1])

    async def requeue_gap(self, gap_id: str) -> dict[str, Any] | None:
        """Give a terminal (or stuck) gap a fresh start: pending, no attempts, its own hint."""
        row = await self.pool.fetchrow(
            "UPDATE gaps SET status = 'pending', attempts = 0, terminal_reason = NULL, lease_id = NULL, "
            "hint_id = 'hint_requeue_' || substr(gap_id, 5, 16), not_before = NULL, updated_at = now() "
            "WHERE gap_id = $1 RETURNING connector, stream, kind, reason, recovery_class, hint_id, "
            "last_seen_run_id",
            gap_id,
        )
        return dict(row) if row else None

    async def open_hints(self, connector: str) -> list[dict[str, Any]]:
        """The hints that still own open gaps, with counts by status."""
        rows = await self.pool.fetch(
            "SELECT hint_id, min(stream) AS stream, min(reason) AS reason, min(last_seen_run_id) AS run_id, "
            "count(*) FILTER (WHERE status IN ('pending', 'leased')) AS open, "
            "count(*) FILTER (WHERE status = 'recovered') AS recovered, "
            "count(*) FILTER (WHERE status = 'terminal') AS terminal "
            "FROM gaps WHERE connector = $1 AND hint_id IS NOT NULL GROUP BY hint_id "
            "HAVING count(*) FILTER (WHERE status IN ('pending', 'leased')) > 0 ORDER BY hint_id",
            connector,
        )
        return [dict(r) for r in rows]

    async def hint_subjects(self, connector: str, hint_id: str) -> list[str]:
        """The ids a hint's `include_resources` refers to (still open)."""
        rows = await self.pool.fetch(
            "SELECT subject FROM gaps WHERE connector = $1 AND hint_id = $2 "
            "AND status IN ('pending', 'leased') ORDER BY subject",
            connector,
            hint_id,
        )
        return [r["subject"] for r in rows]

    async def quarantined(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT attempt, line_no, kind, detail, line_bytes, excerpt FROM quarantine "
            "WHERE run_id = $1 ORDER BY attempt, line_no",
            run_id,
        )
        return [dict(r) for r in rows]

    # -- the flush --------------------------------------------------------------------------

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
        batch.seal(connector, run_id)
        with (
            telemetry.span("pdpp.flush", connector=connector, rows=batch.rows, bytes=batch.bytes) as sp,
        ):
            async with self.pool.acquire() as conn, conn.transaction():
                result = await self._flush_in(conn, connector, run_id, attempt, batch, progress, try_copy)
            sp.set_attribute("conflicted", result.conflicted)
        elapsed = time.monotonic() - started
        attrs = {"connector": connector}
        telemetry.flush_latency.record(elapsed, attrs)
        if batch.accepted:
            telemetry.records_durable.add(batch.accepted, attrs)
            telemetry.rows_per_second.record(batch.accepted / max(elapsed, 1e-6), attrs)
        return result

    async def _flush_in(
        self,
        conn: Any,
        connector: str,
        run_id: str,
        attempt: int,
        batch: Flush,
        progress: dict[str, Any],
        try_copy: bool,
    ) -> FlushResult:
        result = FlushResult(gaps_recovered=0)
        if batch.rows:
            result = await self._write_records(conn, connector, run_id, batch, try_copy)
        if batch.gaps:
            await self._upsert_gaps(conn, connector, run_id, batch.gaps)
        if batch.recovered_gap_ids:
            status = await conn.execute(_SETTLE_RECOVERED, connector, run_id, batch.recovered_gap_ids)
            result.gaps_recovered = int(status.split()[-1])
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
        # A refused record is a violation: no checkpoint after it is written.
        first_refused = min((r.line_no for r in result.refused), default=None)
        for cp in batch.checkpoints:
            if first_refused is not None and cp.seq > first_refused:
                continue
            await conn.execute(
                _UPSERT_RUN_CHECKPOINT,
                run_id,
                cp.stream,
                cp.seq,
                cp.cursor_json,
                cp.cursor_bytes,
                cp.facts_json,
            )
        if batch.rows:
            batch.spine.append(
                (
                    "batch_ingested",
                    {"records": batch.accepted, "rows": batch.rows, "bytes": batch.bytes},
                )
            )
        if batch.spine:
            await conn.executemany(
                _INSERT_SPINE,
                [(run_id, connector, t, orjson.dumps(p).decode()) for t, p in batch.spine],
            )
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
        return result

    async def _write_records(
        self, conn: Any, connector: str, run_id: str, batch: Flush, try_copy: bool
    ) -> FlushResult:
        """Write the batch's records. The collector passes data on as the connector wrote it,
        checked as JSON but not as PostgreSQL's jsonb input; should PostgreSQL refuse any of
        it, every row is put through the full JSON check, and those that fail it are left out."""
        try:
            direct = await self._copy_rows(conn, batch.payload, try_copy)
            return FlushResult(0, conflicted=not direct)
        except asyncpg.DataError:
            pass
        kept: dict[tuple[str, str], Row] = {}
        refused: list[RefusedRecord] = []
        for (stream, key, data, deleted), line_no in zip(
            _payload_rows(batch.payload), batch.lines, strict=True
        ):
            checked = protocol.strict_record(key, data)
            if isinstance(checked, protocol.LineError):
                refused.append(RefusedRecord(stream, key, checked.kind, checked.detail, data, line_no))
            else:
                kept[(stream, key)] = (checked, deleted, line_no)
        conflicted = bool(kept) and not await self._copy_rows(
            conn, _copy_payload(connector, run_id, kept), try_copy
        )
        return FlushResult(0, conflicted=conflicted, refused=refused)

    async def _copy_rows(self, conn: Any, payload: bytes, try_copy: bool) -> bool:
        """COPY rows in; True if straight into `records` (every key new), False if through
        staging + upsert. Each step is a savepoint: a conflict or a refusal undoes only it."""
        if try_copy:
            try:
                async with conn.transaction():
                    await conn.copy_to_table(
                        "records", source=_slices(payload), columns=_COPY_COLUMNS, format="binary"
                    )
                return True
            except asyncpg.UniqueViolationError:
                pass
        async with conn.transaction():
            await conn.execute(_STAGE)
            await conn.copy_to_table(
                "records_stage", source=_slices(payload), columns=_COPY_COLUMNS, format="binary"
            )
            await conn.execute(_UPSERT_RECORDS)
        return False

    async def _upsert_gaps(self, conn: Any, connector: str, run_id: str, gaps: list[GapRow]) -> None:
        unique: dict[str, GapRow] = {}
        for g in gaps:
            unique[g.gap_id(connector)] = g
        rows = list(unique.items())
        await conn.execute(
            _UPSERT_GAPS,
            connector,
            run_id,
            [gid for gid, _ in rows],
            [g.stream for _, g in rows],
            [g.kind for _, g in rows],
            [g.subject for _, g in rows],
            [g.reason for _, g in rows],
            [g.recovery_class for _, g in rows],
            [g.locator for _, g in rows],
            [g.not_before for _, g in rows],
            [g.last_error for _, g in rows],
        )
