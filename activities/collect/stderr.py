"""The connector's stderr into PostgreSQL as it comes (`pdpp-orch logs RUN_ID`): every second,
the lines written since the last save, numbered per attempt. The process keeps the last
STDERR_KEEP_LINES of them, and so does the table: a connector that writes faster than that in
a second loses the middle, never the end (the line numbers show the jump)."""

from __future__ import annotations

import asyncio
import logging

from activities.process import ConnectorProcess
from pdpp_orch.redaction import Redactor
from pdpp_orch.store import Store

log = logging.getLogger(__name__)

SAVE_EVERY_S = 1.0


class StderrLog:
    """Saves one attempt's stderr lines; `run` every second, `save` once more at the end."""

    def __init__(self, store: Store, run_id: str, attempt: int, proc: ConnectorProcess, redact: Redactor):
        self.store = store
        self.redact = redact  # the connector's resolved secrets never reach the table
        self.run_id = run_id
        self.attempt = attempt
        self.proc = proc
        self.saved = 0  # lines of the attempt saved so far (the last one's number)

    async def save(self) -> None:
        total = self.proc.stderr_lines
        tail = self.proc.stderr_tail
        new = min(total - self.saved, len(tail))
        if new <= 0:
            return
        lines = [self.redact(line.replace("\x00", "\ufffd")) for line in list(tail)[-new:]]
        await self.store.logs.append_stderr(self.run_id, self.attempt, total - new + 1, lines)
        self.saved = total

    async def run(self) -> None:
        while True:
            await asyncio.sleep(SAVE_EVERY_S)
            try:
                await self.save()
            except Exception as e:  # the database may be away: the lines wait for the next save
                log.debug("run %s: stderr not saved yet: %s", self.run_id, e)
