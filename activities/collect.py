"""The collect engine: run one connector process and stream what it says into the record store.

Reading and writing overlap: the reader parses lines into the current batch while a flusher
task writes the previous one. Batches, gaps and checkpoints go through one FIFO queue, so a
STATE is written only after every record before it is durable (DESIGN §2, condition 1).
Returns counts only (CollectFacts); records and cursors never leave this module except into
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from activities.process import ConnectorProcess, connector_env
from pdpp_orch import protocol
from pdpp_orch.manifest import Manifest
from pdpp_orch.models import (
    CheckpointFact,
    CollectFacts,
    CoverageFact,
    InteractionClosed,
    InteractionRequest,
    LiveProgress,
    Mode,
    RecoveryClass,
    RunInput,
    StreamFacts,
    StreamProgress,
    StreamScope,
    Violation,
)
from pdpp_orch.registry import ConnectorEntry
from pdpp_orch.store import (
    CheckpointWrite,
    Flush,
    GapRow,
    QuarantineRow,
    RefusedRecord,
    Store,
)

log = logging.getLogger(__name__)

BATCH_RECORDS = 20_000
BATCH_BYTES = 16 << 20
YIELD_EVERY_LINES = 64
FLUSH_INTERVAL_S = 1.0
EXCERPT_BYTES = 2048
MAX_VIOLATIONS_KEPT = 20
MAX_VIOLATIONS_BEFORE_KILL = 10_000
DONE_EXIT_GRACE_S = 10.0
# How often a quiet read loop looks at the clock and at whether the connector has exited.
WAKE_S = 1.0
MAX_EXCLUDED = 50_000
NO_STREAM = "*"
# An INTERACTION without timeout_seconds waits this long for its owner.
INTERACTION_TIMEOUT_S = 3600.0
MAX_INTERACTION_TIMEOUT_S = 7 * 24 * 3600.0
ANSWER_POLL_S = 0.5
# Live progress goes to the workflow as signals, and each costs four history events (the
# signal and the workflow task it wakes). After 2 s, then every 10 s, then a tenth of the time
# elapsed, at most every 5 min: a 20 s run adds 3 signals, an hour about 50, eight hours 130.
PROGRESS_FIRST_S = 2.0
PROGRESS_MIN_S = 10.0
PROGRESS_MAX_S = 300.0
_STREAM_FIELD = re.compile(rb'"stream"\s*:\s*"([^"\\]{1,128})"')


@dataclass
class _Coverage:
    """Latest DETAIL_COVERAGE of a child stream, with the keys it names."""

    fact: CoverageFact
    gap_keys: set[str] | None


class Collector:
    """One collect attempt of one run. Use `await Collector(...).run()`."""

    def __init__(
        self,
        store: Store,
        entry: ConnectorEntry,
        manifest: Manifest,
        run: RunInput,
        attempt: int,
        heartbeat: Callable[[dict[str, Any]], None],
        notify: Callable[[str, BaseModel], Awaitable[None]] | None = None,
    ):
        self.store = store
        self.entry = entry
        self.manifest = manifest
        self.run_input = run
        self.attempt = attempt
        self.heartbeat = heartbeat
        self.notify = notify
        all_streams = [s.name for s in manifest.streams]
        wanted = [s.name for s in run.streams] or all_streams
        self.scope = {s: manifest.stream(s) for s in wanted}
        self.pk = {name: spec.primary_key for name, spec in self.scope.items() if spec}
        self.facts = CollectFacts(attempt=attempt)
        self.line_no = 0
        self.seen_records = 0  # RECORDs seen in this attempt, for the DONE cross-check
        self.done_seen = False
        self.batch = Flush()
        self.batch_started = 0.0
        self.queue: asyncio.Queue[Flush | None] = asyncio.Queue(maxsize=1)
        self.flush_error: BaseException | None = None
        self.coverage: dict[str, _Coverage] = {}
        self.gap_keys: dict[str, set[str]] = {}
        self.proc: ConnectorProcess | None = None
        self.last_stream: str | None = None
        self.durable = 0
        self.try_copy = True
        # Records PostgreSQL refused (found at flush time), and each stream's last checkpoint
        # written to the run's resume point: what stays proven when a later one is taken back.
        self.refusals = 0
        self.flushing = False  # the flusher is writing a batch
        self.written: dict[str, tuple[int | None, int]] = {}
        # Hot-path counters as plain ints (pydantic attribute writes cost a microsecond each);
        # `_sync` copies them into `facts`.
        self.emitted_total = 0
        self.rejected_total = 0
        self.emitted: dict[str, int] = {}
        self.collected: dict[str, int] = {}
        max_run = min(run.max_run_seconds, entry.max_run_seconds or run.max_run_seconds)
        self.deadline = time.monotonic() + max_run
        # When the connector last wrote anything (or stopped waiting on its owner).
        self.quiet_since = time.monotonic()
        # Recovery: the gaps this run is served, and those it has not yet said anything about.
        self.served: list[dict[str, Any]] = []
        self.unreported: set[str] = set()
        self.served_keys: dict[tuple[str, str], str] = {}
        # Interactions waiting on the owner, and each stream's own estimate of its size.
        self.waiting: dict[str, asyncio.Task[None]] = {}
        self.answered: set[str] = set()
        self.totals: dict[str, int] = {}

    # -- facts helpers ----------------------------------------------------------------------

    def _sf(self, stream: str) -> StreamFacts:
        sf = self.facts.streams.get(stream)
        if sf is None:
            sf = self.facts.streams[stream] = StreamFacts(stream=stream)
        return sf

    def _sync(self) -> None:
        self.facts.records_emitted = self.emitted_total
        self.facts.records_rejected = self.rejected_total
        for name, n in self.emitted.items():
            self._sf(name).emitted = n
        for name, n in self.collected.items():
            self._sf(name).collected = n

    def _progress(self) -> dict[str, Any]:
        """The run's totals, for heartbeats and the `runs` row."""
        return {
            "attempt": self.attempt,
            "records_emitted": self.emitted_total,
            "records_durable": self.durable,
            "records_rejected": self.rejected_total,
            "violations": self.facts.violation_count,
            "stream": self.last_stream,
            "skipped": sum(sum(s.skipped_by_reason.values()) for s in self.facts.streams.values()),
            "checkpoints": sum(1 for c in self.facts.checkpoints.values() if c.proven_seq),
        }

    def _live(self) -> LiveProgress:
        """The totals plus each stream's counters, for the workflow's `progress` query."""
        self._sync()
        streams = {
            name: StreamProgress(
                collected=self.collected.get(name, 0),
                emitted=self.emitted.get(name, 0),
                skipped=sum(sf.skipped_by_reason.values()),
                total=self.totals.get(name),
                checkpointed=bool((cp := self.facts.checkpoints.get(name)) and cp.proven_seq),
            )
            for name, sf in self.facts.streams.items()
        }
        for name, total in self.totals.items():
            streams.setdefault(name, StreamProgress(total=total))
        return LiveProgress(**self._progress(), streams=streams)

    async def _signal(self, name: str, arg: BaseModel) -> None:
        if self.notify is not None:
            await self.notify(name, arg)

    def _violate(
        self,
        kind: str,
        detail: str,
        line: bytes | None = None,
        size: int = 0,
        line_no: int | None = None,
        batch: Flush | None = None,
    ) -> None:
        self.facts.violation_count += 1
        line_no = self.line_no if line_no is None else line_no
        quarantined = line is not None or bool(size)
        if len(self.facts.violations) < MAX_VIOLATIONS_KEPT:
            # Facts go into Temporal history: the detail of a line-borne violation quotes what
            # the connector wrote (a key, a stream name), so it stays in the quarantine table.
            shown = "see quarantine" if quarantined else detail[:300]
            self.facts.violations.append(Violation(kind=kind, line_no=line_no, detail=shown))
        if quarantined:
            self.facts.lines_quarantined += 1
            # PostgreSQL text cannot hold U+0000: the quarantine keeps a visible stand-in.
            excerpt = (line or b"")[:EXCERPT_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd")
            (batch or self.batch).quarantine.append(
                QuarantineRow(
                    line_no,
                    kind,
                    detail[:1000].replace("\x00", "\ufffd"),
                    size or len(line or b""),
                    excerpt,
                )
            )

    # -- resume ------------------------------------------------------------------------------

    def _restore(self, resume: dict[str, Any]) -> None:
        self.facts = facts_from_resume(resume, self.attempt)
        self.durable = self.facts.records_durable
        self.emitted_total = self.facts.records_emitted
        self.rejected_total = self.facts.records_rejected
        self.emitted = {n: sf.emitted for n, sf in self.facts.streams.items()}
        self.collected = {n: sf.collected for n, sf in self.facts.streams.items()}

    def _snapshot(self, stream: str) -> str:
        """The counters a resume from `stream`'s checkpoint restores: the stream and every
        stream whose checkpoint depends on it."""
        self._sync()
        family = {stream} | self._descendants(stream)
        snap = {
            "streams": {n: self.facts.streams[n].model_dump() for n in family if n in self.facts.streams},
            "coverage": {n: self.facts.coverage[n].model_dump() for n in family if n in self.facts.coverage},
            "checkpoint": self.facts.checkpoints[stream].model_dump(),
        }
        return orjson.dumps(snap).decode()

    def _descendants(self, stream: str) -> set[str]:
        out: set[str] = set()
        todo = [stream]
        while todo:
            for child in self.manifest.children_of(todo.pop()):
                if child.name not in out:
                    out.add(child.name)
                    todo.append(child.name)
        return out

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> CollectFacts:
        await self.store.begin_attempt(self.run_input.run_id, self.attempt)
        state, resume = await self.store.start_state(self.entry.name, self.run_input.run_id, list(self.scope))
        excluded: dict[str, list[str]] = {}
        if self.run_input.mode is Mode.FORWARD:
            excluded = await self.store.open_item_gaps(self.entry.name, list(self.scope), MAX_EXCLUDED)
        if self.run_input.lease_id:
            self.served = await self.store.leased_gaps(self.entry.name, self.run_input.lease_id)
            self.unreported = {g["gap_id"] for g in self.served if g["detail_locator"] is not None}
            self.served_keys = {(g["stream"], g["record_key"]): g["gap_id"] for g in self.served}
        self._restore(resume)
        self.written = {
            s: (cp.proven_seq, cp.proven_bytes) for s, cp in self.facts.checkpoints.items() if cp.proven_seq
        }
        scratch = None
        if self.entry.cwd is not None:
            workdir = self.entry.cwd
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = scratch = Path(tempfile.mkdtemp(prefix=f"pdpp-{self.entry.name}-"))
        try:
            env = connector_env(self.entry, workdir)
        except BaseException:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        proc = self.proc = ConnectorProcess(self.entry.command, env, workdir)
        flusher = asyncio.create_task(self._flusher())
        beat = asyncio.create_task(self._heartbeats())
        reporter = asyncio.create_task(self._reporter())
        try:
            await proc.start()
            await proc.send(orjson.dumps(self._start_message(state, excluded)))
            await self._read_all()
            await self._end_waits()
            await self._finish_process()
            await self._drain(flusher)
        except asyncio.CancelledError:
            # Cancelled by the operator (or the worker shutting down): end the connector, keep
            # every record it gave us, and leave the facts where the workflow can find them.
            self.facts.cancelled = True
            await self._end_waits()
            await proc.terminate()
            await self._drain(flusher)
            await self.store.save_facts(self.run_input.run_id, self.finalize().model_dump_json())
            raise
        finally:
            beat.cancel()
            reporter.cancel()
            if proc.proc is not None and proc.proc.returncode is None:
                await proc.terminate()
            proc.close_stdout()
            if not flusher.done():
                flusher.cancel()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        await proc.finish_stderr()
        self._end_checks()
        facts = self.finalize()
        await self.store.save_facts(self.run_input.run_id, facts.model_dump_json())
        return facts

    def _start_message(self, state: dict[str, Any], excluded: dict[str, list[str]]) -> dict[str, Any]:
        """START for this attempt. A forward run collects around the resources that open,
        retryable gaps already cover: those are their recovery's to fetch, and an upstream
        that keeps failing one channel must not fail every run (DESIGN §4, case C)."""
        streams = []
        for s in self.run_input.streams or [StreamScope(name=n) for n in self.scope]:
            item: dict[str, Any] = {"name": s.name}
            if s.time_range and (s.time_range.since or s.time_range.until):
                item["time_range"] = s.time_range.model_dump(exclude_none=True)
            if excluded.get(s.name):
                item["exclude_resources"] = excluded[s.name]
            resources = [g["record_key"] for g in self.served if g["stream"] == s.name]
            if resources:
                item["resources"] = resources
            streams.append(item)
        any_state = any(v is not None for v in state.values())
        start: dict[str, Any] = {
            "type": "START",
            "run_id": self.run_input.run_id,
            "collection_mode": "incremental" if any_state else "full_refresh",
            "scope": {"streams": streams},
            "state": state or None,
            "bindings": {},
        }
        if self.run_input.lease_id:
            start["detail_gaps"] = self.served
            # Detail gaps carry their locator and are drained alone; resource gaps (no locator)
            # are fetched by a run scoped to those resources. A retried attempt whose gaps were
            # all settled by the attempt before it has nothing to do: no forward walk either.
            start["recovery_only"] = all(g["detail_locator"] is not None for g in self.served)
        return start

    async def _read_all(self) -> None:
        assert self.proc is not None
        splitter = protocol.LineSplitter(self.entry.line_limit)
        stdout = self.proc.stdout
        self.quiet_since = time.monotonic()
        while True:
            timeout = min(self._time_left(), WAKE_S)
            if self.batch.records or self.batch.gaps or self.batch.quarantine:
                timeout = min(timeout, max(0.05, FLUSH_INTERVAL_S - (time.monotonic() - self.batch_started)))
            try:
                async with asyncio.timeout(timeout):  # unlike wait_for, no task per read
                    chunk = await stdout.read()
            except TimeoutError:
                if self._out_of_time():
                    return
                if self.proc.exited and not self.waiting:
                    # The connector is gone but something it started still holds stdout open:
                    # the conversation is over, and its leftovers die with it.
                    self.proc.reap_group()
                await self._cut()
                continue
            if not chunk:
                break
            self.quiet_since = time.monotonic()
            await self._lines(splitter.feed(chunk))
            if self.flush_error:
                raise self.flush_error
            if self._out_of_time():  # a connector that never pauses must still meet its deadline
                return
            if self.facts.violation_count > MAX_VIOLATIONS_BEFORE_KILL:
                self.facts.runtime_error = "too_many_protocol_violations"
                return
            if time.monotonic() - self.batch_started >= FLUSH_INTERVAL_S and not self.batch.empty():
                await self._cut()
        await self._lines(splitter.finish())

    def _time_left(self) -> float:
        stalls_at = self.quiet_since + self.entry.stall_timeout_seconds
        return max(0.01, min(self.deadline, stalls_at) - time.monotonic())

    def _out_of_time(self) -> bool:
        """Whether the run has used up its duration, or the connector has been silent for its
        stall timeout; either ends it. Time spent waiting on the owner counts for neither."""
        now = time.monotonic()
        if self.waiting:
            self.quiet_since = now
            return False
        if now >= self.deadline:
            self.facts.runtime_error = "max_run_duration_exceeded"
        elif now - self.quiet_since >= self.entry.stall_timeout_seconds:
            self.facts.runtime_error = "connector_stalled"
        return self.facts.runtime_error is not None

    async def _finish_process(self) -> None:
        assert self.proc is not None
        if self.facts.runtime_error:
            self.facts.exit_code = await self.proc.terminate()
            return
        code = await self.proc.wait(DONE_EXIT_GRACE_S if self.done_seen else 30.0)
        if code is None:
            code = await self.proc.terminate()
        self.proc.reap_group()
        self.facts.exit_code = code

    async def _drain(self, flusher: asyncio.Task[None]) -> None:
        await self._cut()
        await self.queue.put(None)
        await flusher
        if self.flush_error:
            raise self.flush_error

    # -- batching ----------------------------------------------------------------------------

    async def _cut(self) -> None:
        """Hand the current batch to the flusher (waits while one is already queued)."""
        if self.batch.empty():
            return
        await self.queue.put(self._take_batch())
        if self.flush_error:
            raise self.flush_error

    def _take_batch(self) -> Flush:
        batch, self.batch = self.batch, Flush()
        # COPY data made here, while the flusher's COPY before it streams into PostgreSQL.
        batch.seal(self.entry.name, self.run_input.run_id)
        self.batch_started = time.monotonic()
        return batch

    async def _flusher(self) -> None:
        while True:
            batch = await self.queue.get()
            if batch is None:
                return
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
        try:
            if self.refusals:
                self._drop_checkpoints(batch)
            self.durable += batch.accepted
            progress = self._progress()
            result = await self.store.flush(
                self.entry.name,
                self.run_input.run_id,
                self.attempt,
                batch,
                progress,
                try_copy=self.try_copy,
            )
            # After the first key that already existed, every batch goes through upsert.
            self.try_copy = self.try_copy and not result.conflicted
            self.facts.gaps_recovered += result.gaps_recovered
            if result.refused:
                late = self._refused(result.refused, batch)
                await self.store.flush(
                    self.entry.name, self.run_input.run_id, self.attempt, late, self._progress()
                )
            for cw in batch.checkpoints:
                self.written[cw.stream] = (cw.seq, cw.cursor_bytes)
        except BaseException as e:  # surfaced by the reader at its next step
            self.durable -= batch.accepted
            self.flush_error = e
            if isinstance(e, asyncio.CancelledError):
                raise

    def _refused(self, refused: list[RefusedRecord], batch: Flush) -> Flush:
        """Records PostgreSQL would not store: each a violation found at flush time, so the
        batch's checkpoint (after them) and every later one is unproven, as if found on reading.
        Returns their quarantine rows, to be written at once."""
        late = Flush()
        self.refusals += len(refused)
        self.durable -= len(refused)
        for r in refused:
            self.rejected_total += 1
            self._sf(r.stream).rejected += 1
            self.collected[r.stream] -= 1
            self._violate(
                r.kind,
                f"{r.detail} (stream {r.stream[:64]!r}, key {r.key[:64]!r})",
                r.data,
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
            cp = self.facts.checkpoints.get(cw.stream)
            if cw.seq > after and cp is not None:
                cp.proven_seq, cp.proven_bytes = self.written.get(cw.stream, (None, 0))
                cp.unproven_reason = "after_protocol_violation"
        batch.checkpoints = kept

    async def _heartbeats(self) -> None:
        interval = max(0.2, min(1.0, self.run_input.heartbeat_timeout_seconds / 4))
        while True:
            self.heartbeat(self._progress())
            await asyncio.sleep(interval)

    async def _reporter(self) -> None:
        """Send live progress to the workflow when it changed (a signal: counts and stream
        names only), ever less often as the run gets longer."""
        started = time.monotonic()
        last: LiveProgress | None = None
        delay = PROGRESS_FIRST_S
        while True:
            await asyncio.sleep(delay)
            delay = min(PROGRESS_MAX_S, max(PROGRESS_MIN_S, (time.monotonic() - started) / 10))
            live = self._live()
            if live != last:
                await self._signal("report_progress", live)
                last = live

    # -- one line ----------------------------------------------------------------------------

    async def _lines(self, items: list[bytes | protocol.LineError]) -> None:
        """Classify a chunk's lines in order. RECORDs, nearly every line, stay synchronous:
        one coroutine per chunk, not per line. Every few dozen lines it lets the event loop
        run, so the COPY of the batch before goes on streaming while this one is parsed."""
        for n, item in enumerate(items, 1):
            if n % YIELD_EVERY_LINES == 0:
                await asyncio.sleep(0)
            msg = self._take(item)
            if msg is None:
                continue
            assert isinstance(item, bytes)  # a LineError is never a message
            if msg["type"] == "RECORD":
                if self._record(msg, item):
                    await self._cut()
            else:
                await self._message(msg, item)

    def _take(self, item: bytes | protocol.LineError) -> dict[str, Any] | None:
        """Count the line and decode it; None when it is not a message to act on (a violation
        already recorded, a blank line, anything after DONE)."""
        self.line_no += 1
        if isinstance(item, protocol.LineError):
            self._violate(item.kind, item.detail, size=item.size)
            return None
        if len(item) < 8 and not item.strip():
            return None  # blank lines are framing noise, not messages
        msg = protocol.decode(item)
        if isinstance(msg, protocol.LineError):
            if msg.kind == "invalid_json":
                self._count_unreadable(item)
            self._violate(msg.kind, msg.detail, item)
            return None
        if self.done_seen:
            if msg["type"] == "RECORD":
                self.emitted_total += 1
                self.rejected_total += 1
            self._violate("message_after_done", f"{msg['type']} after DONE", item)
            return None
        return msg

    async def _message(self, msg: dict[str, Any], item: bytes) -> None:
        """Any message but RECORD."""
        t = msg["type"]
        err = protocol.check_fields(msg)
        if err:
            self._violate(err.kind, err.detail, item)
            return
        if t == "STATE":
            await self._state(msg, item)
        elif t == "SKIP_RESULT":
            self._skip(msg, item)
        elif t == "DETAIL_GAP":
            self._detail_gap(msg, item)
        elif t == "DETAIL_COVERAGE":
            self._detail_coverage(msg, item)
        elif t == "DETAIL_GAP_RECOVERED":
            self.batch.recovered_gap_ids.append(msg["gap_id"])
            self.unreported.discard(msg["gap_id"])
        elif t == "DETAIL_GAP_ATTEMPTED":
            self.unreported.discard(msg["gap_id"])  # the attempt is counted when the lease settles
        elif t == "PROGRESS":
            stream = msg.get("stream")
            if isinstance(stream, str) and stream in self.scope:
                self.last_stream = stream
                total = msg.get("total")
                if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
                    self.totals[stream] = total
        elif t == "INTERACTION":
            await self._interaction(msg)
        elif t == "DONE":
            self._done(msg)

    def _count_unreadable(self, item: bytes) -> None:
        """An unparseable RECORD still counts as emitted (and rejected); an unparseable STATE
        still counts as a staged checkpoint of its stream that could not be proven, so the
        outcome shows the loss instead of quietly committing an older cursor as if current."""
        head = item[:200]
        if b'"RECORD"' in head:
            self.emitted_total += 1
            self.rejected_total += 1
        elif b'"STATE"' in head:
            m = _STREAM_FIELD.search(item[:4096])
            stream = m.group(1).decode("utf-8", "replace") if m else None
            if stream in self.scope:
                assert stream is not None
                cp = self.facts.checkpoints.setdefault(stream, CheckpointFact(stream=stream))
                cp.staged += 1
                cp.unproven_reason = "invalid_state_line"

    def _in_scope(self, stream: Any, item: bytes) -> bool:
        if stream in self.scope and self.scope[stream] is not None:
            return True
        if isinstance(stream, str) and self.manifest.stream(stream) is not None:
            self._violate("out_of_scope_stream", f"stream {stream[:64]!r} was not requested", item)
        else:
            self._violate("unknown_stream", f"stream {str(stream)[:64]!r} is not in the manifest", item)
        return False

    def _record(self, msg: dict[str, Any], item: bytes) -> bool:
        """Take a RECORD; True when it filled the batch. (Nearly every line comes here: locals
        instead of repeated attribute lookups.)"""
        self.emitted_total += 1
        self.seen_records += 1
        stream = msg.get("stream")
        pk = self.pk.get(stream) if stream.__class__ is str else None  # in scope iff it has one
        if pk is None:
            self.rejected_total += 1
            self._in_scope(stream, item)  # says why
            return False
        assert isinstance(stream, str)
        emitted = self.emitted
        emitted[stream] = emitted.get(stream, 0) + 1
        key = protocol.record_key(msg, pk)
        if isinstance(key, protocol.LineError):
            self.rejected_total += 1
            self._sf(stream).rejected += 1
            self._violate(key.kind, key.detail, item)
            return False
        # Data PostgreSQL cannot store (U+0000) is rare enough to find when a flush is refused
        # (`_refused`); looking for it in every record here would cost more than parsing it.
        batch = self.batch
        records = batch.records
        records[(stream, key)] = (
            protocol.record_data(msg["data"]),
            msg.get("op") == "delete",
            self.line_no,
        )
        batch.accepted += 1
        batch.bytes += len(item)
        collected = self.collected
        collected[stream] = collected.get(stream, 0) + 1
        self.last_stream = stream
        if len(records) == 1:
            self.batch_started = time.monotonic()
        return len(records) >= BATCH_RECORDS or batch.bytes >= BATCH_BYTES

    async def _state(self, msg: dict[str, Any], item: bytes) -> None:
        stream = msg["stream"]
        if not self._in_scope(stream, item):
            return
        cursor_json = protocol.dumps(msg["cursor"])
        cp = self.facts.checkpoints.get(stream)
        if cp is None:
            cp = self.facts.checkpoints[stream] = CheckpointFact(stream=stream)
        cp.staged += 1
        reason = self._unproven_reason(stream)
        if reason:
            cp.unproven_reason = reason
            return
        cp.proven_seq = self.line_no
        cp.proven_bytes = len(cursor_json)
        cp.unproven_reason = None
        self.batch.checkpoints.append(
            CheckpointWrite(
                stream, self.line_no, cursor_json.decode(), len(cursor_json), self._snapshot(stream)
            )
        )
        # With the flusher idle the checkpoint is written at once, with the records before it.
        # While it writes, the batch keeps growing and the flusher takes it when done (group
        # commit): a connector checkpointing every 100 records then costs a transaction per
        # write, not one per checkpoint.
        if not self.flushing and self.queue.empty():
            await self._cut()

    def _unproven_reason(self, stream: str) -> str | None:
        """Why a STATE for `stream` cannot be proven now, or None (DESIGN §2)."""
        if self.facts.violation_count:
            return "after_protocol_violation"
        if self.facts.runtime_error:
            return "runtime_error"
        gated = self._descendants(stream)
        own = self.manifest.stream(stream)
        if own is not None and not own.parents:
            gated.add(stream)  # a list+detail lane in one stream gates its own checkpoint
        for child in gated:
            spec = self.manifest.stream(child)
            if child not in self.scope or spec is None:
                continue
            if spec.coverage_strategy != "parent_detail_accounting":
                continue
            cov = self.coverage.get(child)
            if cov is None or not cov.fact.accounted:
                return "coverage_unaccounted"
            if cov.gap_keys is not None and not cov.gap_keys <= self.gap_keys.get(child, set()):
                return "coverage_gaps_not_reported"
        return None

    def _skip(self, msg: dict[str, Any], item: bytes) -> None:
        stream = msg.get("stream") or NO_STREAM
        if stream != NO_STREAM and not self._in_scope(stream, item):
            return
        reason = msg.get("reason") or "unspecified"
        cls = self._classify(msg, item, reason, None, default_action=None)
        resources = [str(r) for r in msg.get("resource_ids") or []]
        count = len(resources) or 1
        sf = self._sf(stream)
        sf.skipped_by_reason[reason] = sf.skipped_by_reason.get(reason, 0) + count
        if cls is RecoveryClass.INFORMATIONAL:
            return
        sf.non_informational_skips += count
        not_before = self._not_before(msg)
        message = msg.get("message")
        error = str(message)[:500] if message else None
        time_range = msg.get("time_range")
        subjects: list[tuple[str, str, str | None]]
        if resources:
            subjects = [("item", r, None) for r in resources]
        elif isinstance(time_range, dict):
            subjects = [
                (
                    "range",
                    protocol.dumps(time_range, sort_keys=True).decode(),
                    _range_locator(msg.get("diagnostics")),
                )
            ]
        else:
            subjects = [("stream", reason, None)]
        for kind, subject, locator in subjects:
            self._gap(sf, GapRow(stream, kind, subject, reason, cls.value, locator, not_before, error), cls)

    def _classify(
        self,
        msg: dict[str, Any],
        item: bytes,
        reason: str,
        retryable: bool | None,
        default_action: str | None,
    ) -> RecoveryClass:
        """The recovery class of a miss, from its recovery_hint (a malformed one is a violation)."""
        action: str | None = None
        hint = msg.get("recovery_hint")
        if hint is not None:
            parsed = protocol.parse_recovery_hint(hint)
            if isinstance(parsed, protocol.LineError):
                self._violate(parsed.kind, parsed.detail, item)
            else:
                action, stated = parsed
                retryable = stated if stated is not None else retryable
        if action is None and retryable is not False:
            action = default_action
        return protocol.recovery_class(reason, action, retryable)

    def _gap(self, sf: StreamFacts, gap: GapRow, cls: RecoveryClass) -> None:
        self.batch.gaps.append(gap)
        sf.gaps_opened += 1
        if cls.runtime_retryable:
            sf.gaps_retryable += 1

    def _detail_gap(self, msg: dict[str, Any], item: bytes) -> None:
        stream = msg["stream"]
        if not self._in_scope(stream, item):
            return
        reason = msg.get("reason") or "unspecified"
        # A DETAIL_GAP is a retryable miss unless it says otherwise.
        cls = self._classify(msg, item, reason, msg.get("retryable"), default_action="retry_by_runtime")
        raw_key = msg.get("record_key")
        key = raw_key if isinstance(raw_key, str) else protocol.dumps(raw_key).decode() if raw_key else None
        self.unreported.discard(str(msg.get("gap_id")))
        if key is not None:
            self.unreported.discard(self.served_keys.get((stream, key), ""))
        locator = msg.get("detail_locator")
        subject = key or protocol.dumps(locator, sort_keys=True).decode()
        sf = self._sf(stream)
        sf.skipped_by_reason[reason] = sf.skipped_by_reason.get(reason, 0) + 1
        if key is not None:
            self.gap_keys.setdefault(stream, set()).add(key)
        last_error = msg.get("last_error")
        err_text = protocol.dumps(last_error).decode()[:500] if last_error is not None else None
        loc_json = protocol.dumps(locator).decode() if locator is not None else None
        if cls is not RecoveryClass.INFORMATIONAL:
            sf.non_informational_skips += 1
        self._gap(
            sf,
            GapRow(stream, "item", subject, reason, cls.value, loc_json, self._not_before(msg), err_text),
            cls,
        )

    def _detail_coverage(self, msg: dict[str, Any], item: bytes) -> None:
        stream = msg["stream"]
        if not self._in_scope(stream, item):
            return
        gap_raw = msg.get("gap_keys")
        gap_keys = (
            {k if isinstance(k, str) else protocol.dumps(k).decode() for k in gap_raw}
            if isinstance(gap_raw, list)
            else None
        )
        required = protocol.count_or_len(msg.get("required_keys"))
        hydrated = protocol.count_or_len(msg.get("hydrated_keys"))
        if isinstance(msg.get("required_keys"), list) and isinstance(msg.get("hydrated_keys"), list):
            req = {str(k) for k in msg["required_keys"]}
            hyd = {str(k) for k in msg["hydrated_keys"]} & req
            hydrated = len(hyd)
            backed = len((gap_keys or set()) & (req - hyd))
        else:
            backed = protocol.count_or_len(gap_raw)
        fact = CoverageFact(
            stream=stream,
            state_stream=msg.get("state_stream"),
            required=required,
            hydrated=hydrated,
            gap_backed=backed,
            considered=msg.get("considered") if isinstance(msg.get("considered"), int) else None,
            covered=msg.get("covered") if isinstance(msg.get("covered"), int) else None,
        )
        self.coverage[stream] = _Coverage(fact, gap_keys)
        self.facts.coverage[stream] = fact

    async def _interaction(self, msg: dict[str, Any]) -> None:
        """The connector waits on its owner: make what came before durable, tell the workflow
        (kind and deadline only), and answer when `pdpp-orch respond` leaves the owner's answer
        in PostgreSQL or the wait times out. Reading goes on meanwhile."""
        self.facts.interactions += 1
        request_id = str(msg["request_id"])[:128]
        kind = str(msg.get("kind"))[:32]
        timeout = msg.get("timeout_seconds")
        if (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or not 0 < timeout < float("inf")
        ):
            timeout = INTERACTION_TIMEOUT_S
        timeout = min(float(timeout), MAX_INTERACTION_TIMEOUT_S)
        expires = datetime.now(UTC) + timedelta(seconds=float(timeout))
        await self._cut()
        await self._signal(
            "interaction_requested", InteractionRequest(request_id=request_id, kind=kind, expires_at=expires)
        )
        message = msg.get("message")
        await self.store.open_interaction(
            self.run_input.run_id,
            self.entry.name,
            request_id,
            kind,
            str(message)[:2000] if message is not None else None,
            expires,
        )
        self.waiting[request_id] = asyncio.create_task(
            self._await_answer(request_id, kind, expires, self.last_stream or NO_STREAM)
        )

    async def _await_answer(self, request_id: str, kind: str, expires: datetime, stream: str) -> None:
        assert self.proc is not None
        started = time.monotonic()
        try:
            status, data = await self._answer(request_id, expires)
        except asyncio.CancelledError:
            # The connector ended, or the run was cancelled, before an answer: this task is
            # ours, so it finishes the bookkeeping instead of propagating the cancel.
            status, data = "cancelled", None
        else:
            self.answered.add(request_id)
            response: dict[str, Any] = {
                "type": "INTERACTION_RESPONSE",
                "request_id": request_id,
                "status": status,
            }
            if status == "success" and data is not None:
                response["data"] = orjson.loads(data)
            try:
                await self.proc.send(orjson.dumps(response))
            except (BrokenPipeError, ConnectionResetError):
                log.warning("run %s: the connector exited before its answer", self.run_input.run_id)
                status = "cancelled"
        # Time spent waiting on a person does not count against max_run_seconds, nor as a stall.
        self.deadline += time.monotonic() - started
        self.quiet_since = time.monotonic()
        await self._close_interaction(request_id, kind, status, stream)
        self.waiting.pop(request_id, None)

    async def _answer(self, request_id: str, expires: datetime) -> tuple[str, str | None]:
        """Poll PostgreSQL for the owner's answer until it comes or the wait times out."""
        while True:
            answer = await self.store.take_interaction_response(self.run_input.run_id, request_id)
            if answer is not None:
                return answer
            if datetime.now(UTC) >= expires:
                return "timeout", None
            await asyncio.sleep(ANSWER_POLL_S)

    async def _close_interaction(self, request_id: str, kind: str, status: str, stream: str) -> None:
        await self.store.close_interaction(self.run_input.run_id, request_id, status)
        await self._signal("interaction_closed", InteractionClosed(request_id=request_id, status=status))
        if status == "success":
            return
        # Unanswered: what the connector could not collect without its owner is a gap.
        sf = self._sf(stream)
        reason = f"interaction_{kind}"
        sf.skipped_by_reason[reason] = sf.skipped_by_reason.get(reason, 0) + 1
        sf.non_informational_skips += 1
        self._gap(
            sf,
            GapRow(stream, "interaction", kind, reason, RecoveryClass.OWNER_ACTION.value),
            RecoveryClass.OWNER_ACTION,
        )

    async def _end_waits(self) -> None:
        """The connector ended (or the run was cancelled) while waiting on its owner."""
        tasks = list(self.waiting.items())
        for request_id, task in tasks:
            if request_id not in self.answered:
                task.cancel()
        await asyncio.gather(*(t for _, t in tasks), return_exceptions=True)

    def _done(self, msg: dict[str, Any]) -> None:
        assert self.proc is not None
        self.done_seen = True
        self.facts.done_status = msg["status"]
        err = msg.get("error") or {}
        self.facts.done_error_code = err.get("code")
        self.facts.done_error_retryable = bool(err.get("retryable"))
        if msg["records_emitted"] != self.seen_records:
            self._violate(
                "records_emitted_mismatch",
                f"DONE says {msg['records_emitted']} records, the runtime saw {self.seen_records}",
            )
        self.proc.close_stdin()  # the acknowledgement: the connector may now exit

    def _end_checks(self) -> None:
        if self.unreported and self.done_seen:
            # A connector served gaps must say what became of each; silence is not a clean run.
            self._violate(
                "served_gaps_unreported",
                f"{len(self.unreported)} served gap(s) got no DETAIL_GAP_RECOVERED, "
                "DETAIL_GAP_ATTEMPTED or DETAIL_GAP",
            )
        code = self.facts.exit_code
        status = self.facts.done_status
        if status is None or self.facts.runtime_error:
            return
        if (status == "succeeded") != (code == 0):
            self._violate("exit_code_mismatch", f"DONE {status} but exit code {code}")

    def _not_before(self, msg: dict[str, Any]) -> datetime | None:
        wait = protocol.retry_after_seconds(msg)
        return datetime.now(UTC) + timedelta(seconds=wait) if wait is not None else None

    def finalize(self) -> CollectFacts:
        self._sync()
        self.facts.records_durable = self.durable
        return totals(self.facts)


def _range_locator(diagnostics: Any) -> str | None:
    """The longest range the source accepted, which is how a range gap will be re-requested."""
    if not isinstance(diagnostics, dict):
        return None
    days = diagnostics.get("longest_accepted_days") or diagnostics.get("max_range_days")
    if isinstance(days, int) and not isinstance(days, bool) and days > 0:
        return orjson.dumps({"max_days": days}).decode()
    return None


def totals(f: CollectFacts) -> CollectFacts:
    """Aggregate per-stream counters into the run totals."""
    f.gaps_opened = sum(s.gaps_opened for s in f.streams.values())
    f.gaps_retryable_opened = sum(s.gaps_retryable for s in f.streams.values())
    f.non_informational_skips = sum(s.non_informational_skips for s in f.streams.values())
    return f


def facts_from_resume(resume: dict[str, Any], attempt: int) -> CollectFacts:
    """The run's counters as of each stream's latest proven checkpoint: where a retried
    attempt starts counting, and what is known for sure after a crash."""
    facts = CollectFacts(attempt=attempt)
    for stream, snap in resume.items():
        for name, sf in snap.get("streams", {}).items():
            facts.streams[name] = StreamFacts.model_validate(sf)
        for name, cov in snap.get("coverage", {}).items():
            facts.coverage[name] = CoverageFact.model_validate(cov)
        facts.checkpoints[stream] = CheckpointFact.model_validate(snap["checkpoint"])
    facts.records_emitted = sum(s.emitted for s in facts.streams.values())
    facts.records_rejected = sum(s.rejected for s in facts.streams.values())
    facts.records_durable = sum(s.collected for s in facts.streams.values())
    return totals(facts)
