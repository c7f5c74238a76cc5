"""The owner's right to erase (DESIGN §14): a connector's, a stream's or a key's personal data
removed from every place it can sit, in one transaction.

What a scope names exactly goes: its records (tombstones too), its gaps (with their subjects,
locators and errors) and, with `state`, its committed cursors and its runs' resume points. What
a connector said cannot be told apart by stream or key — its stderr (each attempt's lines, which
`logs` shows, and the tail in `runs`) and errors (also where an outcome quotes them), the lines
we quarantined, its prompts and notices and the owner's answers — so any erase of a connector
empties all of it. What remains are counts, our own ids,
stream names and the connector's skip reasons in outcomes and spine events (`Remains`)."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel

from pdpp_orch.store.common import affected

ERASED = "(erased)"
# The outcome error kinds whose message ends with the connector's own words
# (outcome.in_connector_words): once erased, the message says so instead.
_CONNECTOR_KINDS = [
    "connector_reported_failed",
    "connector_exit_without_done",
    "connector_stalled",
    "connector_output_closed",
]
# ($1 connector, $2 stream or NULL, $3 key or NULL)
_SCOPED = {
    "records": "DELETE FROM records WHERE connector = $1 AND ($2::text IS NULL OR stream = $2) "
    "AND ($3::text IS NULL OR key = $3)",
    "gaps": "DELETE FROM gaps WHERE connector = $1 AND ($2::text IS NULL OR stream = $2) "
    "AND ($3::text IS NULL OR (kind = 'item' AND subject = $3))",
}
# ($1 connector, $2 stream or NULL)
_STATE = {
    "stream_state": "DELETE FROM stream_state WHERE connector = $1 AND ($2::text IS NULL OR stream = $2)",
    "run_checkpoints": "DELETE FROM run_checkpoints c USING runs r WHERE c.run_id = r.run_id "
    "AND r.connector = $1 AND ($2::text IS NULL OR c.stream = $2)",
    # A backfill's boundary and slice are cursor-like: the next run continues from its STATE.
    "continuations": "DELETE FROM continuations WHERE connector = $1 AND ($2::text IS NULL OR stream = $2)",
}
# ($1 connector)
_SAID = {
    "quarantine": f"UPDATE quarantine q SET excerpt = '', detail = '{ERASED}' FROM runs r "
    f"WHERE q.run_id = r.run_id AND r.connector = $1 AND q.detail <> '{ERASED}'",
    "interactions": "UPDATE interactions SET message = NULL, response = NULL "
    "WHERE connector = $1 AND (message IS NOT NULL OR response IS NOT NULL)",
    "assistance": "UPDATE assistance SET message = '', status_message = NULL, detail = NULL "
    "WHERE connector = $1 AND (message <> '' OR status_message IS NOT NULL OR detail IS NOT NULL)",
    # Every attempt's stderr as `pdpp-orch logs` shows it, not only the tail in `runs`.
    "connector_stderr": "DELETE FROM connector_stderr e USING runs r "
    "WHERE e.run_id = r.run_id AND r.connector = $1",
    "continuations": "UPDATE continuations SET message = NULL WHERE connector = $1 AND message IS NOT NULL",
}
# ($1 connector, $2 the kinds, $3 ERASED): where a run kept the connector's words, the error
# message of its outcome that quotes them — in the spine's copy first, then in `runs`.
_SAID_BY_RUN = "r.connector = $1 AND (r.stderr_tail IS NOT NULL OR r.connector_error IS NOT NULL)"
_QUOTED = {
    "spine_events": "UPDATE spine_events s SET payload = jsonb_set(s.payload, '{error,message}', "
    f"to_jsonb($3::text)) FROM runs r WHERE s.run_id = r.run_id AND {_SAID_BY_RUN} "
    "AND s.event_type LIKE 'run.%' AND s.payload->'error'->>'kind' = ANY($2::text[])",
    "runs": "UPDATE runs r SET stderr_tail = NULL, connector_error = NULL, "
    "outcome = CASE WHEN r.outcome->'error'->>'kind' = ANY($2::text[]) "
    "THEN jsonb_set(r.outcome, '{error,message}', to_jsonb($3::text)) ELSE r.outcome END "
    f"WHERE {_SAID_BY_RUN}",
}


class Scope(BaseModel):
    """What to erase: a connector, one of its streams, or one key (of one stream, or of all)."""

    connector: str
    stream: str | None = None
    key: str | None = None
    state: bool = False


class Remains(BaseModel):
    """What an erase leaves of a connector: its runs' outcomes and spine events (counts, our
    ids, stream names, skip reasons)."""

    runs: int
    run_ids: list[str]
    spine_events: int


class Busy(Exception):
    """A run of the connector holds its lock: erasing now would race its writes."""

    def __init__(self, run_id: str):
        super().__init__(run_id)
        self.run_id = run_id


class ErasureStore:
    """Erase a scope's personal data; say what remains."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def erase(self, scope: Scope, stale: frozenset[str] = frozenset()) -> dict[str, int]:
        """Erase, in one transaction, unless a run without an outcome holds the connector's
        lock (Busy) — one of `stale` aside (its workflow is gone); the rows erased per table.
        No run can take the lock meanwhile: its claim waits for this transaction to end."""
        c = scope.connector
        erased: dict[str, int] = {}
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE connector_locks IN SHARE ROW EXCLUSIVE MODE")
            holder = await conn.fetchval(
                "SELECT l.run_id FROM connector_locks l LEFT JOIN runs r ON r.run_id = l.run_id "
                "WHERE l.connector = $1 AND r.finished_at IS NULL",
                c,
            )
            if holder is not None and holder not in stale:
                raise Busy(str(holder))
            for table, sql in _SCOPED.items():
                erased[table] = affected(await conn.execute(sql, c, scope.stream, scope.key))
            for table, sql in (_STATE if scope.state else {}).items():
                erased[table] = affected(await conn.execute(sql, c, scope.stream))
            for table, sql in _SAID.items():
                erased[table] = erased.get(table, 0) + affected(await conn.execute(sql, c))
            for table, sql in _QUOTED.items():
                erased[table] = affected(await conn.execute(sql, c, _CONNECTOR_KINDS, ERASED))
        return erased

    async def lock_holder(self, connector: str) -> str | None:
        """The run holding the connector's lock without an outcome yet, if any."""
        holder = await self.pool.fetchval(
            "SELECT l.run_id FROM connector_locks l LEFT JOIN runs r ON r.run_id = l.run_id "
            "WHERE l.connector = $1 AND r.finished_at IS NULL",
            connector,
        )
        return str(holder) if holder is not None else None

    async def remains(self, connector: str, limit: int = 10) -> Remains:
        """The connector's runs, newest first, and its spine events."""
        runs = await self.pool.fetch(
            "SELECT run_id FROM runs WHERE connector = $1 ORDER BY started_at DESC", connector
        )
        events = await self.pool.fetchval("SELECT count(*) FROM spine_events WHERE connector = $1", connector)
        return Remains(runs=len(runs), run_ids=[r["run_id"] for r in runs[:limit]], spine_events=int(events))
