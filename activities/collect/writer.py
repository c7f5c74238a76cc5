"""The writing side of a collect attempt: batches handed to a flusher task through a queue of
one, so the reader parses the next batch while the one before streams into PostgreSQL, and a
STATE is written only after every record before it is durable (DESIGN §2, condition 1).

Group commit: a STATE closes its batch at once while nothing is being written; otherwise it
goes with the next write. Violations are recorded here too: a line-borne one is a quarantine
row in the batch of its line, and a record PostgreSQL refuses at flush time is one found late.
"""

from __future__ import annotations

import asyncio
import time

from activities.collect.facts import Tally
from pdpp_orch.store import CheckpointWrite, Flush, QuarantineRow, RefusedRecord, Store

BATCH_RECORDS = 20_000
BATCH_BYTES = 16 << 20
# The first batches of an attempt are smaller (doubling up to BATCH_RECORDS), so that
# PostgreSQL starts writing while the rest is read instead of waiting for a whole batch.
FIRST_BATCH_RECORDS = 2_000
FLUSH_INTERVAL_S = 1.0
EXCERPT_BYTES = 2048


class Writer:
    """Batches of one collect attempt, and the flusher task that writes them in order."""

    def __init__(self, store: Store, connector: str, run_id: str, attempt: int, tally: Tally):
        self.store = store
        self.connector = connector
        self.run_id = run_id
        self.attempt = attempt
        self.tally = tally
        self.batch = Flush()
        self.batch_started = 0.0
        self.batch_records = FIRST_BATCH_RECORDS  # records that fill the current batch
        self.queue: asyncio.Queue[Flush | None] = asyncio.Queue(maxsize=1)
        self.flush_error: BaseException | None = None
        self.flushing = False  # the flusher is writing a batch
        self.try_copy = True
        self.closing = False  # the flusher was told to stop after what it has
        # Records PostgreSQL refused (found at flush time), and each stream's last checkpoint
        # written to the run's resume point: what stays proven when a later one is taken back.
        self.refusals = 0
        self.written: dict[str, tuple[int | None, int]] = {}

    # -- violations ----------------------------------------------------------------------------

    def violate(
        self,
        kind: str,
        detail: str,
        line: bytes | None = None,
        size: int = 0,
        line_no: int | None = None,
        batch: Flush | None = None,
    ) -> None:
        """A protocol violation; with its `line` (or the `size` of a line too long to keep), the
        line is quarantined, truncated, in the batch it belongs to."""
        line_no = self.tally.line_no if line_no is None else line_no
        quarantined = line is not None or bool(size)
        self.tally.violation(kind, detail, line_no, quarantined)
        if not quarantined:
            return
        # PostgreSQL text cannot hold U+0000: the quarantine keeps a visible stand-in. The
        # connector's secrets are cut out of both (the detail may quote the line).
        redact = self.tally.redact
        excerpt = redact((line or b"")[:EXCERPT_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd"))
        detail = redact(detail[:1000].replace("\x00", "\ufffd"))
        (batch or self.batch).quarantine.append(
            QuarantineRow(line_no, kind, detail, size or len(line or b""), excerpt)
        )

    # -- batching ------------------------------------------------------------------------------

    def pending(self) -> bool:
        """Whether the current batch holds anything worth flushing on a timer."""
        b = self.batch
        return bool(b.records or b.gaps or b.quarantine)

    def due(self) -> bool:
        return time.monotonic() - self.batch_started >= FLUSH_INTERVAL_S and not self.batch.empty()

    def full(self) -> bool:
        return len(self.batch.records) >= self.batch_records or self.batch.bytes >= BATCH_BYTES

    def checkpoint(self, cw: CheckpointWrite) -> bool:
        """Stage a proven checkpoint; True when it should close its batch now (nothing is
        being written, so it costs no wait)."""
        self.batch.checkpoints.append(cw)
        return not self.flushing and self.queue.empty()

    async def cut(self) -> None:
        """Hand the current batch to the flusher (waits while one is already queued). The batch
        stays current until it is queued: a cancel while waiting loses none of it."""
        if self.batch.empty():
            return
        batch = self.batch
        await self.queue.put(batch)
        if self.batch is batch:
            self._take_batch()
        if self.flush_error:
            raise self.flush_error

    async def settle(self) -> None:
        """Cut the current batch and wait until the flusher has written it and everything before
        it: what the connector sent so far is durable when this returns."""
        await self.cut()
        await self.queue.join()
        if self.flush_error:
            raise self.flush_error

    def _take_batch(self) -> Flush:
        batch, self.batch = self.batch, Flush()
        self.batch_started = time.monotonic()
        if batch.records:
            self.batch_records = min(BATCH_RECORDS, self.batch_records * 2)
        return batch

    async def drain(self, flusher: asyncio.Task[None]) -> None:
        """Write what is left and wait for the flusher to finish. A cancel meanwhile does not
        stop the flusher, and drain may be called again after it (the cancel's own cleanup):
        what came after the flusher's last batch is then written here."""
        if not self.closing:
            await self.cut()
            await self.queue.put(None)
            self.closing = True
        await asyncio.shield(flusher)
        if not self.batch.empty() and not self.flush_error:
            self.flushing = True
            try:
                await self._write(self._take_batch())
            finally:
                self.flushing = False
        if self.flush_error:
            raise self.flush_error

    # -- the flusher ---------------------------------------------------------------------------

    async def flusher(self) -> None:
        while True:
            batch = await self.queue.get()
            if batch is None:
                self.queue.task_done()
                return
            try:
                await self._write_with_checkpoints(batch)
            finally:
                self.queue.task_done()

    async def _write_with_checkpoints(self, batch: Flush | None) -> None:
        while batch is not None:
            if not self.flush_error:
                self.flushing = True
                try:
                    await self._write(batch)
                finally:
                    self.flushing = False
            # Checkpoints that arrived during the write go now, with their records (the
            # reader is between two lines whenever this task runs).
            batch = None
            if self.queue.empty() and self.batch.checkpoints and not self.flush_error:
                batch = self._take_batch()

    async def _write(self, batch: Flush) -> None:
        tally = self.tally
        try:
            if self.refusals:
                self._drop_checkpoints(batch)
            tally.durable += batch.accepted
            result = await self.store.records.flush(
                self.connector, self.run_id, self.attempt, batch, tally.progress(), try_copy=self.try_copy
            )
            # After the first key that already existed, every batch goes through upsert.
            self.try_copy = self.try_copy and not result.conflicted
            tally.facts.gaps_recovered += result.gaps_recovered
            if result.refused:
                late = self._refused(result.refused, batch)
                await self.store.records.flush(
                    self.connector, self.run_id, self.attempt, late, tally.progress()
                )
            for cw in batch.checkpoints:
                self.written[cw.stream] = (cw.seq, cw.cursor_bytes)
        except BaseException as e:  # surfaced by the reader at its next step
            tally.durable -= batch.accepted
            self.flush_error = e
            if isinstance(e, asyncio.CancelledError):
                raise

    def _refused(self, refused: list[RefusedRecord], batch: Flush) -> Flush:
        """Records PostgreSQL would not store: each a violation found at flush time, so the
        batch's checkpoint (after them) and every later one is unproven, as if found on reading.
        Returns their quarantine rows, to be written at once."""
        tally = self.tally
        late = Flush()
        self.refusals += len(refused)
        tally.durable -= len(refused)
        for r in refused:
            tally.rejected_total += 1
            tally.stream(r.stream).rejected += 1
            tally.collected[r.stream] -= 1
            self.violate(
                r.kind,
                f"{r.detail} (stream {r.stream[:64]!r}, key {r.key[:64]!r})",
                r.line,
                line_no=r.line_no,
                batch=late,
            )
        self._drop_checkpoints(batch, after=min(r.line_no for r in refused))
        return late

    def _drop_checkpoints(self, batch: Flush, after: int = 0) -> None:
        """Take back the checkpoints staged as proven in `batch` past line `after` (the store
        wrote those before it): each stream keeps the last one written."""
        kept = [cw for cw in batch.checkpoints if cw.seq < after]
        for cw in kept:
            self.written[cw.stream] = (cw.seq, cw.cursor_bytes)
        for cw in batch.checkpoints:
            cp = self.tally.facts.checkpoints.get(cw.stream)
            if cw.seq > after and cp is not None:
                cp.proven_seq, cp.proven_bytes = self.written.get(cw.stream, (None, 0))
                cp.unproven_reason = "after_protocol_violation"
        batch.checkpoints = kept
