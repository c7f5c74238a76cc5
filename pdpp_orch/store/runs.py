"""The run ledger: one `runs` row per run, its spine events and its quarantined lines."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel

from pdpp_orch.models import Continuation, LiveStatus, Mode, RunOutcome, RunStatus, Trigger
from pdpp_orch.store.common import INSERT_SPINE

TERMINAL_EVENTS = {
    RunStatus.SUCCEEDED: "run.completed",
    RunStatus.PARTIALLY_COMPLETED: "run.partially_completed",
    RunStatus.FAILED: "run.failed",
    RunStatus.CANCELLED: "run.cancelled",
}

_COLUMNS = (
    "run_id, connector, trigger, mode, status, needs_retry, reason, attempt, records_emitted, "
    "records_durable, outcome::text AS outcome, started_at, finished_at"
)

# Runs are never deleted (erase keeps them) and every record came from a run; records count
# too, for a store filled some other way. Both by index: a loose scan of each table's leading
# `connector` column, not a scan of every row.
_HOLDS = (
    "SELECT EXISTS (SELECT 1 FROM runs WHERE connector = $1) "
    "OR EXISTS (SELECT 1 FROM records WHERE connector = $1)"
)
_CONNECTORS = """
WITH RECURSIVE r AS (
    SELECT min(connector) AS c FROM runs
    UNION ALL SELECT (SELECT min(connector) FROM runs WHERE connector > r.c) FROM r WHERE r.c IS NOT NULL
), d AS (
    SELECT min(connector) AS c FROM records
    UNION ALL SELECT (SELECT min(connector) FROM records WHERE connector > d.c) FROM d WHERE d.c IS NOT NULL
)
SELECT c AS connector FROM r WHERE c IS NOT NULL UNION SELECT c FROM d WHERE c IS NOT NULL ORDER BY 1
"""

# An attempt's start and end on the spine (`pdpp-orch logs`), each once. The end is what the
# attempt itself saw; an attempt whose worker was lost has none.
_ATTEMPT_STARTED = """
INSERT INTO spine_events (run_id, connector, event_type, payload)
SELECT run_id, connector, 'attempt.started', jsonb_build_object('attempt', $2::int) FROM runs
WHERE run_id = $1 AND NOT EXISTS (
    SELECT 1 FROM spine_events WHERE run_id = $1 AND event_type = 'attempt.started'
    AND payload->'attempt' = to_jsonb($2::int))
"""
_ATTEMPT_ENDED = """
INSERT INTO spine_events (run_id, connector, event_type, payload)
SELECT run_id, connector, 'attempt.ended', jsonb_strip_nulls(jsonb_build_object(
    'attempt', f->'attempt', 'exit_code', f->'exit_code', 'done_status', f->'done_status',
    'runtime_error', f->'runtime_error', 'cancelled', f->'cancelled',
    'records_durable', f->'records_durable'))
FROM runs, (SELECT $2::jsonb AS f) facts
WHERE run_id = $1 AND NOT EXISTS (
    SELECT 1 FROM spine_events WHERE run_id = $1 AND event_type = 'attempt.ended'
    AND payload->'attempt' = f->'attempt')
"""


class RunRow(BaseModel):
    """A `runs` row: the outcome once there is one, the live counts before."""

    run_id: str
    connector: str
    trigger: Trigger
    mode: Mode
    status: RunStatus | LiveStatus
    needs_retry: bool
    reason: str | None
    attempt: int
    records_emitted: int
    records_durable: int
    outcome: RunOutcome | None
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, r: Any) -> RunRow:
        row = dict(r)
        if row["outcome"] is not None:
            row["outcome"] = RunOutcome.model_validate_json(row["outcome"])
        return cls.model_validate(row)


class Diagnostics(BaseModel):
    """What the connector itself said of a run going wrong (never in Temporal history)."""

    connector_error: str | None = None
    stderr_tail: list[str] = []


class SpineEvent(BaseModel):
    event_type: str
    payload: dict[str, Any]


class QuarantinedLine(BaseModel):
    attempt: int
    line_no: int
    kind: str
    detail: str
    line_bytes: int
    excerpt: str


class RunStore:
    """The `runs`, `spine_events` and `quarantine` tables."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def start(self, run_id: str, connector: str, trigger: Trigger, mode: Mode) -> None:
        """Open the run's row and its `run.started` event (once: a retried prepare is a no-op)."""
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO runs (run_id, connector, trigger, mode, status) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id) DO NOTHING RETURNING 1",
                run_id,
                connector,
                trigger.value,
                mode.value,
                LiveStatus.RUNNING.value,
            )
            if inserted:
                payload = orjson.dumps({"trigger": trigger.value, "mode": mode.value}).decode()
                await conn.execute(INSERT_SPINE, run_id, connector, "run.started", payload)

    async def finished(self, run_id: str) -> bool:
        """Whether `run_id` already has its outcome (a run id is never run twice)."""
        return bool(
            await self.pool.fetchval("SELECT finished_at IS NOT NULL FROM runs WHERE run_id = $1", run_id)
        )

    async def begin_attempt(self, run_id: str, attempt: int) -> None:
        """Mark `attempt` as the run's current collect attempt: from now on an older attempt
        still running (its heartbeat timed out, it did not die) can no longer flush. The spine
        tells it once (`attempt.started`)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE runs SET attempt = greatest(attempt, $2) WHERE run_id = $1", run_id, attempt
            )
            await conn.execute(_ATTEMPT_STARTED, run_id, attempt)

    async def save_facts(self, run_id: str, facts_json: str, said: Diagnostics) -> None:
        """Keep what a collect attempt observed, for a workflow whose collect did not return,
        with what the connector said (its DONE.error.message, the tail of its stderr)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE runs SET facts = $2::jsonb, "
                "records_durable = ($2::jsonb->>'records_durable')::bigint, "
                "connector_error = $3, stderr_tail = $4 WHERE run_id = $1",
                run_id,
                facts_json,
                said.connector_error,
                "\n".join(said.stderr_tail) or None,
            )
            await conn.execute(_ATTEMPT_ENDED, run_id, facts_json)

    async def diagnostics(self, run_id: str) -> Diagnostics:
        row = await self.pool.fetchrow(
            "SELECT connector_error, stderr_tail FROM runs WHERE run_id = $1", run_id
        )
        if row is None:
            return Diagnostics()
        tail = row["stderr_tail"].split("\n") if row["stderr_tail"] else []
        return Diagnostics(connector_error=row["connector_error"], stderr_tail=tail)

    async def load_facts(self, run_id: str) -> tuple[str | None, int, int]:
        """(saved facts JSON or None, records emitted and durable as of the last flush)."""
        row = await self.pool.fetchrow(
            "SELECT facts::text AS facts, records_emitted, records_durable FROM runs WHERE run_id = $1",
            run_id,
        )
        if row is None:
            return None, 0, 0
        return row["facts"], int(row["records_emitted"]), int(row["records_durable"])

    async def finish(self, outcome: RunOutcome, events: list[tuple[str, dict[str, Any]]]) -> bool:
        """Write the outcome, `events` and the terminal spine event, once; False if they were
        already written (a retried activity). A run cancelled before it was prepared gets its
        row here."""
        payload = outcome.model_dump_json()
        async with self.pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchval(
                """
                INSERT INTO runs AS r (run_id, connector, trigger, mode, status, needs_retry, reason,
                                       records_emitted, records_durable, outcome, started_at, finished_at)
                VALUES ($1, $9, $10, $11, $2, $3, $4, $5, $6, $7::jsonb, $12, $8)
                ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status,
                       needs_retry = EXCLUDED.needs_retry, reason = EXCLUDED.reason,
                       records_emitted = EXCLUDED.records_emitted, records_durable = EXCLUDED.records_durable,
                       outcome = EXCLUDED.outcome, finished_at = EXCLUDED.finished_at
                WHERE r.finished_at IS NULL RETURNING 1
                """,
                outcome.run_id,
                outcome.status.value,
                outcome.needs_retry,
                outcome.reason,
                outcome.records_emitted,
                outcome.records_durable,
                payload,
                outcome.finished_at,
                outcome.connector,
                outcome.trigger.value,
                outcome.mode.value,
                outcome.started_at,
            )
            if updated:
                rows = [(t, orjson.dumps(p).decode()) for t, p in events]
                rows.append((TERMINAL_EVENTS[outcome.status], payload))
                await conn.executemany(
                    INSERT_SPINE, [(outcome.run_id, outcome.connector, t, p) for t, p in rows]
                )
            return bool(updated)

    async def note_cancel_too_late(self, run_id: str) -> bool:
        """Mark a finished run's stored outcome `cancel_too_late` (a cancel came while it was being
        written), with a `cancel_too_late` spine event (the spine is append-only); once: False if
        it already was."""
        async with self.pool.acquire() as conn, conn.transaction():
            connector = await conn.fetchval(
                "UPDATE runs SET outcome = jsonb_set(outcome, '{cancel_too_late}', 'true') "
                "WHERE run_id = $1 AND finished_at IS NOT NULL "
                "AND NOT coalesce((outcome->>'cancel_too_late')::boolean, false) RETURNING connector",
                run_id,
            )
            if connector is not None:
                payload = '{"cancel_too_late": true}'
                await conn.execute(INSERT_SPINE, run_id, connector, "cancel_too_late", payload)
            return connector is not None

    async def get(self, run_id: str) -> RunRow | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM runs WHERE run_id = $1", run_id)
        return RunRow.of(row) if row else None

    async def holds(self, connector: str) -> bool:
        """Whether the store holds anything of `connector` (a run, or records)."""
        return bool(await self.pool.fetchval(_HOLDS, connector))

    async def connectors(self) -> list[str]:
        """Every connector the store holds runs or records of, registered or not."""
        return [r["connector"] for r in await self.pool.fetch(_CONNECTORS)]

    async def recent(self, connector: str | None = None, limit: int = 50) -> list[RunRow]:
        """Runs, newest first."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM runs WHERE ($1::text IS NULL OR connector = $1) "
            "ORDER BY started_at DESC LIMIT $2",
            connector,
            limit,
        )
        return [RunRow.of(r) for r in rows]

    async def recovery_outcomes(self, connector: str) -> list[RunOutcome]:
        """The outcomes of the connector's finished recovery runs, oldest first."""
        rows = await self.pool.fetch(
            "SELECT outcome::text AS outcome FROM runs WHERE connector = $1 AND mode = $2 "
            "AND outcome IS NOT NULL ORDER BY started_at",
            connector,
            Mode.RECOVERY.value,
        )
        return [RunOutcome.model_validate_json(r["outcome"]) for r in rows]

    async def spine_events(self, run_id: str) -> list[SpineEvent]:
        rows = await self.pool.fetch(
            "SELECT event_type, payload::text AS payload FROM spine_events WHERE run_id = $1 ORDER BY id",
            run_id,
        )
        return [SpineEvent(event_type=r["event_type"], payload=orjson.loads(r["payload"])) for r in rows]

    async def quarantined(self, run_id: str) -> list[QuarantinedLine]:
        rows = await self.pool.fetch(
            "SELECT attempt, line_no, kind, detail, line_bytes, excerpt FROM quarantine "
            "WHERE run_id = $1 ORDER BY attempt, line_no",
            run_id,
        )
        return [QuarantinedLine.model_validate(dict(r)) for r in rows]

    async def ids(self, prefix: str, limit: int) -> list[tuple[str, str]]:
        """Run ids starting with `prefix`, newest first, each with a few words about its run
        (shell completion)."""
        rows = await self.pool.fetch(
            "SELECT run_id, connector || ' · ' || status || ' · ' "
            "|| to_char(started_at, 'YYYY-MM-DD HH24:MI') AS about "
            "FROM runs WHERE starts_with(run_id, $1) ORDER BY started_at DESC LIMIT $2",
            prefix,
            limit,
        )
        return [(r["run_id"], r["about"]) for r in rows]

    async def continuations(self, run_id: str) -> list[Continuation]:
        """Each stream's latest continuation in the run's latest attempt that reported one (the
        reference's rule: a stream's last SKIP_RESULT is the authoritative one)."""
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (stream) stream, reason, fact::text AS fact FROM continuations "
            "WHERE run_id = $1 ORDER BY stream, attempt DESC, line_no DESC",
            run_id,
        )
        return [
            Continuation.model_validate(
                {**orjson.loads(r["fact"]), "stream": r["stream"], "reason": r["reason"]}
            )
            for r in rows
        ]
