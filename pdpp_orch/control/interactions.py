"""Answering a run that waits on its owner: the request is named through a Workflow Update
(`respond`, which checks the run waits on it); the answer itself goes to PostgreSQL, read once
by the run's collect activity and erased. It never enters Temporal history."""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from pdpp_orch.control import UsageError
from pdpp_orch.models import InteractionStatus, RespondInput, RespondResult
from pdpp_orch.store import Store

DELIVERY_WAIT_S = 30.0
POLL_S = 0.25


async def prompt(store: Store, run_id: str, request_id: str | None) -> str | None:
    """The prompt of the request being answered (to show the owner), if it has one."""
    pending = await store.interactions.find(run_id)
    return next((p.message for p in pending if request_id in (None, p.request_id)), None)


async def respond(
    store: Store,
    client: Client,
    run_id: str,
    request_id: str | None,
    answer_json: str | None,
    ttl_seconds: float,
) -> tuple[RespondResult, bool]:
    """Answer (or, with no answer, decline) the request; returns which request was answered
    and whether the connector took the answer within DELIVERY_WAIT_S."""
    cancel = answer_json is None
    try:
        accepted: RespondResult = await client.get_workflow_handle(run_id).execute_update(
            "respond", RespondInput(request_id=request_id, cancel=cancel), result_type=RespondResult
        )
    except WorkflowUpdateFailedError as e:
        raise UsageError(str(e.cause or e)) from None
    except RPCError as e:
        raise UsageError(f"cannot answer {run_id!r}: {e.message}") from None
    status = InteractionStatus.CANCELLED if cancel else InteractionStatus.SUCCESS
    if not await store.interactions.answer(run_id, accepted.request_id, status, answer_json, ttl_seconds):
        raise UsageError(f"request {accepted.request_id} of {run_id} is no longer waiting")
    for _ in range(int(DELIVERY_WAIT_S / POLL_S)):
        rows = [
            r
            for r in await store.interactions.find(run_id, pending_only=False)
            if r.request_id == accepted.request_id
        ]
        if rows and rows[0].status is not InteractionStatus.PENDING:
            return accepted, True
        await asyncio.sleep(POLL_S)
    return accepted, False
