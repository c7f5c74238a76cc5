"""What a run waits on from its owner: which of its open interactions `pdpp-orch respond`
answers. Pure, so the update and its validator (which rejects a wrong answer before it enters
history) decide it the same way."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pdpp_orch.models import InteractionRequest


def answered(
    waiting: dict[str, InteractionRequest], request_id: str | None, run: str, phase: str
) -> InteractionRequest:
    """The request a response names (or the only one waiting); ValueError, in words for the
    owner, when there is none such."""
    if not waiting:
        raise ValueError(f"run {run} is not waiting on its owner (phase: {phase})")
    if request_id and request_id not in waiting:
        raise ValueError(
            f"run {run} is not waiting on request {request_id!r} (it waits on: {', '.join(waiting)})"
        )
    if not request_id and len(waiting) > 1:
        raise ValueError(f"run {run} waits on several requests; name one: {', '.join(waiting)}")
    return waiting[request_id] if request_id else next(iter(waiting.values()))
