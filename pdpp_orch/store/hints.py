"""Retry hints in the ledger: which gaps each hint owns, and the groups new hints are planned
from (pdpp_orch.policy turns a group into a hint)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from pdpp_orch import policy, walkcost
from pdpp_orch.models import GapKind, GapStatus, RecoveryClass
from pdpp_orch.store.common import OPEN, RETRYABLE, affected

_PENDING = GapStatus.PENDING.value
_RECOVERED = GapStatus.RECOVERED.value


class HintGaps(BaseModel):
    """A retry hint that still owns open gaps, with its gaps counted by status."""

    hint_id: str
    stream: str
    reason: str
    run_id: str
    open: int
    recovered: int
    terminal: int
    next_retry: datetime | None = None


class RequeuedGap(BaseModel):
    connector: str
    hint_id: str
    last_seen_run_id: str


_GROUPS = f"""
SELECT stream, kind, reason, recovery_class, count(*) AS n, max(not_before) AS not_before,
       max(attempts) AS attempts,
       array_agg(subject ORDER BY subject) FILTER (WHERE kind = '{GapKind.RANGE.value}') AS ranges,
       max((locator->>'max_days')::int) FILTER (WHERE kind = '{GapKind.RANGE.value}') AS max_days
FROM gaps
WHERE connector = $1 AND {{where}} AND ($3::text[] IS NULL OR recovery_class = ANY($3::text[]))
  AND attempts < $4
GROUP BY stream, kind, reason, recovery_class
ORDER BY stream, kind, reason
"""


# What a walk re-collects, per stream ($2; NULL: every stream with a committed cursor, a
# whole-run gap's walk): what the run that committed the stream's cursor collected of it (its
# outcome's, or its saved facts' while it is still ending) and had collected at that cursor
# (the checkpoint's counters); for a stream never committed, the records stored of it.
_WALK_SIZES = """
WITH streams AS (
    SELECT stream FROM stream_state WHERE connector = $1 AND ($2::text IS NULL OR stream = $2)
    UNION SELECT $2::text WHERE $2::text IS NOT NULL
)
SELECT coalesce(
           (SELECT (e->>'collected')::bigint FROM jsonb_array_elements(r.outcome->'streams') e
            WHERE e->>'stream' = s.stream LIMIT 1),
           (r.facts->'streams'->s.stream->>'collected')::bigint
       ) AS total,
       (cp.facts->'streams'->s.stream->>'collected')::bigint AS at_cursor,
       CASE WHEN r.run_id IS NULL THEN
           (SELECT count(*) FROM records WHERE connector = $1 AND stream = s.stream AND NOT deleted)
       END AS stored
FROM streams s
LEFT JOIN stream_state st ON st.connector = $1 AND st.stream = s.stream
LEFT JOIN runs r ON r.run_id = st.run_id
LEFT JOIN run_checkpoints cp ON cp.run_id = st.run_id AND cp.stream = s.stream
"""


def _group(r: Any) -> policy.GapGroup:
    return policy.GapGroup(
        stream=r["stream"],
        kind=GapKind(r["kind"]),
        reason=r["reason"],
        recovery_class=RecoveryClass(r["recovery_class"]),
        count=int(r["n"]),
        not_before=r["not_before"],
        attempts=int(r["attempts"]),
        ranges=tuple(r["ranges"] or ()),
        max_days=r["max_days"],
    )


class HintStore:
    """The `gaps` table, by the hints that own its rows."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    # -- hints --------------------------------------------------------------------------------

    async def groups_found_by(self, connector: str, run_id: str, max_attempts: int) -> list[policy.GapGroup]:
        """The pending, runtime-retryable gaps last seen by `run_id` and owned by no hint yet,
        one group per hint to be."""
        where = f"last_seen_run_id = $2 AND status = '{_PENDING}' AND hint_id IS NULL"
        rows = await self.pool.fetch(_GROUPS.format(where=where), connector, run_id, RETRYABLE, max_attempts)
        return [await self._priced(connector, _group(r)) for r in rows]

    async def hint_group(
        self, connector: str, hint_id: str, max_attempts: int, *, retryable_only: bool = True
    ) -> policy.GapGroup | None:
        """The open gaps of an existing hint, as the group it was planned from (with
        `retryable_only` False, whatever their recovery class: a gap requeued by hand)."""
        where = f"hint_id = $2 AND status IN ({OPEN})"
        classes = RETRYABLE if retryable_only else None
        row = await self.pool.fetchrow(_GROUPS.format(where=where), connector, hint_id, classes, max_attempts)
        return await self._priced(connector, _group(row)) if row else None

    async def _priced(self, connector: str, g: policy.GapGroup) -> policy.GapGroup:
        """A group whose recovery walks its stream (the run), with what that walk re-collects."""
        if g.kind not in policy.WALKED_KINDS:
            return g
        return dataclasses.replace(g, walk_records=await self.walk_records(connector, g.stream))

    async def walk_records(self, connector: str, stream: str) -> int | None:
        """What a walk of `stream` (of every committed stream: policy.NO_STREAM) re-collects
        (walkcost.stream_walk); None when nothing is known of it."""
        rows = await self.pool.fetch(_WALK_SIZES, connector, None if stream == policy.NO_STREAM else stream)
        sizes = [walkcost.stream_walk(r["total"], r["at_cursor"], r["stored"]) for r in rows]
        known = [n for n in sizes if n is not None]
        return sum(known) if known else None

    async def assign_hints(
        self, connector: str, run_id: str, hints: list[tuple[str, policy.GapGroup]]
    ) -> None:
        """Tie each group's gaps to its hint, so the hint can refer to them by id."""
        await self.pool.executemany(
            "UPDATE gaps SET hint_id = $3 WHERE connector = $1 AND last_seen_run_id = $2 "
            f"AND stream = $4 AND kind = $5 AND reason = $6 AND status = '{_PENDING}' AND hint_id IS NULL",
            [(connector, run_id, hid, g.stream, g.kind.value, g.reason) for hid, g in hints],
        )

    async def adopt(self, connector: str, run_id: str, hint_id: str) -> int:
        """Give the gaps a recovery run found and no hint owns to the hint it was executing,
        those of a kind its recovery can take over (policy.adoptable)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT DISTINCT kind FROM gaps WHERE connector = $1 AND hint_id = $2", connector, hint_id
            )
            kinds = policy.adoptable({GapKind(r["kind"]) for r in rows})
            return affected(
                await conn.execute(
                    "UPDATE gaps SET hint_id = $3 WHERE connector = $1 AND last_seen_run_id = $2 "
                    f"AND hint_id IS NULL AND status = '{_PENDING}' AND kind = ANY($4::text[])",
                    connector,
                    run_id,
                    hint_id,
                    sorted(k.value for k in kinds),
                )
            )

    async def open_hints(self, connector: str) -> list[HintGaps]:
        """The hints that still own open gaps, with counts by status."""
        rows = await self.pool.fetch(
            "SELECT hint_id, min(stream) AS stream, min(reason) AS reason, min(last_seen_run_id) AS run_id, "
            f"count(*) FILTER (WHERE status IN ({OPEN})) AS open, "
            f"count(*) FILTER (WHERE status = '{_RECOVERED}') AS recovered, "
            f"count(*) FILTER (WHERE status = '{GapStatus.TERMINAL.value}') AS terminal, "
            f"min(not_before) FILTER (WHERE status = '{_PENDING}') AS next_retry "
            "FROM gaps WHERE connector = $1 AND hint_id IS NOT NULL GROUP BY hint_id "
            f"HAVING count(*) FILTER (WHERE status IN ({OPEN})) > 0 ORDER BY hint_id",
            connector,
        )
        return [HintGaps.model_validate(dict(r)) for r in rows]

    async def hint_subjects(self, connector: str, hint_id: str) -> list[str]:
        """The ids a hint's `include_resources` refers to (still open)."""
        rows = await self.pool.fetch(
            f"SELECT subject FROM gaps WHERE connector = $1 AND hint_id = $2 AND status IN ({OPEN}) "
            "ORDER BY subject",
            connector,
            hint_id,
        )
        return [r["subject"] for r in rows]

    async def requeue(self, gap_id: str, hint_id: str) -> RequeuedGap | None:
        """Give a terminal (or stuck) gap a fresh start: pending, no attempts, hint `hint_id`."""
        row = await self.pool.fetchrow(
            f"UPDATE gaps SET status = '{_PENDING}', attempts = 0, terminal_reason = NULL, lease_id = NULL, "
            "hint_id = $2, not_before = NULL, updated_at = now() "
            "WHERE gap_id = $1 RETURNING connector, hint_id, last_seen_run_id",
            gap_id,
            hint_id,
        )
        return RequeuedGap.model_validate(dict(row)) if row else None
