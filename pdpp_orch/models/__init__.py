"""Pydantic models and enums shared by workflows, activities, the store and the CLI.

Everything here may travel through Temporal history, so it holds counts, sizes, enums and ids of
our own rows — never record data, cursors or upstream ids (DESIGN §5). One module per subject:
enums, scope (what a run collects), facts (what collection observed), hints (retry hints and
recoveries), progress (a run while it runs), runs (a run's input and outcome).
"""

from pdpp_orch.models.enums import (
    CheckpointPolicy,
    CommitStatus,
    GapKind,
    GapStatus,
    InteractionStatus,
    LiveStatus,
    Mode,
    RecoveryClass,
    RunStatus,
    Trigger,
)
from pdpp_orch.models.facts import (
    CheckpointFact,
    CollectFacts,
    CommitResult,
    CoverageFact,
    StreamCommit,
    StreamFacts,
    Violation,
)
from pdpp_orch.models.hints import (
    HintProgress,
    HintRef,
    HintScope,
    LeaseInput,
    RecoveryInput,
    RecoveryPolicy,
    RecoveryResult,
    ResourceRef,
    RetryHint,
    RetryPlan,
    SettleInput,
)
from pdpp_orch.models.progress import (
    AssistanceNotice,
    InteractionClosed,
    InteractionRequest,
    LiveProgress,
    RespondInput,
    RespondResult,
    RunProgress,
    StreamProgress,
)
from pdpp_orch.models.runs import (
    ClaimInput,
    ClaimResult,
    CommitInput,
    FinishInput,
    PlanInput,
    PreparedRun,
    RunFacts,
    RunInput,
    RunOutcome,
    StreamOutcome,
)
from pdpp_orch.models.scope import (
    StreamScope,
    TimeRange,
)

__all__ = [
    "AssistanceNotice",
    "CheckpointFact",
    "CheckpointPolicy",
    "ClaimInput",
    "ClaimResult",
    "CollectFacts",
    "CommitInput",
    "CommitResult",
    "CommitStatus",
    "CoverageFact",
    "FinishInput",
    "GapKind",
    "GapStatus",
    "HintProgress",
    "HintRef",
    "HintScope",
    "InteractionClosed",
    "InteractionRequest",
    "InteractionStatus",
    "LeaseInput",
    "LiveProgress",
    "LiveStatus",
    "Mode",
    "PlanInput",
    "PreparedRun",
    "RecoveryClass",
    "RecoveryInput",
    "RecoveryPolicy",
    "RecoveryResult",
    "ResourceRef",
    "RespondInput",
    "RespondResult",
    "RetryHint",
    "RetryPlan",
    "RunFacts",
    "RunInput",
    "RunOutcome",
    "RunProgress",
    "RunStatus",
    "SettleInput",
    "StreamCommit",
    "StreamFacts",
    "StreamOutcome",
    "StreamProgress",
    "StreamScope",
    "TimeRange",
    "Trigger",
    "Violation",
]
