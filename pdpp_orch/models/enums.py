"""The enums of the project: one spelling of every status, trigger, mode and class."""

from __future__ import annotations

from enum import StrEnum


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


class InteractionStatus(StrEnum):
    """An interaction waits (`pending`) until the owner answers, declines or it times out."""

    PENDING = "pending"
    SUCCESS = "success"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


class SandboxMode(StrEnum):
    """How a connector process was isolated (DESIGN §14)."""

    UID = "uid"  # the worker runs as root: a uid of the connector's own
    USERNS = "userns"  # a user namespace, with the worker's uid
    OFF = "off"  # the operator opted out: the connector could see what the worker sees


class RecoveryStep(StrEnum):
    """What a GapRecoveryWorkflow is doing (its `state` query)."""

    WAITING_NOT_BEFORE = "waiting_not_before"
    WAITING_BUDGET = "waiting_budget"
    BACKING_OFF = "backing_off"
    WAITING_LEASES = "waiting_leases"
    ASKING_BUDGET = "asking_budget"
    RECOVERING = "recovering"
    DONE = "done"


class RecoveryEnding(StrEnum):
    """How a GapRecoveryWorkflow ended, as it records itself in PostgreSQL: every gap settled,
    gave up with gaps open (a range that keeps failing), or cancelled (by whom: its reason)."""

    DONE = "done"
    GAVE_UP = "gave_up"
    CANCELLED = "cancelled"
