"""Pydantic models shared by workflows, activities, the store and the CLI.

Everything here may travel through Temporal history, so it holds counts, sizes, enums and ids of
our own rows — never record data, cursors or upstream ids (DESIGN §5).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PARTIALLY_COMPLETED = "partially_completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Trigger(StrEnum):
    MANUAL = "manual"
    SCHEDULED = "scheduled"
    RECOVERY = "recovery"


class Mode(StrEnum):
    FORWARD = "forward"
    RECOVERY = "recovery"


class CheckpointPolicy(StrEnum):
    COMMIT_PROVEN = "commit_proven"
    PDPP_STRICT = "pdpp_strict"


class CommitStatus(StrEnum):
    COMMITTED = "committed"
    PARTIALLY_COMMITTED = "partially_committed"
    NOT_COMMITTED = "not_committed"
    DISABLED = "disabled"


class RecoveryClass(StrEnum):
    """What kind of miss a gap is; drives whether and when the runtime retries it."""

    PROVIDER_PRESSURE = "provider_pressure"
    TRANSIENT = "transient"
    OWNER_ACTION = "owner_action"
    CONNECTOR_DEFECT = "connector_defect"
    INFORMATIONAL = "informational"
    UNKNOWN = "unknown"

    @property
    def runtime_retryable(self) -> bool:
        return self in (RecoveryClass.PROVIDER_PRESSURE, RecoveryClass.TRANSIENT)


class GapStatus(StrEnum):
    """Where a gap of the ledger stands: open (pending, or leased to a recovery run) or settled."""

    PENDING = "pending"
    LEASED = "leased"
    RECOVERED = "recovered"
    TERMINAL = "terminal"

    @property
    def open(self) -> bool:
        return self in (GapStatus.PENDING, GapStatus.LEASED)


class GapKind(StrEnum):
    """What a gap stands for: one item, a time range, a whole stream, a checkpoint that did not
    commit, a whole run that failed retryably, or an interaction nobody answered."""

    ITEM = "item"
    RANGE = "range"
    STREAM = "stream"
    CHECKPOINT = "checkpoint"
    RUN = "run"
    INTERACTION = "interaction"


class LiveStatus(StrEnum):
    """The `runs` row's status before the run has its outcome."""

    RUNNING = "running"
    WAITING_ON_OWNER = "waiting_on_owner"


class TimeRange(BaseModel):
    since: str | None = None
    until: str | None = None


class StreamScope(BaseModel):
    name: str
    time_range: TimeRange | None = None


class RunInput(BaseModel):
    """Input of ConnectorRunWorkflow. The workflow id is the run id."""

    connector: str
    run_id: str = Field(default="", description="empty: the workflow id (scheduled runs)")
    trigger: Trigger = Trigger.MANUAL
    mode: Mode = Mode.FORWARD
    streams: list[StreamScope] = Field(default_factory=list, description="empty: every stream")
    heartbeat_timeout_seconds: float = 30.0
    max_run_seconds: float = 24 * 3600.0
    recover: bool = Field(default=True, description="start a GapRecoveryWorkflow for each retry hint")
    hint_id: str | None = Field(default=None, description="recovery runs: the hint being executed")
    lease_id: str | None = Field(default=None, description="recovery runs: the gaps served, by lease")
    allow_concurrent: bool = Field(
        default=False, description="forward runs: start even while another run of the connector is going"
    )


class PreparedRun(BaseModel):
    """What the prepare activity learned; sizes and names only."""

    connector: str
    checkpoint_policy: CheckpointPolicy
    streams: list[str]
    committed_state_bytes: dict[str, int]
    budget_units: int | None = None
    budget_window_seconds: float = 24 * 3600.0
    cost_per_item: int = 1


class CheckpointFact(BaseModel):
    """A stream's checkpoint as seen during collection (the cursor itself stays in Postgres).

    `unproven_reason` is set when the latest staged STATE could not be proven; `proven_seq`
    may still point at an earlier proven one, which is what gets committed."""

    stream: str
    staged: int = 0
    proven_seq: int | None = None
    proven_bytes: int = 0
    unproven_reason: str | None = None


class CoverageFact(BaseModel):
    stream: str
    state_stream: str | None = None
    required: int = 0
    hydrated: int = 0
    gap_backed: int = 0
    considered: int | None = None
    covered: int | None = None

    @property
    def accounted(self) -> bool:
        return self.hydrated + self.gap_backed >= self.required


class StreamFacts(BaseModel):
    """Counters of one stream; snapshotted with its checkpoints so a retry resumes them."""

    stream: str
    emitted: int = 0
    collected: int = 0
    rejected: int = 0
    skipped_by_reason: dict[str, int] = Field(default_factory=dict)
    non_informational_skips: int = 0
    gaps_opened: int = 0
    gaps_retryable: int = 0


class Violation(BaseModel):
    kind: str
    line_no: int
    detail: str


class CollectFacts(BaseModel):
    """Everything the collect activity observed, as counts. Never records, never cursors."""

    attempt: int = 1
    done_status: str | None = None
    done_error_code: str | None = None
    done_error_retryable: bool = False
    exit_code: int | None = None
    cancelled: bool = False
    records_emitted: int = 0
    records_durable: int = 0
    records_rejected: int = 0
    lines_quarantined: int = 0
    violations: list[Violation] = Field(default_factory=list, description="first few only")
    violation_count: int = 0
    streams: dict[str, StreamFacts] = Field(default_factory=dict)
    checkpoints: dict[str, CheckpointFact] = Field(default_factory=dict)
    coverage: dict[str, CoverageFact] = Field(default_factory=dict)
    gaps_opened: int = 0
    gaps_retryable_opened: int = 0
    non_informational_skips: int = 0
    gaps_recovered: int = 0
    interactions: int = 0
    runtime_error: str | None = None

    @property
    def violated(self) -> bool:
        return self.violation_count > 0


class StreamCommit(BaseModel):
    """How one stream's checkpoint fared. `committed` means its latest staged checkpoint
    committed; `earlier_committed` that an earlier proven one did while the latest could not."""

    stream: str
    committed: bool
    earlier_committed: bool = False
    bytes: int = 0
    reason: str | None = None
    message: str | None = None


class CommitResult(BaseModel):
    streams: list[StreamCommit] = Field(default_factory=list)
    checkpoint_gaps_opened: int = 0
    checkpoint_gaps_recovered: int = 0


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


class PlanInput(BaseModel):
    run: RunInput
    facts: CollectFacts
    commit: CommitResult
    run_failed_retryably: bool = False


class RetryPlan(BaseModel):
    """The run's retry hints and where the connector's gap ledger stands after it."""

    hints: list[RetryHint] = Field(default_factory=list)
    gaps_opened: int = Field(default=0, description="gaps opened after collection (run-level)")
    gaps_open_total: int = 0
    gaps_open_by_stream: dict[str, int] = Field(default_factory=dict)


class StreamOutcome(BaseModel):
    stream: str
    collected: int
    considered: int | None = None
    covered: int | None = None
    checkpoint: str
    coverage: str
    gaps_open: int


class RunOutcome(BaseModel):
    """The outcome of one run, exactly the fields of DESIGN §3."""

    run_id: str
    connector: str
    trigger: Trigger
    mode: Mode
    status: RunStatus
    needs_retry: bool
    reason: str | None
    records_emitted: int
    records_durable: int
    records_rejected: int
    buffered_records_dropped: int = 0
    state_streams_staged: int
    state_streams_committed: int
    checkpoint_commit_status: CommitStatus
    skipped_by_reason: dict[str, int]
    gaps_opened: int
    gaps_recovered: int
    gaps_open_total: int
    streams: list[StreamOutcome]
    retry_hints: list[RetryHint] = Field(default_factory=list)
    recovery_workflow_ids: list[str] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime


class RunFacts(BaseModel):
    """The inputs of the pure outcome derivation."""

    input: RunInput
    collect: CollectFacts
    commit: CommitResult
    plan: RetryPlan = Field(default_factory=RetryPlan)
    started_at: datetime
    finished_at: datetime
    cancelled: bool = False
    error: str | None = None


class CommitInput(BaseModel):
    run: RunInput
    facts: CollectFacts


class FinishInput(BaseModel):
    outcome: RunOutcome
    facts: CollectFacts


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


class StreamProgress(BaseModel):
    """Live counters of one stream (names and counts only)."""

    collected: int = 0
    emitted: int = 0
    skipped: int = 0
    total: int | None = Field(default=None, description="the connector's own estimate (PROGRESS.total)")
    checkpointed: bool = False


class LiveProgress(BaseModel):
    """What the collect activity reports to its workflow while it runs (a signal)."""

    attempt: int = 1
    records_emitted: int = 0
    records_durable: int = 0
    records_rejected: int = 0
    violations: int = 0
    skipped: int = 0
    checkpoints: int = 0
    stream: str | None = None
    streams: dict[str, StreamProgress] = Field(default_factory=dict)


class InteractionRequest(BaseModel):
    """A connector waits on its owner. The message itself stays in PostgreSQL: it may name a
    phone number or an account."""

    request_id: str
    kind: str
    expires_at: datetime


class InteractionStatus(StrEnum):
    """An interaction waits (`pending`) until the owner answers, declines or it times out."""

    PENDING = "pending"
    SUCCESS = "success"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


class InteractionClosed(BaseModel):
    request_id: str
    status: InteractionStatus


class RespondInput(BaseModel):
    """`pdpp-orch respond`: which request is answered. The answer's data never comes here."""

    request_id: str | None = Field(default=None, description="None: the one the run waits on")
    cancel: bool = False


class RespondResult(BaseModel):
    request_id: str
    kind: str
    expires_at: datetime


class RunProgress(BaseModel):
    """The `progress` query of a run."""

    run_id: str
    connector: str
    phase: str
    live: LiveProgress = Field(default_factory=LiveProgress)
    waiting: list[InteractionRequest] = Field(default_factory=list)
    status: str | None = Field(default=None, description="the outcome's status once it ended")


class ClaimInput(BaseModel):
    connector: str
    run_id: str


class ClaimResult(BaseModel):
    """None: the run holds its connector's lock; else the run it waits for."""

    holder: str | None = None
