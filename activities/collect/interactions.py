"""INTERACTION: a connector waits on its owner. What came before is made durable, the
workflow is told (kind and deadline only), and the connector gets its INTERACTION_RESPONSE
when `pdpp-orch respond` leaves the owner's answer in PostgreSQL or the wait times out.
Reading goes on meanwhile; an interaction nobody answered is an `owner_action` gap."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel

from activities.collect.facts import Tally
from activities.collect.misses import Misses
from activities.collect.reader import Deadlines
from activities.collect.writer import Writer
from activities.process import ConnectorProcess
from pdpp_orch.models import InteractionClosed, InteractionRequest, InteractionStatus
from pdpp_orch.policy import NO_STREAM
from pdpp_orch.protocol import interaction_response
from pdpp_orch.store import Store

log = logging.getLogger(__name__)

# An INTERACTION without timeout_seconds waits this long for its owner.
INTERACTION_TIMEOUT_S = 3600.0
MAX_INTERACTION_TIMEOUT_S = 7 * 24 * 3600.0
# Each INTERACTION is a signal and its details in the run's history, and a wait on the owner:
# an attempt asks at most this many; any further one is answered `cancelled` at once and is an
# unanswered interaction like any other (an owner_action gap).
MAX_INTERACTIONS = 20
ANSWER_POLL_S = 0.5

Notify = Callable[[str, BaseModel], Awaitable[None]]


def _timeout(value: Any) -> float:
    """`timeout_seconds` as given when it is a sensible number of seconds, else the default."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < float("inf"):
        return INTERACTION_TIMEOUT_S
    return min(float(value), MAX_INTERACTION_TIMEOUT_S)


class Interactions:
    """The interactions of one collect attempt, each waited on by a task of its own."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        connector: str,
        proc: ConnectorProcess,
        tally: Tally,
        writer: Writer,
        misses: Misses,
        deadlines: Deadlines,
        notify: Notify,
    ):
        self.store = store
        self.run_id = run_id
        self.connector = connector
        self.proc = proc
        self.tally = tally
        self.writer = writer
        self.misses = misses
        self.deadlines = deadlines
        self.notify = notify
        self.waiting: dict[str, asyncio.Task[None]] = {}
        self.answered: set[str] = set()
        self._opened: dict[str, datetime] = {}

    async def request(self, msg: dict[str, Any]) -> None:
        """Handle an INTERACTION line."""
        self.tally.facts.interactions += 1
        request_id = str(msg["request_id"])[:128]
        kind = self.tally.said(str(msg.get("kind")), 32)
        if self.tally.facts.interactions > MAX_INTERACTIONS:
            response = interaction_response(request_id, InteractionStatus.CANCELLED, None, timedelta(0))
            await self.proc.send(orjson.dumps(response))
            self.misses.unanswered(self.tally.last_stream or NO_STREAM, kind)
            return
        self._opened[request_id] = datetime.now(UTC)
        expires = self._opened[request_id] + timedelta(seconds=_timeout(msg.get("timeout_seconds")))
        await self.writer.settle()
        await self.notify(
            "interaction_requested", InteractionRequest(request_id=request_id, kind=kind, expires_at=expires)
        )
        message = msg.get("message")
        await self.store.interactions.open(
            self.run_id,
            self.connector,
            request_id,
            kind,
            self.tally.said(str(message), 2000) if message is not None else None,
            expires,
        )
        self.waiting[request_id] = asyncio.create_task(
            self._await_answer(request_id, kind, expires, self.tally.last_stream or NO_STREAM)
        )

    async def refuse(self, msg: dict[str, Any]) -> None:
        """A malformed INTERACTION (a violation already) is answered `cancelled` at once when it
        has a request_id to answer, so the connector does not wait for an owner never asked."""
        request_id = msg.get("request_id")
        if not (isinstance(request_id, str) and request_id.strip()):
            return
        response = {
            "type": "INTERACTION_RESPONSE",
            "request_id": request_id,
            "status": InteractionStatus.CANCELLED.value,
            "error": {"code": "invalid_interaction", "message": "the runtime refused this INTERACTION"},
        }
        await self.proc.send(orjson.dumps(response))

    async def _await_answer(self, request_id: str, kind: str, expires: datetime, stream: str) -> None:
        started = time.monotonic()
        try:
            status, data = await self._answer(request_id, expires)
        except asyncio.CancelledError:
            # The connector ended, or the run was cancelled, before an answer: this task is
            # ours, so it finishes the bookkeeping instead of propagating the cancel.
            status, data = InteractionStatus.CANCELLED, None
        else:
            self.answered.add(request_id)
            response = interaction_response(request_id, status, data, expires - self._opened[request_id])
            if not await self.proc.send(orjson.dumps(response)):
                log.warning("run %s: the connector exited before its answer", self.run_id)
                status = InteractionStatus.CANCELLED
        self.deadlines.waited(time.monotonic() - started)
        await self._close(request_id, kind, status, stream)
        self.waiting.pop(request_id, None)

    async def _answer(self, request_id: str, expires: datetime) -> tuple[InteractionStatus, str | None]:
        """Poll PostgreSQL for the owner's answer until it comes or the wait times out."""
        while True:
            answer = await self.store.interactions.take_response(self.run_id, request_id)
            if answer is not None:
                return answer
            if datetime.now(UTC) >= expires:
                return InteractionStatus.TIMEOUT, None
            await asyncio.sleep(ANSWER_POLL_S)

    async def _close(self, request_id: str, kind: str, status: InteractionStatus, stream: str) -> None:
        await self.store.interactions.close(self.run_id, request_id, status)
        await self.notify("interaction_closed", InteractionClosed(request_id=request_id, status=status))
        if status is not InteractionStatus.SUCCESS:
            self.misses.unanswered(stream, kind)

    async def end_waits(self) -> None:
        """The connector ended (or the run was cancelled) while waiting on its owner."""
        tasks = list(self.waiting.items())
        for request_id, task in tasks:
            if request_id not in self.answered:
                task.cancel()
        await asyncio.gather(*(t for _, t in tasks), return_exceptions=True)
