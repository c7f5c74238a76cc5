"""One forward run per connector at a time: a lock row per connector, taken over once its
holder's run has an outcome (or, as the caller judges, its workflow is gone)."""

from __future__ import annotations

import asyncpg


class LockStore:
    """The `connector_locks` table."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def claim(self, connector: str, run_id: str) -> str | None:
        """Take the connector's run lock for `run_id`, or return the run holding it. A holder
        whose run has its outcome is replaced; whether a holder without one is still alive is
        the caller's to judge (and `release` it if not)."""
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

    async def release(self, connector: str, run_id: str) -> None:
        """Give the lock up if `run_id` holds it (a dead holder is released by whoever saw it)."""
        await self.pool.execute(
            "DELETE FROM connector_locks WHERE connector = $1 AND run_id = $2", connector, run_id
        )
