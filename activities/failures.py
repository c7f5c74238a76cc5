"""A step that fails for good says so at once (DESIGN §11, §14). The database steps of a run are
retried without end (workflows/options.py DB_RETRY): right for an outage, which ends, and wrong
for a defect, which does not — a value that cannot be read or stored, or a result too large for
Temporal to take, would wedge the run in a step that a cancel does not interrupt. So every
activity runs inside `Honest`: such a failure becomes a non-retryable error naming its type
(never its text, which may quote a connector), the worker's log keeps the details, and the
workflow ends the run with a recorded outcome (workflows/endings.py `settled`)."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

log = logging.getLogger(__name__)

# Temporal refuses a payload over 2 MiB (the server's default limit.blobSize.error); what an
# encryption codec adds to one is far less than the margin.
PAYLOAD_LIMIT = 2 * 1024 * 1024 - 16 * 1024
# Errors a retry cannot heal: a defect, or data PostgreSQL refuses. Connection errors, OSError,
# timeouts and everything else stay retried (an outage delays an outcome, never replaces it).
DEFECTS = (
    ArithmeticError,
    AssertionError,
    AttributeError,
    LookupError,
    RecursionError,
    TypeError,
    ValueError,  # pydantic's ValidationError and UnicodeError included
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
# The collect step keeps its own few retries (workflows/options.py COLLECT_RETRY): a retry there
# runs the connector again, which may heal what went wrong. Its result is bounded all the same.
RETRIED_AS_IS = frozenset({"collect"})


class Honest(Interceptor):
    """Turn every activity's defect, and any result too large for Temporal, into a failure
    that is not retried."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)


class _Inbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        try:
            result = await super().execute_activity(input)
        except DEFECTS as e:
            if name in RETRIED_AS_IS:
                raise
            log.exception("activity %s failed for good", name)
            message = f"{name} failed: a defect, not retried (the worker's log has the details)"
            raise _for_good(message, type(e).__name__) from None
        size = sum(p.ByteSize() for p in activity.payload_converter().to_payloads([result]))
        if size > PAYLOAD_LIMIT:
            log.error("activity %s returned %d bytes, more than Temporal takes", name, size)
            message = f"the result of {name} is {size:,} bytes, more than Temporal takes"
            raise _for_good(message, "PayloadTooLarge")
        return result


def _for_good(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)
