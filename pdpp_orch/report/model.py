"""What `pdpp-orch report` says, per connector and stream (its JSON is exactly these models)."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum

from pydantic import BaseModel, Field

from pdpp_orch.models import RunError
from pdpp_orch.present.model import HintNow, NotRetried


class Severity(IntEnum):
    """How urgently a connector needs its owner's attention, worst first."""

    FAILING = 0
    WAITING_ON_YOU = 1
    MISSING_NO_RETRY = 2
    MISSING_RETRY_PLANNED = 3
    OK = 4


class GapSummary(BaseModel):
    reason: str
    recovery_class: str
    open: int
    recovered: int = 0
    terminal: int = 0
    next_retry: datetime | None
    estimated_cost: int | None = Field(description="None: not retried automatically")


class StreamReport(BaseModel):
    stream: str
    records_held: int
    records_deleted: int
    checkpoint_committed_at: datetime | None
    checkpoint_age_hours: float | None
    checkpoint_bytes: int | None
    coverage: str = Field(
        description="complete | partial | unproven | recovered | unknown: the latest finished forward run's, "
        "`recovered` once every gap it left is closed"
    )
    gaps: list[GapSummary]
    waiting_on_owner: int
    records_missing_estimate: int = 0


class RunPoint(BaseModel):
    run_id: str
    started_at: datetime
    status: str
    records_durable: int
    gaps_opened: int


class LatestRun(BaseModel):
    """The latest finished forward run: what the connector's state of collection rests on."""

    run_id: str
    status: str
    reason: str | None
    error: RunError | None
    finished_at: datetime | None
    records_durable: int
    records_missing_estimate: int


class OwnerAsk(BaseModel):
    """A run waiting on its owner right now, with its prompt (from PostgreSQL)."""

    run_id: str
    request_id: str
    kind: str
    message: str | None = None
    expires_at: datetime


class OwnerNotice(BaseModel):
    """A connector asking its owner for help right now, without waiting (ASSISTANCE; the
    message itself is not in the report: `pdpp-orch runs` shows it)."""

    run_id: str
    assistance_request_id: str
    owner_action: str
    progress_posture: str
    expires_at: datetime | None


class ConnectorReport(BaseModel):
    connector: str
    missing_anything: bool = Field(description="now: open gaps, unproven coverage, a failing latest run")
    severity: Severity
    verdict: str = Field(description="one line: what is missing, why, and what happens next")
    latest_run: LatestRun | None
    running_run: str | None = Field(default=None, description="a forward run in progress")
    streams: list[StreamReport]
    records_missing_estimate: int
    next_retry: datetime | None
    next_retry_state: str | None = Field(
        description="when the next retry is, or why none will come (cancelled and by whom, stopped) "
        "and the command"
    )
    next_retry_cost: int
    waiting_on_owner: int = Field(
        description="owner-action gaps, runs waiting on the owner now, and notices asking them to act"
    )
    asks: list[OwnerAsk] = Field(default_factory=list)
    notices: list[OwnerNotice] = Field(default_factory=list)
    hints: list[HintNow] = Field(
        default_factory=list,
        description="every retry hint with gaps open, or settled since the latest run, and its fate",
    )
    not_retried: list[NotRetried] = Field(default_factory=list, description="open gaps no recovery retries")
    recent_runs: list[RunPoint]
