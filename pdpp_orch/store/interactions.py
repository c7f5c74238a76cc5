"""Interactions: a connector waiting on its owner. The prompt stays here; the owner's answer is
left here by `pdpp-orch respond`, read once by the run and erased (it never enters Temporal)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel

from pdpp_orch.models import InteractionStatus, LiveStatus

_PENDING = InteractionStatus.PENDING.value
# Answers nobody picked up are erased after their TTL, whatever happens to the run.
_PURGE_RESPONSES = (
    "UPDATE interactions SET response = NULL, response_status = NULL, response_expires_at = NULL "
    "WHERE response_expires_at < now()"
)


class Interaction(BaseModel):
    """An interaction with its prompt (never its answer)."""

    run_id: str
    request_id: str
    connector: str
    kind: str
    message: str | None
    status: InteractionStatus
    expires_at: datetime
    created_at: datetime
    closed_at: datetime | None


class InteractionStore:
    """The `interactions` table."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def open(
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
                f"""
                INSERT INTO interactions (run_id, request_id, connector, kind, message, expires_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (run_id, request_id) DO UPDATE SET kind = EXCLUDED.kind,
                    message = EXCLUDED.message, expires_at = EXCLUDED.expires_at, status = '{_PENDING}',
                    response = NULL, response_status = NULL, response_expires_at = NULL, closed_at = NULL
                """,
                run_id,
                request_id,
                connector,
                kind,
                message,
                expires_at,
            )
            await conn.execute(
                "UPDATE runs SET status = $2 WHERE run_id = $1", run_id, LiveStatus.WAITING_ON_OWNER.value
            )

    async def answer(
        self,
        run_id: str,
        request_id: str,
        status: InteractionStatus,
        data_json: str | None,
        ttl_seconds: float,
    ) -> bool:
        """Leave the owner's answer for the run to pick up; False if it no longer waits."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_PURGE_RESPONSES)
            return bool(
                await conn.fetchval(
                    "UPDATE interactions SET response = $3::jsonb, response_status = $4, "
                    "response_expires_at = now() + make_interval(secs => $5) "
                    f"WHERE run_id = $1 AND request_id = $2 AND status = '{_PENDING}' RETURNING 1",
                    run_id,
                    request_id,
                    data_json,
                    status.value,
                    ttl_seconds,
                )
            )

    async def take_response(
        self, run_id: str, request_id: str
    ) -> tuple[InteractionStatus, str | None] | None:
        """The owner's answer (status, data JSON), once: reading it erases it."""
        row = await self.pool.fetchrow(
            f"""
            WITH old AS (
                SELECT response::text AS response, response_status FROM interactions
                WHERE run_id = $1 AND request_id = $2 AND status = '{_PENDING}'
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
        return (InteractionStatus(row["response_status"]), row["response"]) if row else None

    async def close(self, run_id: str, request_id: str, status: InteractionStatus) -> None:
        """The connector got its answer (or the wait ended): erase any response data."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE interactions SET status = $3, closed_at = now(), response = NULL, "
                "response_expires_at = NULL WHERE run_id = $1 AND request_id = $2",
                run_id,
                request_id,
                status.value,
            )
            await conn.execute(
                "UPDATE runs SET status = $2 WHERE run_id = $1 AND status = $3 "
                f"AND NOT EXISTS (SELECT 1 FROM interactions WHERE run_id = $1 AND status = '{_PENDING}')",
                run_id,
                LiveStatus.RUNNING.value,
                LiveStatus.WAITING_ON_OWNER.value,
            )

    async def find(self, run_id: str | None = None, *, pending_only: bool = True) -> list[Interaction]:
        """Interactions (prompt included, never the answer), newest first."""
        rows = await self.pool.fetch(
            "SELECT run_id, request_id, connector, kind, message, status, expires_at, created_at, closed_at "
            "FROM interactions WHERE ($1::text IS NULL OR run_id = $1) "
            f"AND (NOT $2 OR status = '{_PENDING}') ORDER BY created_at DESC",
            run_id,
            pending_only,
        )
        return [Interaction.model_validate(dict(r)) for r in rows]
