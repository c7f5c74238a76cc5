"""What the present is made of: the inputs the loader gathers (the ledger per hint, what Temporal
and PostgreSQL say of each recovery, the runs that came after) and what surfaces render (every
hint's fate, what is missing now, what comes next and the command for it)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from pdpp_orch.models import GapKind, RecoveryClass, RecoveryEnd, RecoveryState

# -- inputs -----------------------------------------------------------------------------------


class WorkflowState(StrEnum):
    """What Temporal says of a recovery's workflow (`absent`: it never started, or Temporal no
    longer remembers it; `unreachable`: Temporal did not answer; `unasked`: not needed)."""

    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    TERMINATED = "terminated"
    TIMED_OUT = "timed_out"
    ABSENT = "absent"
    UNREACHABLE = "unreachable"
    UNASKED = "unasked"  # its gaps are all settled: Temporal was not asked


class RecoveryLook(BaseModel):
    """One recovery as the loader found it: Temporal's word, its live state (a running one that
    answered) and how it recorded its end, if it did."""

    workflow_id: str
    state: WorkflowState
    live: RecoveryState | None = None
    no_worker: str | None = Field(default=None, description="why nobody answered: the task queue")
    ended: RecoveryEnd | None = None


class HintLedger(BaseModel):
    """The gaps one retry hint owns, counted by status in the ledger."""

    hint_id: str
    stream: str
    kind: GapKind
    reason: str
    recovery_class: RecoveryClass
    pending: int = 0
    leased: int = 0
    recovered: int = 0
    terminal: int = 0
    terminal_reasons: dict[str, int] = Field(default_factory=dict)
    next_retry: datetime | None = None
    recovered_by: list[str] = Field(
        default_factory=list, description="runs that recovered its gaps, latest last"
    )
    recovered_by_forward: list[str] = Field(
        default_factory=list, description="forward runs among them (a later run superseded the plan)"
    )
    settled_at: datetime | None = None
    missing: int = 0
    unknown_size: int = 0

    @property
    def open(self) -> int:
        return self.pending + self.leased


class UnplannedGaps(BaseModel):
    """Open gaps no hint retries (the owner's or the connector's to fix), per stream and reason."""

    stream: str
    reason: str
    recovery_class: RecoveryClass
    open: int


class LaterRun(BaseModel):
    """A forward run that started after the run being shown."""

    run_id: str
    status: str
    finished_at: datetime | None = None


# -- what surfaces render -----------------------------------------------------------------------


class Fate(StrEnum):
    """Where a retry hint stands now."""

    WAITING = "waiting"
    WAITING_BUDGET = "waiting_budget"
    BACKING_OFF = "backing_off"
    RUNNING = "running"
    RECOVERED = "recovered"
    PARTLY_RECOVERED = "partly_recovered"
    EXHAUSTED = "exhausted"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    UNKNOWN = "unknown"

    @property
    def live(self) -> bool:
        """A recovery is on it: something will happen without anyone acting."""
        return self in (Fate.WAITING, Fate.WAITING_BUDGET, Fate.BACKING_OFF, Fate.RUNNING)

    @property
    def settled(self) -> bool:
        return self in (Fate.RECOVERED, Fate.PARTLY_RECOVERED, Fate.EXHAUSTED, Fate.SUPERSEDED)


class HintNow(BaseModel):
    """One hint's fate: what it says, since when or until when, by whom, and what acts on it."""

    hint_id: str
    workflow_id: str
    stream: str
    reason: str
    fate: Fate
    open: int
    recovered: int
    terminal: int
    until: datetime | None = None
    at: datetime | None = None
    by: str | None = Field(default=None, description="who cancelled it, or the run that settled it")
    run_id: str | None = Field(default=None, description="the recovery run in progress")
    says: str
    command: str | None = None


class StreamNow(BaseModel):
    stream: str
    records_missing_estimate: int
    gaps_open: int
    gaps_of_unknown_size: int = 0


class NotRetried(BaseModel):
    stream: str
    reason: str
    recovery_class: RecoveryClass
    open: int
    says: str
    command: str


class Present(BaseModel):
    """What is missing now and what happens next — for a run (`status`) or a connector
    (`report`). JSON outputs carry it as `now`; the outcome stays the record of the run's end."""

    at: datetime
    records_missing_estimate: int
    gaps_of_unknown_size: int = 0
    gaps_open: int
    streams: list[StreamNow] = Field(default_factory=list)
    hints: list[HintNow] = Field(default_factory=list)
    not_retried: list[NotRetried] = Field(default_factory=list)
    later_runs: list[LaterRun] = Field(default_factory=list)
    changed: bool = Field(default=False, description="now differs from the run's end")
    at_end: str | None = Field(default=None, description="the run's end in one line, when now differs")
    next: list[str] = Field(default_factory=list, description="what happens next, with the commands")
