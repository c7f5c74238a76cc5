"""A run while it runs: live counts, and what it waits on its owner for."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from pdpp_orch.models.enums import InteractionStatus
from pdpp_orch.models.runs import RunOutcome


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

    def at_end(self, outcome: RunOutcome) -> LiveProgress:
        """These counters once the run has ended, as its outcome has them: the checkpoints it
        committed and each stream's records (the last live report can be seconds older)."""
        live = self.streams
        streams = {
            s.stream: live.get(s.stream, StreamProgress()).model_copy(update={"collected": s.collected})
            for s in outcome.streams
        }
        return self.model_copy(update={"checkpoints": outcome.state_streams_committed, "streams": streams})


class InteractionRequest(BaseModel):
    """A connector waits on its owner. The message itself stays in PostgreSQL: it may name a
    phone number or an account."""

    request_id: str
    kind: str
    expires_at: datetime


class AssistanceNotice(BaseModel):
    """A connector's notice to its owner (ASSISTANCE), or how it ended (ASSISTANCE_STATUS). It
    never blocks the run. The message stays in PostgreSQL: ids and enums only."""

    assistance_id: str
    owner_action: str = Field(description="none | act_elsewhere | provide_value | operate_attachment")
    progress_posture: str = Field(description="running | blocked | waiting_retry")
    status: str = Field(default="open", description="open | resolved | cancelled | timed_out | escalated")
    expires_at: datetime | None = None


# What an ASSISTANCE's owner_action asks of the owner, in words (its own message stays in
# PostgreSQL).
OWNER_ACTIONS = {
    "act_elsewhere": "act elsewhere (e.g. approve a sign-in in the provider's app)",
    "operate_attachment": "operate what the connector attached (e.g. a browser)",
    "provide_value": "provide a value",
    "none": "nothing (a notice)",
}


def owner_action_text(owner_action: str) -> str:
    return OWNER_ACTIONS.get(owner_action, owner_action)


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


class PlacementWait(BaseModel):
    """A run whose connector runs only on workers of one task queue, until one takes it."""

    task_queue: str
    since: datetime
    until: datetime = Field(description="then the run fails, worker_unavailable")


class RunProgress(BaseModel):
    """The `progress` query of a run."""

    run_id: str
    connector: str
    phase: str
    live: LiveProgress = Field(default_factory=LiveProgress)
    waiting: list[InteractionRequest] = Field(default_factory=list)
    assistance: list[AssistanceNotice] = Field(default_factory=list, description="open notices")
    status: str | None = Field(default=None, description="the outcome's status once it ended")
    build_id: str | None = Field(default=None, description="the Worker Versioning build running it")
    placement: PlacementWait | None = Field(
        default=None, description="waiting for a worker of the connector's task queue"
    )
