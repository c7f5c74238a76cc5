"""`usaa`: bank transactions from a CSV export with a capped date range — seed Case D.

Stream `transactions` (key `id`, consent time field `date`, cursor `{"until": "YYYY-MM-DD"}`).

The bank's export dialog rejects ranges longer than some limit (~17 months in the incident)
with `range_too_long`. Like the original connector, this one walks a ladder — the requested
range, then the last 2 years, 1 year and 90 days ending at `until` — and ships the first range
the bank accepts. Unlike the original, it does not do so silently: when the accepted range is
shorter than the requested one it emits a SKIP_RESULT `range_truncated` whose `time_range` is
exactly the part not collected, with the ladder in its diagnostics, so the runtime can
re-request that part in chunks the bank accepts. DONE is `succeeded`: the connector did what the
bank allowed and said what it could not do. If no rung is accepted, DONE is `failed`, retryable.

Every range is half-open, as the protocol's `time_range` is: `since` <= date < `until`, a
transaction's date read as its midnight (UTC). The requested range: the stream's START
`time_range` (dates or ISO datetimes), else from the day before the cursor's `until` (the last
day read, re-read: transactions can post to it after the export) through today, else the five
years through today. The bank's export takes the same half-open [start, end); the cursor's
`until` and the uncovered `time_range` are exclusive too. `USAA_TODAY` (YYYY-MM-DD) replaces
today, for worlds pinned to a date such as the simulated bank's.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pdpp_orch.connectors.http import Upstream, UpstreamError
from pdpp_orch.connectors.sdk import Connector

STREAM = "transactions"
EXPORT = "/bank/export.csv"
LADDER_DAYS = (730, 365, 90)


@dataclass
class Export:
    """The outcome of walking the ladder."""

    since: date | None = None
    until: date | None = None
    rows: list[dict[str, str]] = field(default_factory=list)
    ladder: list[dict[str, Any]] = field(default_factory=list)
    max_range_days: int | None = None
    error: UpstreamError | None = None

    @property
    def days(self) -> int:
        return days_between(self.since, self.until) if self.since and self.until else 0


def day_of(value: str) -> date:
    """The first date whose midnight (UTC) is at or after the time `value` (YYYY-MM-DD or an ISO
    datetime, no offset: UTC): the first day a range bound lets in, or the first it keeps out."""
    moment = datetime.fromisoformat(value)
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    day = moment.date()
    return day if moment.time() == datetime.min.time() else day + timedelta(days=1)


def days_between(since: date, until: date) -> int:
    """Days in the half-open range [since, until)."""
    return (until - since).days


def requested_range(conn: Connector, today: date) -> tuple[date, date]:
    """The half-open range of dates to export."""
    tr = conn.time_range(STREAM) or {}
    until = day_of(tr["until"]) if tr.get("until") else today + timedelta(days=1)
    if tr.get("since"):
        return day_of(tr["since"]), until
    previous = conn.cursor(STREAM) if conn.collection_mode() != "full_refresh" else None
    if previous and previous.get("until"):
        # Re-read the last day read: transactions can post to it after the export.
        return day_of(previous["until"]) - timedelta(days=1), until
    try:
        return until.replace(year=until.year - 5), until
    except ValueError:  # 29 February
        return until.replace(year=until.year - 5, day=28), until


def rungs(since: date, until: date) -> list[date]:
    """Start dates to try: the requested range, then each shorter rung ending at `until`."""
    wanted = days_between(since, until)
    return [since] + [until - timedelta(days=d) for d in LADDER_DAYS if d < wanted]


async def walk_ladder(up: Upstream, since: date, until: date) -> Export:
    export = Export()
    for start in rungs(since, until):
        days = days_between(start, until)
        try:
            text = await up.get_text(EXPORT, {"start": start.isoformat(), "end": until.isoformat()})
        except UpstreamError as e:
            export.ladder.append({"days": days, "status": e.status})
            if not _range_too_long(e):
                export.error = e
                return export
            if isinstance(e.body, dict) and isinstance(e.body.get("max_days"), int):
                export.max_range_days = e.body["max_days"]
            export.error = e
            continue
        export.ladder.append({"days": days, "status": 200})
        export.since, export.until, export.error = start, until, None
        export.rows = list(csv.DictReader(io.StringIO(text)))
        return export
    return export


def _range_too_long(e: UpstreamError) -> bool:
    return e.status == 400 and isinstance(e.body, dict) and e.body.get("error") == "range_too_long"


def report_truncation(conn: Connector, since: date, until: date, export: Export) -> None:
    assert export.since is not None
    requested = days_between(since, until)
    diagnostics: dict[str, Any] = {
        "requested_days": requested,
        "accepted_days": export.days,
        "longest_accepted_days": export.days,
        "ladder": export.ladder,
    }
    if export.max_range_days is not None:
        diagnostics["max_range_days"] = export.max_range_days
    conn.skip(
        STREAM,
        "range_truncated",
        message=(
            f"the bank rejected {requested} days; exported the last {export.days} days "
            f"[{export.since.isoformat()}, {until.isoformat()}), "
            f"[{since.isoformat()}, {export.since.isoformat()}) not collected"
        ),
        recovery_hint="retry_by_runtime",
        time_range={"since": since.isoformat(), "until": export.since.isoformat()},
        diagnostics=diagnostics,
    )


async def collect(conn: Connector, today: date) -> dict[str, Any] | None:
    """Emit what the bank exports; returns DONE's error, or None on success."""
    since, until = requested_range(conn, today)
    async with Upstream() as up:
        export = await walk_ladder(up, since, until)
    if export.since is None:
        err = export.error
        return {
            "code": "range_too_long" if err is not None and _range_too_long(err) else "export_failed",
            "message": f"no export range accepted: {err}; ladder {export.ladder}",
            "retryable": True,
        }
    for row in export.rows:
        conn.record(STREAM, row["id"], row)
    if export.since > since:
        report_truncation(conn, since, until, export)
    conn.state(STREAM, {"until": until.isoformat()})
    return None


def main() -> None:
    conn = Connector()
    conn.start()
    if conn.recovery_only() or not conn.in_scope(STREAM):
        conn.done()
    today = os.environ.get("USAA_TODAY")
    error = asyncio.run(collect(conn, date.fromisoformat(today) if today else datetime.now(UTC).date()))
    if error is not None:
        conn.done("failed", error=error)
    conn.done()


if __name__ == "__main__":
    main()
