"""STATE: a stream's checkpoint, staged, and proven when everything it depends on is durable
and accounted for (DESIGN §2); a proven one is written with the records before it."""

from __future__ import annotations

from typing import Any

from activities.collect.facts import Tally
from activities.collect.writer import Writer
from pdpp_orch import protocol
from pdpp_orch.manifest import Manifest, StreamSpec
from pdpp_orch.store import CheckpointWrite


class States:
    """The STATE handler of one collect attempt."""

    def __init__(self, manifest: Manifest, scope: dict[str, StreamSpec | None], tally: Tally, writer: Writer):
        self.manifest = manifest
        self.scope = scope
        self.tally = tally
        self.writer = writer

    async def state(self, msg: dict[str, Any]) -> None:
        """Stage a STATE of a stream in scope, and write it if it is proven."""
        stream = msg["stream"]
        cursor_json = protocol.dumps(msg.get("cursor"))
        cp = self.tally.checkpoint(stream)
        cp.staged += 1
        reason = self._unproven_reason(stream)
        if reason:
            cp.unproven_reason = reason
            return
        line_no = self.tally.line_no
        cp.proven_seq = line_no
        cp.proven_bytes = len(cursor_json)
        cp.unproven_reason = None
        write = CheckpointWrite(
            stream, line_no, cursor_json.decode(), len(cursor_json), self.tally.snapshot(stream)
        )
        # With the flusher idle the checkpoint is written at once, with the records before it.
        # While it writes, the batch keeps growing and the flusher takes it when done (group
        # commit): a connector checkpointing every 100 records then costs a transaction per
        # write, not one per checkpoint.
        if self.writer.checkpoint(write):
            await self.writer.cut()

    def _unproven_reason(self, stream: str) -> str | None:
        """Why a STATE for `stream` cannot be proven now, or None (DESIGN §2)."""
        facts = self.tally.facts
        if facts.violation_count:
            return "after_protocol_violation"
        if facts.runtime_error:
            return "runtime_error"
        gated = self.tally.descendants(stream)
        own = self.manifest.stream(stream)
        # A list+detail lane in one stream gates its own checkpoint once it reported its
        # coverage; without a declared parent, a report is not required (as in the reference,
        # whose manifests declare 14 such streams whose connectors need not send one).
        self_gated = own is not None and not own.parents and stream in self.tally.coverage
        if self_gated:
            gated.add(stream)
        for child in gated:
            spec = self.manifest.stream(child)
            if child not in self.scope or spec is None:
                continue
            if spec.coverage_strategy != "parent_detail_accounting":
                continue
            cov = self.tally.coverage.get(child)
            if cov is None or not cov.fact.accounted:
                return "coverage_unaccounted"
            if cov.gap_keys is not None and not cov.gap_keys <= self.tally.gap_keys.get(child, set()):
                return "coverage_gaps_not_reported"
        return None
