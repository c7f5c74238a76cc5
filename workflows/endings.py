"""How a run's workflow ends and how its steps outlast a cancel: the Temporal status that
agrees with the outcome, and the failure that carries the outcome to whoever waits for it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError, CancelledError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from pdpp_orch.models import RunError, RunOutcome, RunStatus
    from pdpp_orch.outcome import CONFIG_ERROR

# The type of the failure a failed run's workflow ends with; its details hold the outcome.
RUN_FAILED = "RunFailed"
T = TypeVar("T")


async def whole(step: Awaitable[T]) -> T:
    """Run a step to its end even if the run is cancelled meanwhile: the cancel is on record
    (workflow.cancellation_reason) and has already been decided on, or comes too late."""
    task = asyncio.ensure_future(step)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise


def end(o: RunOutcome) -> None:
    """End the workflow the way Temporal would say it: Failed and Canceled where the outcome
    says so (the outcome in the failure's details; a cancel carries none, the `runs` row has it),
    Completed otherwise."""
    if o.status is RunStatus.FAILED:
        why = f" ({o.error.kind})" if o.error else ""
        raise ApplicationError(f"run {o.run_id} failed{why}", o, type=RUN_FAILED, non_retryable=True)
    if o.status is RunStatus.CANCELLED:
        raise CancelledError(f"run {o.run_id} cancelled")


def describe_error(err: BaseException | None, heartbeat_seconds: float | None = None) -> RunError:
    """What a failed activity tells of why (our own words: exception types and messages; a
    heartbeat timeout with its limit and the setting for it)."""
    if isinstance(err, ApplicationError) and err.type == "ConfigError":
        return RunError(kind=CONFIG_ERROR, message=err.message[:300])
    if isinstance(err, ApplicationError):
        return RunError(kind="runtime_error", message=f"{err.type or 'error'}: {err.message}"[:300])
    if isinstance(err, TimeoutError):
        if err.type is TimeoutType.HEARTBEAT and heartbeat_seconds is not None:
            return RunError(
                kind="timeout",
                message=f"no heartbeat from the collect activity for {heartbeat_seconds:,.0f} s"
                " (PDPP_HEARTBEAT_TIMEOUT) at its last attempt: its worker died, froze or lost the server",
            )
        return RunError(
            kind="timeout", message=f"{err.type.name.lower() if err.type else 'activity'} timeout"
        )
    return RunError(kind="runtime_error", message=type(err).__name__ if err else "unknown error")
