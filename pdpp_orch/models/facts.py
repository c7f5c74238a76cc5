"""What a collect attempt observed and how its checkpoints fared: counts, never records."""

from __future__ import annotations

from pydantic import BaseModel, Field

from pdpp_orch.models.enums import RecoveryClass, SandboxMode

# A run's facts hold an entry per stream of its scope: a run collects at most this many streams
# (the reference's manifests have at most 14), which keeps them within their bound whatever the
# connector says (activities/collect/facts.py FACTS_MAX_BYTES).
MAX_RUN_STREAMS = 256


class CheckpointFact(BaseModel):
    """A stream's checkpoint as seen during collection (the cursor itself stays in Postgres).

    `unproven_reason` is set when the latest staged STATE could not be proven; `proven_seq`
    may still point at an earlier proven one, which is what gets committed. `resume_only`: the
    run did not walk the stream forward (a recovery of items, resources or a time range), so its
    proven STATE is a resume point of its own attempts, never the stream's cursor."""

    stream: str
    staged: int = 0
    proven_seq: int | None = None
    proven_bytes: int = 0
    unproven_reason: str | None = None
    resume_only: bool = False


class CoverageFact(BaseModel):
    stream: str
    state_stream: str | None = None
    required: int = 0
    hydrated: int = 0
    gap_backed: int = 0
    considered: int | None = None
    covered: int | None = None
    optional_skipped: int = 0  # keys the connector says it may leave out (optional_skip_keys)

    @property
    def accounted(self) -> bool:
        return self.hydrated + self.gap_backed + self.optional_skipped >= self.required


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
    total: int | None = Field(default=None, description="the connector's own estimate (PROGRESS.total)")
    continued: int = Field(
        default=0, description="runtime-owned continuations: a bounded page done, more planned (not a miss)"
    )
    reported_by_reason: dict[str, int] = Field(
        default_factory=dict, description="reports on records that were kept (not a miss)"
    )


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
    done_recovery_action: str | None = Field(
        default=None, description="DONE.error.recovery_hint's action: who or what can fix the failure"
    )
    done_recovery_class: RecoveryClass | None = Field(default=None, description="that hint's recovery class")
    exit_code: int | None = None
    cancelled: bool = False
    records_emitted: int = 0
    records_durable: int = 0
    records_rejected: int = 0
    lines_quarantined: int = 0
    lines_outside_scope: int = Field(
        default=0, description="recovery runs: lines of streams not asked for, other than records (left)"
    )
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
    sandbox: SandboxMode | None = Field(default=None, description="how the connector was isolated")
    runtime_limit_seconds: float | None = Field(
        default=None, description="the limit a connector_stalled / max_run / output_closed error passed"
    )

    @property
    def violated(self) -> bool:
        return self.violation_count > 0


class StreamCommit(BaseModel):
    """How one stream's checkpoint fared. `committed` means its latest staged checkpoint
    committed; `earlier_committed` that an earlier proven one did while the latest could not;
    `withheld` that it was not to commit by design (pdpp_orch.policy.WITHHELD), which is no miss."""

    stream: str
    committed: bool
    earlier_committed: bool = False
    withheld: bool = False
    bytes: int = 0
    reason: str | None = None
    message: str | None = None


class CommitResult(BaseModel):
    streams: list[StreamCommit] = Field(default_factory=list)
    checkpoint_gaps_opened: int = 0
    checkpoint_gaps_recovered: int = 0
