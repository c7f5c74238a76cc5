"""Checkpoints: each stream's committed cursor, and each run's proven resume points."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from pdpp_orch import policy
from pdpp_orch.models import CheckpointFact, StreamCommit
from pdpp_orch.store.common import affected

# The run's proven checkpoint as the stream's cursor; with $4, not over one another run
# committed after this run started (its own, committed by a retried commit, it may write again).
_COMMIT = """
INSERT INTO stream_state AS s (connector, stream, cursor, cursor_bytes, run_id)
SELECT $1, stream, cursor, cursor_bytes, run_id FROM run_checkpoints
WHERE run_id = $2 AND stream = $3
ON CONFLICT (connector, stream) DO UPDATE SET cursor = EXCLUDED.cursor,
    cursor_bytes = EXCLUDED.cursor_bytes, run_id = EXCLUDED.run_id, committed_at = now()
WHERE NOT $4 OR s.run_id = $2
   OR s.committed_at < (SELECT started_at FROM runs WHERE run_id = $2)
"""

# A commit on the run's spine (`pdpp-orch logs`), once per stream even if the activity retries.
_COMMITTED = """
INSERT INTO spine_events (run_id, connector, event_type, payload)
SELECT $2, $1, 'checkpoint.committed', jsonb_build_object('stream', $3::text, 'bytes', $4::bigint)
WHERE NOT EXISTS (SELECT 1 FROM spine_events WHERE run_id = $2 AND event_type = 'checkpoint.committed'
                  AND payload->>'stream' = $3)
"""


class StateStore:
    """The `stream_state` and `run_checkpoints` tables."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

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

    async def resume_points(self, run_id: str) -> dict[str, Any]:
        """Per stream, the counters snapshotted with this run's latest proven checkpoint."""
        rows = await self.pool.fetch(
            "SELECT stream, facts::text AS facts FROM run_checkpoints WHERE run_id = $1 ORDER BY seq",
            run_id,
        )
        return {r["stream"]: orjson.loads(r["facts"]) for r in rows}

    async def committed_sizes(self, connector: str) -> dict[str, int]:
        """Bytes of each stream's committed cursor."""
        rows = await self.pool.fetch(
            "SELECT stream, cursor_bytes FROM stream_state WHERE connector = $1", connector
        )
        return {r["stream"]: int(r["cursor_bytes"]) for r in rows}

    async def commit(
        self,
        connector: str,
        run_id: str,
        fact: CheckpointFact,
        max_state_bytes: int,
        *,
        since_start: bool = False,
    ) -> StreamCommit:
        """Commit a stream's proven checkpoint of `run_id`, in its own transaction. With
        `since_start` (a recovery run, which holds no connector lock) only over the cursor that
        was committed when the run started: one another run committed since is newer than a walk
        from the older one, and stays (`superseded`)."""
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
            if not affected(await conn.execute(_COMMIT, connector, run_id, fact.stream, since_start)):
                return StreamCommit(
                    stream=fact.stream, committed=False, withheld=True, bytes=size, reason=policy.SUPERSEDED
                )
            await conn.execute(_COMMITTED, connector, run_id, fact.stream, size)
            return StreamCommit(stream=fact.stream, committed=True, bytes=size)
