"""Leases: a recovery run is served a batch of a hint's gaps, and the batch is settled after it
by pdpp_orch.policy's rules."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel

from pdpp_orch import policy
from pdpp_orch.models import GapKind, GapStatus, HintProgress, RecoveryClass
from pdpp_orch.store.common import OPEN, affected

_PENDING = GapStatus.PENDING.value
_LEASED = GapStatus.LEASED.value
_RECOVERED = GapStatus.RECOVERED.value


class ServedGap(BaseModel):
    """A gap as a recovery run is served it (an entry of START.detail_gaps or of a page)."""

    gap_id: str
    lease_id: str
    stream: str
    record_key: str
    detail_locator: Any = None
    parent_stream: str | None = None

    def start_entry(self) -> dict[str, Any]:
        """The entry as the reference serves it: `parent_stream` only when the gap has one."""
        return {
            **self.model_dump(exclude={"parent_stream"}),
            **({"parent_stream": self.parent_stream} if self.parent_stream is not None else {}),
            "status": _PENDING,
            "reference_only": True,
        }


# A hint's gaps that can be leased now; a lease holds gaps of one shape of work: those a forward
# walk of the stream recovers (policy.WALKED_KINDS, first: a walk may find the items again), or
# the items a run is served. Never both: a walk served `resources` would be no walk.
_LEASABLE = f"""
connector = $1 AND hint_id = $2 AND attempts < $5
AND (status = '{_PENDING}' OR (status = '{_LEASED}' AND leased_until < now()))
"""
_LEASE = f"""
UPDATE gaps SET status = '{_LEASED}', lease_id = $3,
       leased_until = now() + make_interval(secs => $6), updated_at = now()
WHERE gap_id IN (
    SELECT gap_id FROM gaps
    WHERE {_LEASABLE}
      AND (kind = ANY($7::text[])) = EXISTS (SELECT 1 FROM gaps WHERE {_LEASABLE} AND kind = ANY($7::text[]))
    ORDER BY attempts, last_attempt_at NULLS FIRST, gap_id
    LIMIT $4 FOR UPDATE SKIP LOCKED)
"""
_WALKED = sorted(k.value for k in policy.WALKED_KINDS)

_SETTLE = f"""
UPDATE gaps g SET status = d.status, attempts = d.attempts, terminal_reason = d.terminal_reason,
    lease_id = NULL, updated_at = now(),
    last_attempt_at = CASE WHEN NOT d.attempted THEN g.last_attempt_at ELSE now() END,
    recovered_run_id = CASE WHEN d.status = '{_RECOVERED}' THEN $1 ELSE g.recovered_run_id END
FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::bool[])
     AS d(gap_id, status, attempts, terminal_reason, attempted)
WHERE g.gap_id = d.gap_id
"""


class LeaseStore:
    """The `gaps` table, by the leases that serve its rows to recovery runs."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def lease(
        self, connector: str, hint_id: str, lease_id: str, limit: int, max_attempts: int, lease_seconds: float
    ) -> int:
        """Lease up to `limit` open gaps of a hint to one recovery run; returns how many are
        leased under `lease_id` (idempotent: a retried call returns the same lease). The least
        tried and longest waiting go first, so an item that keeps failing cannot starve the
        ones behind it; gaps a walk recovers go before items, never in the same lease."""
        async with self.pool.acquire() as conn, conn.transaction():
            held = await conn.fetchval(
                f"SELECT count(*) FROM gaps WHERE connector = $1 AND lease_id = $2 AND status = '{_LEASED}'",
                connector,
                lease_id,
            )
            if held:
                return int(held)
            return affected(
                await conn.execute(
                    _LEASE, connector, hint_id, lease_id, limit, max_attempts, lease_seconds, _WALKED
                )
            )

    async def leased(self, connector: str, lease_id: str) -> list[ServedGap]:
        """The item gaps of a lease, as the recovery run is served them."""
        rows = await self.pool.fetch(
            "SELECT gap_id, stream, subject, locator::text AS locator, parent_stream FROM gaps "
            f"WHERE connector = $1 AND lease_id = $2 AND status = '{_LEASED}' "
            f"AND kind = '{GapKind.ITEM.value}' ORDER BY gap_id",
            connector,
            lease_id,
        )
        return [
            ServedGap(
                gap_id=r["gap_id"],
                lease_id=lease_id,
                stream=r["stream"],
                record_key=r["subject"],
                detail_locator=orjson.loads(r["locator"]) if r["locator"] else None,
                parent_stream=r["parent_stream"],
            )
            for r in rows
        ]

    async def leased_kinds(self, connector: str, lease_id: str) -> set[GapKind]:
        """The kinds of gap a lease holds: what its recovery run has to do (policy.walks_forward)."""
        rows = await self.pool.fetch(
            f"SELECT DISTINCT kind FROM gaps WHERE connector = $1 AND lease_id = $2 AND status = '{_LEASED}'",
            connector,
            lease_id,
        )
        return {GapKind(r["kind"]) for r in rows}

    async def mark_served(self, connector: str, lease_id: str, gap_ids: list[str]) -> None:
        """Record that these gaps of the lease were served to its run (in START or a page)."""
        await self.pool.execute(
            "UPDATE gaps SET served_lease_id = $2 "
            f"WHERE connector = $1 AND lease_id = $2 AND status = '{_LEASED}' AND gap_id = ANY($3::text[])",
            connector,
            lease_id,
            gap_ids,
        )

    async def settle_lease(
        self,
        connector: str,
        lease_id: str,
        run_id: str,
        run_clean: bool,
        max_attempts: int,
        max_no_progress: int,
    ) -> None:
        """Settle the gaps still leased after the recovery run `run_id` (policy.settle decides
        each one; those the run recovered were closed while it ran)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT gap_id, reason, recovery_class, attempts, locator IS NOT NULL AS has_locator, "
                "last_seen_run_id = $3 AS seen_again, served_lease_id IS NOT DISTINCT FROM $2 AS served, "
                f"kind = '{GapKind.CHECKPOINT.value}' AS closed_by_commit "
                f"FROM gaps WHERE connector = $1 AND lease_id = $2 AND status = '{_LEASED}' FOR UPDATE",
                connector,
                lease_id,
                run_id,
            )
            done = [
                policy.settle(
                    policy.ServedGap(
                        r["gap_id"],
                        RecoveryClass(r["recovery_class"]),
                        int(r["attempts"]),
                        r["has_locator"],
                        r["seen_again"],
                        r["served"],
                        r["closed_by_commit"],
                    ),
                    r["reason"],
                    run_clean,
                    max_attempts,
                    max_no_progress,
                )
                for r in rows
            ]
            if done:
                await conn.execute(
                    _SETTLE,
                    run_id,
                    [d.gap_id for d in done],
                    [d.status.value for d in done],
                    [d.attempts for d in done],
                    [d.terminal_reason for d in done],
                    [d.attempted for d in done],
                )

    async def hint_progress(self, connector: str, hint_id: str) -> HintProgress:
        """How the gaps of a hint stand, by status, and the seconds until the earliest pending
        one's `not_before` (0 when one is due)."""
        rows = await self.pool.fetch(
            "SELECT status, count(*) AS n, "
            "GREATEST(0, EXTRACT(EPOCH FROM min(not_before) - now())) AS wait "
            "FROM gaps WHERE connector = $1 AND hint_id = $2 GROUP BY status",
            connector,
            hint_id,
        )
        counts = {GapStatus(r["status"]): int(r["n"]) for r in rows}
        return HintProgress(
            pending=counts.get(GapStatus.PENDING, 0),
            leased=counts.get(GapStatus.LEASED, 0),
            recovered=counts.get(GapStatus.RECOVERED, 0),
            terminal=counts.get(GapStatus.TERMINAL, 0),
            wait_seconds=next((float(r["wait"] or 0) for r in rows if r["status"] == _PENDING), 0.0),
        )

    async def close_hint(self, connector: str, hint_id: str, run_id: str) -> int:
        """Mark every open gap of a hint recovered by `run_id` (a range fetched chunk by chunk)."""
        return affected(
            await self.pool.execute(
                f"UPDATE gaps SET status = '{_RECOVERED}', recovered_run_id = $3, lease_id = NULL, "
                f"updated_at = now() WHERE connector = $1 AND hint_id = $2 AND status IN ({OPEN})",
                connector,
                hint_id,
                run_id,
            )
        )
