"""A run's logs (`pdpp-orch logs`): the connector's stderr per attempt, kept bounded as it comes,
and the run's own timeline — its spine events (started, attempts, batches, checkpoints
committed, skips, the outcome) and its quarantined lines — read in order, and read again from
where the last read stopped (`--follow`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel

# Per attempt, the last lines kept (each at most 500 characters, cut by the reader); collect is
# tried at most 5 times (workflows/options.py), so a run keeps at most 2,000 (README: `logs`).
STDERR_KEEP_LINES = 400
READ_LIMIT = 1000

_APPEND = """
INSERT INTO connector_stderr (run_id, attempt, line_no, line)
SELECT $1, $2, $3 + t.i - 1, t.line FROM unnest($4::text[]) WITH ORDINALITY AS t(line, i)
ON CONFLICT DO NOTHING
"""
_TRIM = "DELETE FROM connector_stderr WHERE run_id = $1 AND attempt = $2 AND line_no <= $3"

_EVENTS = """
SELECT id, event_type, payload::text AS payload, created_at FROM spine_events
WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3
"""
_STDERR = """
SELECT attempt, line_no, line, at FROM connector_stderr
WHERE run_id = $1 AND ($2::int IS NULL OR attempt = $2) AND (attempt, line_no) > ($3, $4)
ORDER BY attempt, line_no LIMIT $5
"""
_QUARANTINED = """
SELECT attempt, line_no, kind, detail, created_at FROM quarantine
WHERE run_id = $1 AND (attempt, line_no) > ($2, $3) ORDER BY attempt, line_no LIMIT $4
"""


class LogEntry(BaseModel):
    """One line of a run's log: a spine event (`kind` its type, `payload` its counts), a line
    of the connector's stderr (`kind` "stderr"), or a quarantined line (`kind` "quarantined")."""

    at: datetime
    kind: str
    attempt: int | None = None
    line_no: int | None = None
    text: str = ""
    payload: dict[str, Any] = {}


@dataclass
class LogCursor:
    """Where a read stopped, per source."""

    event_id: int = 0
    stderr: tuple[int, int] = (0, 0)
    quarantine: tuple[int, int] = (0, 0)
    entries: list[LogEntry] = field(default_factory=list)


class LogStore:
    """The `connector_stderr` table, and a run's timeline from `spine_events` and `quarantine`."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def append_stderr(self, run_id: str, attempt: int, first_line_no: int, lines: list[str]) -> None:
        """Keep `lines` (numbered from `first_line_no`) and only the attempt's last
        STDERR_KEEP_LINES."""
        if not lines:
            return
        last = first_line_no + len(lines) - 1
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_APPEND, run_id, attempt, first_line_no, lines)
            await conn.execute(_TRIM, run_id, attempt, last - STDERR_KEEP_LINES)

    async def read(self, run_id: str, since: LogCursor, attempt: int | None = None) -> LogCursor:
        """What was written after `since`, in time order (`entries`), and where it stops."""
        after = LogCursor(since.event_id, since.stderr, since.quarantine)
        async with self.pool.acquire() as conn:
            for r in await conn.fetch(_EVENTS, run_id, since.event_id, READ_LIMIT):
                payload = orjson.loads(r["payload"])
                after.entries.append(LogEntry(at=r["created_at"], kind=r["event_type"], payload=payload))
                after.event_id = r["id"]
            a, n = since.stderr
            for r in await conn.fetch(_STDERR, run_id, attempt, a, n, READ_LIMIT):
                line = LogEntry(at=r["at"], kind="stderr", attempt=r["attempt"], line_no=r["line_no"])
                line.text = r["line"]
                after.entries.append(line)
                after.stderr = (r["attempt"], r["line_no"])
            a, n = since.quarantine
            for r in await conn.fetch(_QUARANTINED, run_id, a, n, READ_LIMIT):
                entry = LogEntry(at=r["created_at"], kind="quarantined", attempt=r["attempt"])
                entry.line_no, entry.text = r["line_no"], f"{r['kind']}: {r['detail']}"
                after.entries.append(entry)
                after.quarantine = (r["attempt"], r["line_no"])
        after.entries.sort(key=lambda e: e.at)  # stable: each source stays in its own order
        return after
