"""Time ranges as the protocol reads them: half-open, `since` <= t < `until` (spec-core,
`time_range`). One rule for every range this runtime makes or reads: a run's `--since/--until`,
a range gap and the chunks it is fetched again in, the days an estimate counts.

A bound is an ISO 8601 date or date-time (no offset: UTC). A range touches the days
[first, end): `first` the day of `since`, `end` the first midnight (UTC) at or after `until`,
so a range that ends at 12:00 still touches its last day. Pure functions, no clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

from pdpp_orch.models import TimeRange


def instant(value: str) -> datetime | None:
    """A bound as a time in UTC, or None when it is not ISO 8601 (a connector's words)."""
    try:
        moment = datetime.fromisoformat(value.strip())
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def bounds(r: TimeRange) -> tuple[datetime | None, datetime | None]:
    """A range's bounds as times; (None, None) unless each bound it has is a time, `until` not
    before `since`."""
    since = instant(r.since) if r.since else None
    until = instant(r.until) if r.until else None
    if (r.since and since is None) or (r.until and until is None) or (since and until and until < since):
        return None, None
    return since, until


def day_span(since: datetime, until: datetime) -> tuple[date, date]:
    """The days [first, end) that the times [since, until) touch (up to the last day a date
    can be)."""
    end = until.date()
    if until.time() != datetime.min.time() and end < date.max:
        end += timedelta(days=1)
    return since.date(), end


def days(r: TimeRange) -> int | None:
    """How many days a range touches; None when it is open-ended or a bound is not a time."""
    since, until = bounds(r)
    if since is None or until is None:
        return None
    first, end = day_span(since, until)
    return (end - first).days


def split(r: TimeRange, max_days: int, first: date, end: date) -> list[TimeRange]:
    """Cut a range that touches the days [first, end) into consecutive chunks of at most
    `max_days` days that meet at midnights: each chunk's `until` is the next one's `since`, the
    first's `since` and the last's `until` the range's own texts. At least one chunk."""
    if max_days < 1:
        raise ValueError("max_days must be at least 1")
    cuts = (first + timedelta(days=k) for k in range(max_days, (end - first).days, max_days))
    edges = [r.since, *(c.isoformat() for c in cuts), r.until]
    return [TimeRange(since=a, until=b) for a, b in pairwise(edges)]
