"""Retry hints, computed rather than guessed (DESIGN §1 option D).

Pure functions: when a group of gaps may be retried (the upstream's own signal first, else
the connector's back-off policy for that recovery class) and how a range gap is cut into
chunks the source accepts.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from pdpp_orch.models import RecoveryClass, TimeRange

# A runtime-retryable gap gets this many attempts before it is quarantined (terminal); one that
# turned permanent (404/410/401/403) gets the manifest's max_recovery_attempts.
MAX_NO_PROGRESS = 8


class ClassPolicy(BaseModel):
    """Back-off of one recovery class: `base_seconds` × `factor`^(attempt-1), capped."""

    # Strict: `true` is not 1 second, and infinities are not a policy.
    model_config = ConfigDict(strict=True, allow_inf_nan=False)

    base_seconds: float = Field(gt=0)
    factor: float = Field(default=2.0, ge=1.0)
    cap_seconds: float = Field(gt=0)


class RetryPolicy(BaseModel):
    """`[connectors.NAME.retry]`: back-off per recovery class when the upstream gives no signal."""

    provider_pressure: ClassPolicy = ClassPolicy(base_seconds=900, cap_seconds=24 * 3600)
    transient: ClassPolicy = ClassPolicy(base_seconds=300, cap_seconds=6 * 3600)

    model_config = {"extra": "forbid"}

    def delay(self, cls: RecoveryClass, attempt: int) -> timedelta:
        """How long to wait before retry number `attempt` (1-based) of a gap of class `cls`."""
        p = self.provider_pressure if cls is RecoveryClass.PROVIDER_PRESSURE else self.transient
        seconds = p.base_seconds
        for _ in range(max(0, attempt - 1)):
            if seconds >= p.cap_seconds:
                break  # capped already: never multiply towards an overflow
            seconds *= p.factor
        return timedelta(seconds=min(seconds, p.cap_seconds))


def not_before(
    now: datetime, signalled: datetime | None, policy: RetryPolicy, cls: RecoveryClass, attempt: int
) -> datetime:
    """The upstream's own signal wins; otherwise the policy's back-off from `now`."""
    if signalled is not None:
        return signalled
    return now + policy.delay(cls, attempt)


def hint_id(run_id: str, stream: str, kind: str, reason: str) -> str:
    """A stable id for the hint of one group of gaps found by one run."""
    h = hashlib.sha256("\x1f".join((run_id, stream, kind, reason)).encode())
    return "hint_" + h.hexdigest()[:20]


def parse_day(value: str) -> date:
    """A `time_range` bound (a date or an ISO datetime) as a date."""
    return date.fromisoformat(value[:10])


def split_range(since: date, until: date, max_days: int) -> list[TimeRange]:
    """Cut [since, until] (inclusive days) into consecutive chunks of at most `max_days`."""
    if max_days < 1:
        raise ValueError("max_days must be at least 1")
    chunks: list[TimeRange] = []
    start = since
    while start <= until:
        end = min(until, start + timedelta(days=max_days - 1))
        chunks.append(TimeRange(since=start.isoformat(), until=end.isoformat()))
        start = end + timedelta(days=1)
    return chunks
