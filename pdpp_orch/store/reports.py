"""What `pdpp-orch report` reads: per connector and stream, records held, committed
checkpoints, gaps (open and settled), recent runs and what waits on the owner — in one
connection."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel

from pdpp_orch import policy
from pdpp_orch.models import GapKind, GapStatus, InteractionStatus, Mode, RecoveryClass
from pdpp_orch.store.hints import HintStore
from pdpp_orch.store.runs import RunRow

RECENT_RUNS = 20


class HeldRecords(BaseModel):
    connector: str
    stream: str
    held: int
    deleted: int
    last_write: datetime


class CommittedState(BaseModel):
    connector: str
    stream: str
    cursor_bytes: int
    run_id: str
    committed_at: datetime


class GapCounts(BaseModel):
    """Gaps of one stream, kind, reason, class and status (settled ones too)."""

    connector: str
    stream: str
    kind: GapKind
    reason: str
    recovery_class: RecoveryClass
    status: GapStatus
    n: int
    next_retry: datetime | None
    planned: int
    # What a walk of the stream re-collects (store.hints.walk_records), for an open gap of a
    # kind that is recovered by walking: what its recovery costs, as its hint prices it.
    walk_records: int | None = None


class WaitingAsk(BaseModel):
    connector: str
    run_id: str
    request_id: str
    kind: str
    message: str | None
    expires_at: datetime


class OpenNotice(BaseModel):
    """An open ASSISTANCE (its message is not in the report)."""

    connector: str
    run_id: str
    assistance_id: str
    owner_action: str
    progress_posture: str
    expires_at: datetime | None


class ReportRows(BaseModel):
    records: list[HeldRecords]
    state: list[CommittedState]
    gaps: list[GapCounts]
    runs: list[RunRow]
    asks: list[WaitingAsk]
    notices: list[OpenNotice] = []


class ReportStore:
    """Read-only queries across the tables, for the report."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def rows(self, connector: str | None) -> ReportRows:
        """Everything the report shows, for one connector or all (runs: the latest 20 each,
        oldest first)."""
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
                "SELECT connector, stream, kind, reason, recovery_class, status, count(*) AS n, "
                "min(not_before) AS next_retry, count(*) FILTER (WHERE hint_id IS NOT NULL) AS planned "
                "FROM gaps WHERE ($1::text IS NULL OR connector = $1) "
                "GROUP BY connector, stream, kind, reason, recovery_class, status",
                connector,
            )
            # The recent runs, and the latest forward run finished and going however far back:
            # what coverage rests on is not crowded out by a recovery's many runs since.
            runs = await conn.fetch(
                "SELECT run_id, connector, trigger, mode, status, needs_retry, reason, attempt, "
                "records_emitted, records_durable, outcome::text AS outcome, started_at, finished_at FROM ("
                "  SELECT *, row_number() OVER (PARTITION BY connector ORDER BY started_at DESC) AS k, "
                "    row_number() OVER (PARTITION BY connector, mode, outcome IS NULL "
                "                       ORDER BY started_at DESC) AS f "
                "  FROM runs WHERE ($1::text IS NULL OR connector = $1)) r "
                "WHERE k <= $2 OR (mode = $3 AND f = 1) ORDER BY connector, started_at",
                connector,
                RECENT_RUNS,
                Mode.FORWARD.value,
            )
            asks = await conn.fetch(
                "SELECT connector, run_id, request_id, kind, message, expires_at FROM interactions "
                "WHERE ($1::text IS NULL OR connector = $1) AND status = $2 ORDER BY created_at",
                connector,
                InteractionStatus.PENDING.value,
            )
            notices = await conn.fetch(
                "SELECT connector, run_id, assistance_id, owner_action, progress_posture, expires_at "
                "FROM assistance WHERE ($1::text IS NULL OR connector = $1) AND status = 'open' "
                "AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at",
                connector,
            )
        return ReportRows(
            records=[HeldRecords.model_validate(dict(r)) for r in records],
            state=[CommittedState.model_validate(dict(r)) for r in state],
            gaps=await self._walks([GapCounts.model_validate(dict(r)) for r in gaps]),
            runs=[RunRow.of(r) for r in runs],
            asks=[WaitingAsk.model_validate(dict(r)) for r in asks],
            notices=[OpenNotice.model_validate(dict(r)) for r in notices],
        )

    async def _walks(self, gaps: list[GapCounts]) -> list[GapCounts]:
        """`gaps` with what a walk of each stream holding an open walked gap re-collects."""
        walked = [g for g in gaps if g.kind in policy.WALKED_KINDS and g.status.open]
        sizes = {
            (c, st): await HintStore(self.pool).walk_records(c, st)
            for c, st in sorted({(g.connector, g.stream) for g in walked})
        }
        for g in walked:
            g.walk_records = sizes[(g.connector, g.stream)]
        return gaps
