"""A run: its input, what prepare learned, its outcome (DESIGN §3) and what derives it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from pdpp_orch.models.enums import CheckpointPolicy, CommitStatus, Mode, RunStatus, SandboxMode, Trigger
from pdpp_orch.models.facts import CollectFacts, CommitResult
from pdpp_orch.models.hints import RetryHint, RetryPlan
from pdpp_orch.models.scope import StreamScope


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
    registry: str | None = Field(
        default=None,
        description="the registry its starter read (Registry.describe): a worker reading another names both",
    )
    attempts_before: int = Field(
        default=0,
        description="collect attempts spent by earlier executions of collect in this run (a worker that "
        "vanished spent them); the attempt fence goes on from there",
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
    task_queue: str | None = Field(
        default=None, description="the connector runs only on workers of this queue ([connectors.NAME])"
    )
    placement_timeout_seconds: float = 3600.0


class ClaimInput(BaseModel):
    connector: str
    run_id: str


class ClaimResult(BaseModel):
    """None: the run holds its connector's lock; else the run it waits for."""

    holder: str | None = None


class ResolveInput(BaseModel):
    """Input of ResolveConnectorWorkflow: can a worker run this connector, with these streams?"""

    connector: str
    streams: list[str] = Field(default_factory=list)


class Resolution(BaseModel):
    """What a worker made of a connector: `problem` is None when it can run it."""

    worker: str = Field(description="the worker's identity (pid@host)")
    registry: str | None = Field(default=None, description="the registry it reads (None: unreadable)")
    problem: str | None = None


class StreamOutcome(BaseModel):
    stream: str
    collected: int
    considered: int | None = None
    covered: int | None = None
    checkpoint: str
    coverage: str
    gaps_open: int
    records_missing_estimate: int = Field(
        default=0, description="open item gaps, keys the coverage left unaccounted, an unfinished total"
    )
    continues: bool = Field(default=False, description="more is planned for the next run (a continuation)")


class Continuation(BaseModel):
    """A runtime-owned continuation of a stream, as the connector reported it: the bounded page
    (`slice_start`..`slice_end` of `boundary`) it finished, `covered` of `considered` items, and
    that more remains for its next run. Cursor-like: only the outcome stored in PostgreSQL
    carries it (Temporal history has `StreamOutcome.continues`)."""

    stream: str
    reason: str
    boundary: str
    slice_start: int
    slice_end: int
    considered: int
    covered: int


class RunError(BaseModel):
    """Why a run did not succeed, in words a person can act on. In Temporal history `message`
    holds only our own words; the connector's (DONE.error.message, its stderr) are added where
    the outcome is stored in PostgreSQL."""

    kind: str
    message: str | None = None


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
    records_missing_estimate: int = 0
    error: RunError | None = None
    cancel_too_late: bool = Field(
        default=False, description="a cancel was requested once checkpoints had begun to commit"
    )
    build_id: str | None = Field(
        default=None, description="the Worker Versioning build that ran it (None: an unversioned worker)"
    )
    sandbox: SandboxMode | None = Field(
        default=None, description="how its connector was isolated: uid, userns, off (opted out)"
    )
    reported_by_reason: dict[str, int] = Field(
        default_factory=dict, description="reports on records that were kept: not misses"
    )
    recovery_action: str | None = Field(
        default=None, description="DONE.error.recovery_hint's action: what the connector says fixes it"
    )
    continuations: list[Continuation] = Field(
        default_factory=list, description="what each continuing stream did (PostgreSQL's copy only)"
    )


class RunFacts(BaseModel):
    """The inputs of the pure outcome derivation."""

    input: RunInput
    collect: CollectFacts
    commit: CommitResult
    plan: RetryPlan = Field(default_factory=RetryPlan)
    started_at: datetime
    finished_at: datetime
    cancelled: bool = False
    error: RunError | None = Field(default=None, description="what ended collection early, if anything")


class CommitInput(BaseModel):
    run: RunInput
    facts: CollectFacts


class FinishInput(BaseModel):
    outcome: RunOutcome
    facts: CollectFacts


class PlanInput(BaseModel):
    run: RunInput
    facts: CollectFacts
    commit: CommitResult
    run_failed_retryably: bool = False
