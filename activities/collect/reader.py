"""Reading a connector's stdout: chunk by chunk into lines, within the run's deadline and the
connector's stall timeout, flushing on a timer while the connector is quiet."""

from __future__ import annotations

import asyncio
import time

from activities.collect.facts import Tally
from activities.collect.messages import Messages
from activities.collect.writer import FLUSH_INTERVAL_S, Writer
from activities.process import ConnectorProcess
from pdpp_orch import protocol

MAX_VIOLATIONS_BEFORE_KILL = 10_000
DONE_EXIT_GRACE_S = 10.0
# How often a quiet read loop looks at the clock and at whether the connector has exited.
WAKE_S = 1.0


class Deadlines:
    """The run's deadline and the connector's stall clock. Time spent waiting on the owner
    counts for neither: a wait that ends moves the deadline on and restarts the stall clock."""

    def __init__(self, max_run_seconds: float, stall_timeout_seconds: float):
        self.deadline = time.monotonic() + max_run_seconds
        self.max_run = max_run_seconds
        self.stall_timeout = stall_timeout_seconds
        # When the connector last wrote anything (or stopped waiting on its owner).
        self.quiet_since = time.monotonic()

    def heard(self) -> None:
        self.quiet_since = time.monotonic()

    def waited(self, seconds: float) -> None:
        self.deadline += seconds
        self.quiet_since = time.monotonic()

    def time_left(self) -> float:
        stalls_at = self.quiet_since + self.stall_timeout
        return max(0.01, min(self.deadline, stalls_at) - time.monotonic())

    def exceeded(self) -> str | None:
        """`max_run_duration_exceeded` or `connector_stalled` once either limit has passed."""
        now = time.monotonic()
        if now >= self.deadline:
            return "max_run_duration_exceeded"
        if now - self.quiet_since >= self.stall_timeout:
            return "connector_stalled"
        return None


class Reader:
    """The read loop of one collect attempt."""

    def __init__(
        self,
        proc: ConnectorProcess,
        line_limit: int,
        messages: Messages,
        writer: Writer,
        tally: Tally,
        deadlines: Deadlines,
        waiting: dict[str, asyncio.Task[None]],
    ):
        self.proc = proc
        self.splitter = protocol.LineSplitter(line_limit)
        self.messages = messages
        self.writer = writer
        self.tally = tally
        self.deadlines = deadlines
        self.waiting = waiting  # interactions still waiting on the owner

    async def read_all(self) -> None:
        """Until EOF, the deadline, a stall, or too many violations."""
        stdout = self.proc.stdout
        self.deadlines.heard()
        while True:
            try:
                async with asyncio.timeout(self._timeout()):  # unlike wait_for, no task per read
                    chunk = await stdout.read()
            except TimeoutError:
                if self._out_of_time():
                    return
                if self.proc.exited and not self.waiting:
                    # The connector is gone but something it started still holds stdout open:
                    # the conversation is over, and its leftovers die with it.
                    self.proc.reap_group()
                await self.writer.cut()
                continue
            if not chunk:
                break
            if await self._chunk(chunk):
                return
        await self.messages.lines(self.splitter.finish())

    def _timeout(self) -> float:
        timeout = min(self.deadlines.time_left(), WAKE_S)
        if self.writer.pending():
            since = time.monotonic() - self.writer.batch_started
            timeout = min(timeout, max(0.05, FLUSH_INTERVAL_S - since))
        return timeout

    async def _chunk(self, chunk: bytes) -> bool:
        """Handle one chunk of output; True when the run must end now."""
        self.deadlines.heard()
        await self.messages.lines(self.splitter.feed(chunk))
        if self.writer.flush_error:
            raise self.writer.flush_error
        if self._out_of_time():  # a connector that never pauses must still meet its deadline
            return True
        if self.tally.facts.violation_count > MAX_VIOLATIONS_BEFORE_KILL:
            self.tally.facts.runtime_error = "too_many_protocol_violations"
            return True
        if self.writer.due():
            await self.writer.cut()
        return False

    def _out_of_time(self) -> bool:
        """Whether the run has used up its duration, or the connector has been silent for its
        stall timeout; either ends it. Time waiting on the owner counts for neither."""
        if self.waiting:
            self.deadlines.heard()
            return False
        exceeded = self.deadlines.exceeded()
        if exceeded:
            self.tally.facts.runtime_error = exceeded
            limits = self.deadlines
            self.tally.facts.runtime_limit_seconds = (
                limits.max_run if exceeded == "max_run_duration_exceeded" else limits.stall_timeout
            )
        return self.tally.facts.runtime_error is not None

    async def finish_process(self, done_seen: bool) -> None:
        """Wait for the connector to exit after its output ended, or end it. One that closed
        its output without DONE gets its stall timeout to exit; still running then, it is
        ended, and the run says it closed its output (it did not exit)."""
        facts = self.tally.facts
        if facts.runtime_error:
            facts.exit_code = await self.proc.terminate()
            return
        code = await self.proc.wait(DONE_EXIT_GRACE_S if done_seen else self.deadlines.stall_timeout)
        if code is None:
            if not done_seen:
                facts.runtime_error = "connector_output_closed"
                facts.runtime_limit_seconds = self.deadlines.stall_timeout
            code = await self.proc.terminate()
        self.proc.reap_group()
        facts.exit_code = code
