"""The gap ledger: what runs could not collect, one row per miss, found again or settled.

Hints (hints.py) and leases (leases.py) are views of the same table for recoveries."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from pdpp_orch.models import GapKind, GapStatus, RecoveryClass
from pdpp_orch.store.common import OPEN, RETRYABLE, SETTLED, affected

_PENDING = GapStatus.PENDING.value
_LEASED = GapStatus.LEASED.value
_RECOVERED = GapStatus.RECOVERED.value


@dataclass
class NewGap:
    """One miss a run found, for the ledger; its identity is (connector, stream, kind, subject),
    so the same miss found again is the same gap whatever its volatile locator."""

    stream: str
    kind: GapKind
    subject: str
    reason: str
    recovery_class: RecoveryClass
    locator: str | None = None
    not_before: datetime | None = None
    last_error: str | None = None
    parent_stream: str | None = None
    records_estimate: int | None = None

    def gap_id(self, connector: str) -> str:
        h = hashlib.sha256("\x1f".join((connector, self.stream, self.kind.value, self.subject)).encode())
        return "gap_" + h.hexdigest()[:24]


class Gap(BaseModel):
    """A row of the ledger as `pdpp-orch gaps` shows it."""

    gap_id: str
    connector: str
    stream: str
    kind: GapKind
    subject: str
    reason: str
    recovery_class: RecoveryClass
    status: GapStatus
    attempts: int
    not_before: datetime | None
    found_run_id: str
    recovered_run_id: str | None
    hint_id: str | None
    terminal_reason: str | None


_UPSERT = f"""
INSERT INTO gaps AS g (gap_id, connector, stream, kind, subject, reason, recovery_class,
                       locator, not_before, last_error, found_run_id, last_seen_run_id, parent_stream,
                       records_estimate)
SELECT u.gap_id, $1, u.stream, u.kind, u.subject, u.reason, u.recovery_class,
       u.locator::jsonb, u.not_before, u.last_error, $2, $2, u.parent_stream, u.records_estimate
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
            $10::timestamptz[], $11::text[], $12::text[], $13::bigint[])
     AS u(gap_id, stream, kind, subject, reason, recovery_class, locator, not_before, last_error,
          parent_stream, records_estimate)
ON CONFLICT (gap_id) DO UPDATE SET
    reason = EXCLUDED.reason,
    recovery_class = EXCLUDED.recovery_class,
    locator = COALESCE(EXCLUDED.locator, g.locator),
    parent_stream = COALESCE(EXCLUDED.parent_stream, g.parent_stream),
    records_estimate = EXCLUDED.records_estimate,
    not_before = EXCLUDED.not_before,
    last_error = EXCLUDED.last_error,
    last_seen_run_id = EXCLUDED.last_seen_run_id,
    -- A settled miss found again is open again, with a clean slate and no hint yet.
    status = CASE WHEN g.status IN ({SETTLED}) THEN '{_PENDING}' ELSE g.status END,
    attempts = CASE WHEN g.status IN ({SETTLED}) THEN 0 ELSE g.attempts END,
    hint_id = CASE WHEN g.status IN ({SETTLED}) THEN NULL ELSE g.hint_id END,
    terminal_reason = NULL,
    updated_at = now()
"""

_MARK_RECOVERED = f"""
UPDATE gaps SET status = '{_RECOVERED}', recovered_run_id = $2, attempts = attempts + 1,
    last_attempt_at = now(), lease_id = NULL, updated_at = now()
WHERE connector = $1 AND gap_id = ANY($3::text[]) AND status <> '{_RECOVERED}'
"""


_CLOSE_CHECKPOINTS = f"""
UPDATE gaps SET status = '{_RECOVERED}', recovered_run_id = $2, updated_at = now(), lease_id = NULL,
    attempts = attempts + CASE WHEN status = '{_LEASED}' THEN 1 ELSE 0 END,
    last_attempt_at = CASE WHEN status = '{_LEASED}' THEN now() ELSE last_attempt_at END
WHERE connector = $1 AND stream = ANY($3::text[]) AND status IN ({OPEN})
  AND (kind = '{GapKind.CHECKPOINT.value}'
       -- a stream skipped whole by an earlier run, collected and committed by this one
       OR (kind = '{GapKind.STREAM.value}' AND last_seen_run_id <> $2))
"""


async def upsert(conn: Any, connector: str, run_id: str, gaps: list[NewGap]) -> None:
    """Record `gaps` as found (again) by `run_id`, in the caller's transaction."""
    unique = {g.gap_id(connector): g for g in gaps}
    rows = list(unique.items())
    await conn.execute(
        _UPSERT,
        connector,
        run_id,
        [gid for gid, _ in rows],
        [g.stream for _, g in rows],
        [g.kind.value for _, g in rows],
        [g.subject for _, g in rows],
        [g.reason for _, g in rows],
        [g.recovery_class.value for _, g in rows],
        [g.locator for _, g in rows],
        [g.not_before for _, g in rows],
        [g.last_error for _, g in rows],
        [g.parent_stream for _, g in rows],
        [g.records_estimate for _, g in rows],
    )


async def mark_recovered(conn: Any, connector: str, run_id: str, gap_ids: list[str]) -> int:
    """Close gaps a recovery run said it recovered, in the caller's transaction."""
    return affected(await conn.execute(_MARK_RECOVERED, connector, run_id, gap_ids))


class GapStore:
    """The `gaps` table."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def open(self, connector: str, run_id: str, gap: NewGap) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await upsert(conn, connector, run_id, [gap])

    async def find(self, connector: str | None = None, status: GapStatus | None = None) -> list[Gap]:
        rows = await self.pool.fetch(
            "SELECT gap_id, connector, stream, kind, subject, reason, recovery_class, status, attempts, "
            "not_before, found_run_id, recovered_run_id, hint_id, terminal_reason FROM gaps "
            "WHERE ($1::text IS NULL OR connector = $1) AND ($2::text IS NULL OR status = $2) "
            "ORDER BY created_at, gap_id",
            connector,
            status.value if status else None,
        )
        return [Gap.model_validate(dict(r)) for r in rows]

    async def open_by_stream(self, connector: str) -> dict[str, int]:
        rows = await self.pool.fetch(
            f"SELECT stream, count(*) AS n FROM gaps WHERE connector = $1 AND status IN ({OPEN}) "
            "GROUP BY stream",
            connector,
        )
        return {r["stream"]: int(r["n"]) for r in rows}

    async def open_by_class(self, connector: str) -> dict[RecoveryClass, int]:
        """Open gaps per recovery class (every class the connector ever had, zeros included)."""
        rows = await self.pool.fetch(
            f"SELECT recovery_class, count(*) FILTER (WHERE status IN ({OPEN})) AS n "
            "FROM gaps WHERE connector = $1 GROUP BY recovery_class",
            connector,
        )
        return {RecoveryClass(r["recovery_class"]): int(r["n"]) for r in rows}

    async def open_item_subjects(
        self, connector: str, streams: list[str], limit: int
    ) -> dict[str, list[str]]:
        """Per stream, the resources that open, runtime-retryable gaps stand for."""
        rows = await self.pool.fetch(
            "SELECT stream, subject FROM gaps WHERE connector = $1 AND stream = ANY($2::text[]) "
            f"AND kind = '{GapKind.ITEM.value}' AND status IN ({OPEN}) AND recovery_class = ANY($3::text[]) "
            "ORDER BY stream, subject LIMIT $4",
            connector,
            streams,
            RETRYABLE,
            limit,
        )
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["stream"], []).append(r["subject"])
        return out

    async def found(
        self, connector: str, run_id: str, kinds: list[GapKind]
    ) -> list[tuple[str, str, GapKind, str]]:
        """(gap_id, stream, kind, subject) of the open gaps of these kinds `run_id` found (again)."""
        rows = await self.pool.fetch(
            "SELECT gap_id, stream, kind, subject FROM gaps WHERE connector = $1 AND last_seen_run_id = $2 "
            f"AND kind = ANY($3::text[]) AND status IN ({OPEN}) ORDER BY gap_id",
            connector,
            run_id,
            [k.value for k in kinds],
        )
        return [(r["gap_id"], r["stream"], GapKind(r["kind"]), r["subject"]) for r in rows]

    async def set_estimates(self, connector: str, estimates: dict[str, int | None]) -> None:
        """Store how many records each gap stands for (pdpp_orch.present.estimate)."""
        await self.pool.execute(
            "UPDATE gaps g SET records_estimate = u.n FROM unnest($2::text[], $3::bigint[]) AS u(gap_id, n) "
            "WHERE g.connector = $1 AND g.gap_id = u.gap_id",
            connector,
            list(estimates),
            list(estimates.values()),
        )

    async def supersede_runs(self, connector: str, run_id: str) -> int:
        """Close the open whole-run gaps of earlier runs: forward run `run_id` collected cleanly
        from the committed checkpoints, which is what their recovery would have done."""
        return affected(
            await self.pool.execute(
                f"UPDATE gaps SET status = '{_RECOVERED}', recovered_run_id = $2, lease_id = NULL, "
                f"updated_at = now() WHERE connector = $1 AND kind = '{GapKind.RUN.value}' "
                f"AND status IN ({OPEN}) AND last_seen_run_id <> $2",
                connector,
                run_id,
            )
        )

    async def settle_checkpoints(
        self, connector: str, run_id: str, opened: list[NewGap], committed_streams: list[str]
    ) -> int:
        """Open a gap for each stream whose latest checkpoint did not commit and close those of
        streams whose latest did, with the gaps of streams an earlier run skipped whole (one
        leased to the recovery run that committed it counts that attempt); returns how many
        were closed."""
        async with self.pool.acquire() as conn, conn.transaction():
            if opened:
                await upsert(conn, connector, run_id, opened)
            return affected(await conn.execute(_CLOSE_CHECKPOINTS, connector, run_id, committed_streams))
