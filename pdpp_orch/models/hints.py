"""Retry hints and their recoveries: what a hint covers, and the inputs and results of the
recovery workflow's activities."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from pdpp_orch.models.enums import RecoveryClass, RecoveryEnding, RecoveryStep
from pdpp_orch.models.scope import TimeRange


class ResourceRef(BaseModel):
    """A reference to a set of ids kept in the gap ledger (the ids stay out of history)."""

    count: int
    ref: str


class HintScope(BaseModel):
    """What a recovery run re-collects: one stream, narrowed to exactly the gaps."""

    stream: str | None = Field(default=None, description="None: the whole connector")
    include_resources: ResourceRef | None = None
    exclude_resources: ResourceRef | None = None
    time_ranges: list[TimeRange] | None = Field(
        default=None, description="chunks no longer than the source accepts"
    )


class RetryHint(BaseModel):
    hint_id: str
    reason: str
    recovery_class: RecoveryClass
    not_before: datetime
    scope: HintScope
    gap_count: int
    estimated_cost: int
    attempt: int
    max_attempts: int


class RetryPlan(BaseModel):
    """The run's retry hints and where the connector's gap ledger stands after it."""

    hints: list[RetryHint] = Field(default_factory=list)
    gaps_opened: int = Field(default=0, description="gaps opened after collection (run-level)")
    gaps_open_total: int = 0
    gaps_open_by_stream: dict[str, int] = Field(default_factory=dict)
    missing_by_stream: dict[str, int] = Field(
        default_factory=dict,
        description="records the open gaps of each stream stand for (pdpp_orch.present.estimate), "
        "checkpoint gaps aside: the outcome counts the coverage keys behind them itself",
    )


class RecoveryInput(BaseModel):
    """Input of GapRecoveryWorkflow: one retry hint, and where a continued run left off."""

    connector: str
    hint: RetryHint
    found_run_id: str
    batch_size: int = Field(default=1000, description="most gaps served to one recovery run")
    heartbeat_timeout_seconds: float = 30.0
    continue_as_new_after: int = Field(
        default=200,
        ge=1,
        description="passes (each a budget ask, then a run or a wait) before continuing as new",
    )
    rounds: int = 0
    chunks_done: int = 0
    idle_rounds: int = 0
    runs: int = 0
    budget_waits: int = 0


class RecoveryPolicy(BaseModel):
    """What a recovery needs to know of its connector's configuration (read once per run)."""

    cost_per_item: int
    budget_units: int | None
    budget_window_seconds: float
    max_attempts: int
    max_no_progress: int = Field(description="pdpp_orch.policy.MAX_NO_PROGRESS when it was read")
    lease_seconds: float = 3600.0


class HintRef(BaseModel):
    connector: str
    hint_id: str


class LeaseInput(BaseModel):
    connector: str
    hint_id: str
    lease_id: str
    limit: int
    max_attempts: int
    lease_seconds: float


class SettleInput(BaseModel):
    connector: str
    hint_id: str
    lease_id: str | None
    run_id: str
    run_clean: bool
    max_attempts: int
    max_no_progress: int
    close_all: bool = Field(default=False, description="close every open gap of the hint (a range done)")


class HintProgress(BaseModel):
    """Where the gaps of one hint stand, and how long until the earliest pending one may run."""

    pending: int = 0
    leased: int = 0
    recovered: int = 0
    terminal: int = 0
    wait_seconds: float = 0.0

    @property
    def open(self) -> int:
        return self.pending + self.leased


class RecoveryResult(BaseModel):
    hint_id: str
    runs: int
    rounds: int
    budget_waits: int
    progress: HintProgress


class RecoveryState(BaseModel):
    """What a recovery is doing now (its `state` query): the step, until when it waits, and the
    recovery run in progress."""

    step: RecoveryStep
    until: datetime | None = None
    run_id: str | None = Field(default=None, description="the recovery run in progress (recovering)")
    round: int = 0
    progress: HintProgress = Field(default_factory=HintProgress)
    wanted: int | None = Field(
        default=None, description="the units a wait for the budget waits for (the fewest worth having)"
    )


class RecoveryEnd(BaseModel):
    """How a recovery ended, recorded by the recovery itself: the present does not depend on
    Temporal remembering it. `said` is the cancel's reason (who cancelled: an operator, the demo)."""

    connector: str
    hint_id: str
    workflow_id: str
    ending: RecoveryEnding
    said: str | None = None
    at: datetime
    progress: HintProgress
    runs: int = 0
