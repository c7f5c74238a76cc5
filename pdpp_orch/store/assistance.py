"""Owner assistance: a connector's non-blocking notices (ASSISTANCE), open until it says how
they ended (ASSISTANCE_STATUS) or its run does. The message stays here, never in Temporal."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel

OPEN = "open"


class Assistance(BaseModel):
    """A notice as `runs` and `report` show it."""

    run_id: str
    assistance_id: str
    connector: str
    message: str
    owner_action: str
    progress_posture: str
    sensitivity: str
    stream: str | None
    status: str
    expires_at: datetime | None
    created_at: datetime


class AssistanceStore:
    """The `assistance` table."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def open(
        self,
        run_id: str,
        connector: str,
        attempt: int,
        assistance_id: str,
        fields: dict[str, str | None],
        detail_json: str | None,
        expires_at: datetime | None,
    ) -> None:
        """Record an open notice (the same id from a retried attempt starts over)."""
        await self.pool.execute(
            f"""
            INSERT INTO assistance (run_id, assistance_id, connector, attempt, message, owner_action,
                                    progress_posture, sensitivity, stream, detail, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)
            ON CONFLICT (run_id, assistance_id) DO UPDATE SET attempt = EXCLUDED.attempt,
                message = EXCLUDED.message, owner_action = EXCLUDED.owner_action,
                progress_posture = EXCLUDED.progress_posture, sensitivity = EXCLUDED.sensitivity,
                stream = EXCLUDED.stream, detail = EXCLUDED.detail, expires_at = EXCLUDED.expires_at,
                status = '{OPEN}', status_message = NULL, created_at = now(), closed_at = NULL
            """,
            run_id,
            assistance_id,
            connector,
            attempt,
            fields["message"],
            fields["owner_action"],
            fields["progress_posture"],
            fields.get("sensitivity") or "none",
            fields.get("stream"),
            detail_json,
            expires_at,
        )

    async def close(self, run_id: str, assistance_id: str, status: str, message: str | None) -> None:
        """The connector said how the notice ended."""
        await self.pool.execute(
            "UPDATE assistance SET status = $3, status_message = $4, closed_at = now() "
            f"WHERE run_id = $1 AND assistance_id = $2 AND status = '{OPEN}'",
            run_id,
            assistance_id,
            status,
            message,
        )

    async def close_run(self, run_id: str, status: str) -> int:
        """Close what is still open when the run (or an attempt of it) ends: `status`, or
        `expired` for a notice whose own timeout passed first."""
        result: str = await self.pool.execute(
            "UPDATE assistance SET closed_at = now(), "
            "status = CASE WHEN expires_at < now() THEN 'expired' ELSE $2 END "
            f"WHERE run_id = $1 AND status = '{OPEN}'",
            run_id,
            status,
        )
        return int(result.split()[-1])

    async def find(self, run_id: str | None = None, connector: str | None = None) -> list[Assistance]:
        """Open notices whose timeout has not passed, oldest first."""
        rows = await self.pool.fetch(
            "SELECT run_id, assistance_id, connector, message, owner_action, progress_posture, "
            "sensitivity, stream, status, expires_at, created_at FROM assistance "
            f"WHERE status = '{OPEN}' AND (expires_at IS NULL OR expires_at > now()) "
            "AND ($1::text IS NULL OR run_id = $1) AND ($2::text IS NULL OR connector = $2) "
            "ORDER BY created_at",
            run_id,
            connector,
        )
        return [Assistance.model_validate(dict(r)) for r in rows]
