"""Every line a connector writes, classified: counted, decoded, checked, and handed to the
handler of its message type — RECORD here (by the rules of admission.py), STATE in states.py, the
misses in misses.py, INTERACTION in interactions.py, gap pages in pages.py, owner assistance in
assistance.py. A line that is not an acceptable message is a violation, quarantined."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from activities.collect.admission import Admission
from activities.collect.facts import Tally, count
from activities.collect.misses import Misses
from activities.collect.start import Served
from activities.collect.states import States
from activities.collect.writer import BATCH_BYTES, Writer
from pdpp_orch import protocol
from pdpp_orch.manifest import Manifest
from pdpp_orch.models import RecoveryClass
from pdpp_orch.store import Flush
from pdpp_orch.store.copydata import DELETE_STORED, TOMBSTONE, TOMBSTONE_DATA, UPSERT, Row

YIELD_EVERY_LINES = 64
OnPage = Callable[[dict[str, Any], bytes, protocol.LineError | None], Awaitable[None]]
OnMessage = Callable[[dict[str, Any], bytes], Awaitable[None]]
# An INTERACTION, and why it is malformed if it is (the connector waits for an answer either way).
OnInteraction = Callable[[dict[str, Any], protocol.LineError | None], Awaitable[None]]
_STREAM_FIELD = re.compile(rb'"stream"\s*:\s*"([^"\\]{1,128})"')


class Messages:
    """The read loop's per-line work for one collect attempt."""

    def __init__(
        self,
        manifest: Manifest,
        admission: Admission,
        tally: Tally,
        writer: Writer,
        served: Served | None,
        on_interaction: OnInteraction,
        on_done: Callable[[], None],
        reasons: dict[str, RecoveryClass] | None = None,
        on_page: OnPage | None = None,
        on_assistance: OnMessage | None = None,
    ):
        self.manifest = manifest
        self.admission = admission
        self.scope = admission.scope
        self.pk = admission.pk
        self.rules = admission.rules
        self.tally = tally
        self.writer = writer
        self.misses = Misses(tally, writer, self.in_scope, served, reasons)
        self.states = States(manifest, self.scope, tally, writer)
        self.on_interaction = on_interaction
        self.on_done = on_done
        self.on_page = on_page
        self.on_assistance = on_assistance
        self.done_seen = False

    async def lines(self, items: list[bytes | protocol.LineError]) -> None:
        """Classify a chunk's lines in order. RECORDs, nearly every line, stay synchronous:
        one coroutine per chunk, not per line. Every few dozen lines it lets the event loop
        run, so the COPY of the batch before goes on streaming while this one is parsed.

        A RECORD is read from its envelope (protocol.Envelope): its data is kept as the bytes
        it came as. Every other line, and a RECORD line that is not one, is decoded whole."""
        tally, writer, rules_of = self.tally, self.writer, self.rules
        emitted, collected = tally.emitted, tally.collected
        record_envelope, key_text, unset = protocol.record_envelope, protocol.key_text, msgspec.UNSET
        for n, item in enumerate(items, 1):
            if n % YIELD_EVERY_LINES == 0:
                await asyncio.sleep(0)
            env = record_envelope(item) if item.__class__ is bytes else None
            if env is None:
                await self._decoded(item)
                continue
            assert isinstance(item, bytes)
            tally.line_no += 1
            stream, key = env.stream, env.key
            rules = rules_of.get(stream) if stream is not None else None
            if self.done_seen:
                self._after_done("RECORD", item)
                continue
            if (
                rules is None
                or not rules.single
                or key.__class__ is not str
                or env.op is not None
                or not key
                or not env.emitted_at
            ):
                if self._record(env, item):
                    await writer.cut()
                continue
            # The common case (RecordRules.key), inline: nearly every line of a run comes here.
            try:
                value = rules.values(env.data).f0
            except msgspec.DecodeError:
                value = None  # not an object: _record says so
            if value is None or not (value == key or value is unset or key_text(value) == key):
                if self._record(env, item):
                    await writer.cut()
                continue
            assert stream is not None and isinstance(key, str)
            tally.emitted_total += 1
            tally.seen_records += 1
            emitted[stream] = emitted.get(stream, 0) + 1
            batch = writer.batch
            records = batch.records
            records[(stream, key)] = (env.data, UPSERT, tally.line_no, item)
            batch.accepted += 1
            batch.bytes += len(item)
            collected[stream] = collected.get(stream, 0) + 1
            tally.last_stream = stream
            if batch.accepted == 1:
                writer.batch_started = time.monotonic()
            if len(records) >= writer.batch_records or batch.bytes >= BATCH_BYTES:
                await writer.cut()

    async def _decoded(self, item: bytes | protocol.LineError) -> None:
        """A line that is not a RECORD read from its envelope: decoded whole, and handled."""
        msg = self._take(item)
        if msg is None:
            return
        assert isinstance(item, bytes)  # a LineError is never a message
        if msg["type"] == "RECORD":
            if self._record_decoded(msg, item):
                await self.writer.cut()
        else:
            await self._message(msg, item)

    def _take(self, item: bytes | protocol.LineError) -> dict[str, Any] | None:
        """Count the line and decode it; None when it is not a message to act on (a violation
        already recorded, a blank line, anything after DONE)."""
        tally = self.tally
        tally.line_no += 1
        if isinstance(item, protocol.LineError):
            self.writer.violate(item.kind, item.detail, size=item.size)
            return None
        if len(item) < 8 and not item.strip():
            return None  # blank lines are framing noise, not messages
        msg = protocol.decode(item)
        if isinstance(msg, protocol.LineError):
            if msg.kind == "invalid_json":
                self._count_unreadable(item)
            self.writer.violate(msg.kind, msg.detail, item)
            return None
        if self.done_seen:
            self._after_done(msg["type"], item)
            return None
        return msg

    def _after_done(self, msg_type: str, item: bytes) -> None:
        if msg_type == "RECORD":
            self.tally.emitted_total += 1
            self.tally.rejected_total += 1
        self.writer.violate("message_after_done", f"{msg_type} after DONE", item)

    async def _message(self, msg: dict[str, Any], item: bytes) -> None:
        """Any message but RECORD."""
        t = msg["type"]
        err = protocol.check_fields(msg)
        if t == "DETAIL_GAPS_PAGE_REQUEST" and self.on_page is not None:
            await self.on_page(msg, item, err)  # answered even when malformed: the connector waits
            return
        if err:
            self.writer.violate(err.kind, err.detail, item)
            if t == "INTERACTION":
                await self.on_interaction(msg, err)  # answered (refused): the connector waits
            return
        if t == "STATE":
            if self.in_scope(msg["stream"], item):
                await self.states.state(msg)
        elif t == "INTERACTION":
            await self.on_interaction(msg, None)
        elif t in ("ASSISTANCE", "ASSISTANCE_STATUS"):
            if self.on_assistance is not None:
                await self.on_assistance(msg, item)
        else:
            self._note(t, msg, item)

    def _note(self, t: str, msg: dict[str, Any], item: bytes) -> None:
        """The messages handled without waiting on anything."""
        if t == "SKIP_RESULT":
            self.misses.skip(msg, item)
        elif t == "DETAIL_GAP":
            self.misses.detail_gap(msg, item)
        elif t == "DETAIL_COVERAGE":
            self.misses.detail_coverage(msg, item)
        elif t == "DETAIL_GAP_RECOVERED":
            self.misses.recovered(msg)
        elif t == "DETAIL_GAP_ATTEMPTED":
            self.misses.attempted(msg)
        elif t == "PROGRESS":
            self._progress(msg)
        elif t == "DONE":
            self._done(msg, item)

    def in_scope(self, stream: Any, item: bytes) -> bool:
        """Whether `stream` was requested; if not, a violation saying why, but for a stream a
        recovery run keeps only the records of (admission.py): that line is counted and left."""
        if stream.__class__ is str and self.scope.get(stream) is not None:
            return True
        if stream.__class__ is str and stream in self.admission.outside:
            self.tally.facts.lines_outside_scope += 1
            return False
        if isinstance(stream, str) and self.manifest.stream(stream) is not None:
            self.writer.violate("out_of_scope_stream", f"stream {stream[:64]!r} was not requested", item)
        else:
            self.writer.violate("unknown_stream", f"stream {str(stream)[:64]!r} is not in the manifest", item)
        return False

    def _record(self, env: protocol.Envelope, item: bytes) -> bool:
        """Take a RECORD; True when it filled the batch. (Nearly every line comes here: locals
        instead of repeated attribute lookups.)"""
        tally = self.tally
        tally.emitted_total += 1
        tally.seen_records += 1
        stream = env.stream
        rules = self.rules.get(stream) if stream is not None else None  # in scope iff it has them
        if rules is None:
            tally.rejected_total += 1
            self.in_scope(stream, item)  # says why
            return False
        assert stream is not None
        emitted = tally.emitted
        emitted[stream] = emitted.get(stream, 0) + 1
        key = rules.key(env)
        if key.__class__ is not str:
            return self._reject(stream, key, item)  # type: ignore[arg-type]
        assert isinstance(key, str)
        # What PostgreSQL cannot store (U+0000, invalid jsonb) is rare enough to find when a
        # flush is refused (Writer._refused); looking for it here would cost more than reading.
        batch = self.writer.batch
        records = batch.records
        if env.op is None:
            records[(stream, key)] = (env.data, UPSERT, tally.line_no, item)
        else:
            self._delete(records, (stream, key), item)
        return self._taken(stream, batch, item)

    def _record_decoded(self, msg: dict[str, Any], item: bytes) -> bool:
        """Take a RECORD decoded whole (its envelope could not be read); True when it filled
        the batch."""
        tally = self.tally
        tally.emitted_total += 1
        tally.seen_records += 1
        stream = msg.get("stream")
        pk = self.pk.get(stream) if stream.__class__ is str else None  # in scope iff it has one
        if pk is None:
            tally.rejected_total += 1
            self.in_scope(stream, item)  # says why
            return False
        assert isinstance(stream, str)
        tally.emitted[stream] = tally.emitted.get(stream, 0) + 1
        key = protocol.record_key(msg, pk)
        data = msg.get("data")
        window = self.admission.window(stream)
        if window is not None and isinstance(data, dict) and isinstance(key, str) and msg.get("op") is None:
            key = window.check(data.get(window.field)) or key
        if isinstance(key, protocol.LineError):
            return self._reject(stream, key, item)
        records = self.writer.batch.records
        if msg.get("op") == "delete":
            self._delete(records, (stream, key), item)
        else:
            records[(stream, key)] = (protocol.record_data(msg.get("data")), UPSERT, self.tally.line_no, item)
        return self._taken(stream, self.writer.batch, item)

    def _delete(self, records: dict[tuple[str, str], Row], k: tuple[str, str], item: bytes) -> None:
        """A delete is a tombstone: the key and when, never the data (DESIGN §14). Of a key this
        batch wrote, the tombstone is written; of any other, the stored record is marked, and a
        key never stored stays so (as in the reference)."""
        prev = records.get(k)
        kind = TOMBSTONE if prev is not None and prev[1] != DELETE_STORED else DELETE_STORED
        records[k] = (TOMBSTONE_DATA, kind, self.tally.line_no, item)

    def _reject(self, stream: str, err: protocol.LineError, item: bytes) -> bool:
        self.tally.rejected_total += 1
        self.tally.stream(stream).rejected += 1
        self.writer.violate(err.kind, err.detail, item)
        return False

    def _taken(self, stream: str, batch: Flush, item: bytes) -> bool:
        """Count an accepted RECORD; True when it filled the batch."""
        tally = self.tally
        batch.accepted += 1
        batch.bytes += len(item)
        collected = tally.collected
        collected[stream] = collected.get(stream, 0) + 1
        tally.last_stream = stream
        if batch.accepted == 1:
            self.writer.batch_started = time.monotonic()
        return len(batch.records) >= self.writer.batch_records or batch.bytes >= BATCH_BYTES

    def _progress(self, msg: dict[str, Any]) -> None:
        """PROGRESS: which stream the connector is on, and its own estimate of the total."""
        stream = msg.get("stream")
        if isinstance(stream, str) and stream in self.scope:
            self.tally.last_stream = stream
            total = count(msg.get("total"))
            if total is not None:
                self.tally.totals[stream] = total

    def _done(self, msg: dict[str, Any], item: bytes) -> None:
        """DONE: the connector's last word, cross-checked against what the runtime saw. Its
        error's recovery_hint says who or what can fix the failure (a malformed one is a
        violation, and the rest of DONE still counts)."""
        self.done_seen = True
        facts = self.tally.facts
        facts.done_status = msg["status"]
        err = msg.get("error") or {}
        facts.done_error_code = err.get("code")
        facts.done_error_retryable = bool(err.get("retryable"))
        if err.get("recovery_hint") is not None:
            hint = protocol.parse_recovery_hint(err["recovery_hint"])
            if isinstance(hint, protocol.LineError):
                self.writer.violate(hint.kind, f"DONE.error.{hint.detail}", item)
            else:
                action, retryable = hint
                facts.done_recovery_action = action
                facts.done_recovery_class = protocol.recovery_class(facts.done_error_code, action, retryable)
        if err.get("message") is not None:
            self.tally.connector_error = self.tally.said(str(err["message"]), 1000).replace("\x00", "\ufffd")
        seen = self.tally.seen_records
        if msg["records_emitted"] != seen:
            self.writer.violate(
                "records_emitted_mismatch",
                f"DONE says {msg['records_emitted']} records, the runtime saw {seen}",
            )
        self.on_done()  # the acknowledgement: the connector may now exit

    def _count_unreadable(self, item: bytes) -> None:
        """An unparseable RECORD still counts as emitted (and rejected); an unparseable STATE
        still counts as a staged checkpoint of its stream that could not be proven, so the
        outcome shows the loss instead of quietly committing an older cursor as if current."""
        head = item[:200]
        if b'"RECORD"' in head:
            self.tally.emitted_total += 1
            self.tally.rejected_total += 1
        elif b'"STATE"' in head:
            m = _STREAM_FIELD.search(item[:4096])
            stream = m.group(1).decode("utf-8", "replace") if m else None
            if stream in self.scope:
                assert stream is not None
                cp = self.tally.checkpoint(stream)
                cp.staged += 1
                cp.unproven_reason = "invalid_state_line"
