"""How a run's workflow ends and how its steps outlast a cancel: the Temporal status that
agrees with the outcome, and the failure that carries the outcome to whoever waits for it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from pdpp_orch.models import RunError, RunOutcome, RunStatus
    from pdpp_orch.outcome import CONFIG_ERROR
    from workflows.patches import STEP_FAILED_FOR_GOOD

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


async def settled(step: Awaitable[T], instead: Callable[[], T]) -> tuple[T, RunError | None]:
    """`whole(step)`; or, when its activity failed for good (not retried: a defect, a result
    too large for Temporal, a configuration gone bad — an outage is retried until it ends),
    `instead()` and why, so that the run still ends with an outcome that says so."""
    try:
        return await whole(step), None
    except ActivityError as e:
        if not workflow.patched(STEP_FAILED_FOR_GOOD):
            raise
        return instead(), describe_error(e.cause)


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
        # Longer: it names files (the registries a worker and the run's starter read), and the
        # failure in history holds it whole anyway.
        return RunError(kind=CONFIG_ERROR, message=err.message[:1000])
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
