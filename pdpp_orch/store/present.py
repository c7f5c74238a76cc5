"""What the read model of the present (pdpp_orch.present) reads: the gaps of each retry hint by
status, open gaps by stream and kind, open gaps no hint retries, and the forward runs that came
after a run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from pdpp_orch.models import GapKind, GapStatus, Mode, RecoveryClass
from pdpp_orch.present.estimate import OpenGaps, missing
from pdpp_orch.present.model import HintLedger, LaterRun, UnplannedGaps
from pdpp_orch.store.common import OPEN, SETTLED

_RECOVERED = GapStatus.RECOVERED.value
_TERMINAL = GapStatus.TERMINAL.value

# The hints of a scope: those named, and those with a gap in its streams (all: NULL) that is
# open now, or that was found by `$5` (NULL: ever) and settled after `$4` (NULL: ever).
_SCOPE = f"""
connector = $1 AND hint_id IS NOT NULL AND (hint_id = ANY($2::text[]) OR (
    ($3::text[] IS NULL OR stream = ANY($3::text[]))
    AND (status IN ({OPEN}) OR (status IN ({SETTLED}) AND ($4::timestamptz IS NULL OR updated_at > $4)
                                AND ($5::timestamptz IS NULL OR created_at <= $5)))))
"""

_HINTS = f"""
SELECT hint_id, mode() WITHIN GROUP (ORDER BY stream) AS stream, mode() WITHIN GROUP (ORDER BY kind) AS kind,
       mode() WITHIN GROUP (ORDER BY reason) AS reason,
       mode() WITHIN GROUP (ORDER BY recovery_class) AS recovery_class,
       count(*) FILTER (WHERE status = '{GapStatus.PENDING.value}') AS pending,
       count(*) FILTER (WHERE status = '{GapStatus.LEASED.value}') AS leased,
       count(*) FILTER (WHERE status = '{_RECOVERED}') AS recovered,
       count(*) FILTER (WHERE status = '{_TERMINAL}') AS terminal,
       min(not_before) FILTER (WHERE status = '{GapStatus.PENDING.value}') AS next_retry,
       max(updated_at) FILTER (WHERE status IN ({SETTLED})) AS settled_at
FROM gaps WHERE hint_id IN (SELECT DISTINCT hint_id FROM gaps WHERE {_SCOPE}) AND connector = $1
GROUP BY hint_id ORDER BY hint_id
"""

# Per hint: open gaps by kind (for the estimate), terminal reasons, and who recovered them.
_DETAIL = """
SELECT g.hint_id, g.kind, g.status, g.terminal_reason, g.recovered_run_id, r.mode,
       count(*) AS n, coalesce(sum(g.records_estimate), 0) AS estimated,
       count(*) FILTER (WHERE g.records_estimate IS NULL) AS unestimated, max(g.updated_at) AS at
FROM gaps g LEFT JOIN runs r ON r.run_id = g.recovered_run_id
WHERE g.connector = $1 AND g.hint_id = ANY($2::text[])
GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY at
"""


def _open(r: Any) -> OpenGaps:
    return OpenGaps(GapKind(r["kind"]), int(r["n"]), int(r["estimated"]), int(r["unestimated"]))


def _ledgers(rows: list[Any], details: list[Any]) -> list[HintLedger]:
    hints = {
        r["hint_id"]: HintLedger.model_validate(
            {**dict(r), "kind": GapKind(r["kind"]), "recovery_class": RecoveryClass(r["recovery_class"])}
        )
        for r in rows
    }
    groups: dict[str, list[OpenGaps]] = {}
    for d in details:
        h = hints[d["hint_id"]]
        status = GapStatus(d["status"])
        if status.open:
            groups.setdefault(h.hint_id, []).append(_open(d))
        elif status is GapStatus.TERMINAL:
            why = d["terminal_reason"] or "terminal"
            h.terminal_reasons[why] = h.terminal_reasons.get(why, 0) + int(d["n"])
        elif d["recovered_run_id"]:
            run = d["recovered_run_id"]
            if run in h.recovered_by:
                h.recovered_by.remove(run)
            h.recovered_by.append(run)
            if d["mode"] == Mode.FORWARD.value and run not in h.recovered_by_forward:
                h.recovered_by_forward.append(run)
    for hint_id, gs in groups.items():
        m = missing(gs)
        hints[hint_id].missing, hints[hint_id].unknown_size = m.records, m.unknown_size
    return list(hints.values())


class PresentStore:
    """Read-only queries of the ledger and the runs for the present."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def hints(
        self,
        connector: str,
        hint_ids: list[str],
        streams: list[str] | None = None,
        since: datetime | None = None,
        found_by: datetime | None = None,
    ) -> list[HintLedger]:
        """The hints named, and those with a gap in `streams` open now, or found by `found_by`
        and settled after `since` (what a run left open, and what became of it)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_HINTS, connector, hint_ids, streams, since, found_by)
            details = await conn.fetch(_DETAIL, connector, [r["hint_id"] for r in rows])
        return _ledgers(rows, details)

    async def open_gaps(self, connector: str) -> dict[str, list[OpenGaps]]:
        """The connector's open gaps by stream and kind, with their stored estimates."""
        rows = await self.pool.fetch(
            "SELECT stream, kind, count(*) AS n, coalesce(sum(records_estimate), 0) AS estimated, "
            "count(*) FILTER (WHERE records_estimate IS NULL) AS unestimated "
            f"FROM gaps WHERE connector = $1 AND status IN ({OPEN}) "
            "GROUP BY stream, kind ORDER BY stream, kind",
            connector,
        )
        out: dict[str, list[OpenGaps]] = {}
        for r in rows:
            out.setdefault(r["stream"], []).append(_open(r))
        return out

    async def unplanned(self, connector: str) -> list[UnplannedGaps]:
        """Open gaps no hint owns: nothing retries them on its own."""
        rows = await self.pool.fetch(
            "SELECT stream, reason, recovery_class, count(*) AS open FROM gaps "
            f"WHERE connector = $1 AND hint_id IS NULL AND status IN ({OPEN}) "
            "GROUP BY stream, reason, recovery_class ORDER BY stream, reason",
            connector,
        )
        return [UnplannedGaps.model_validate(dict(r)) for r in rows]

    async def later_runs(self, connector: str, run_id: str) -> list[LaterRun]:
        """The forward runs of `connector` started after `run_id`, oldest first."""
        rows = await self.pool.fetch(
            "SELECT run_id, status, finished_at FROM runs WHERE connector = $1 AND mode = $3 AND "
            "started_at > (SELECT started_at FROM runs WHERE run_id = $2) ORDER BY started_at",
            connector,
            run_id,
            Mode.FORWARD.value,
        )
        return [LaterRun.model_validate(dict(r)) for r in rows]
