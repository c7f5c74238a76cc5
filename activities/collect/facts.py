"""What one collect attempt has observed so far, as counts (CollectFacts), and how a retried
attempt picks the counts up again from the run's resume points."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import orjson

from pdpp_orch import words
from pdpp_orch.manifest import Manifest, StreamSpec
from pdpp_orch.models import (
    CheckpointFact,
    CollectFacts,
    CoverageFact,
    LiveProgress,
    StreamFacts,
    StreamProgress,
    Violation,
)
from pdpp_orch.redaction import Redactor

MAX_VIOLATIONS_KEPT = 20
MAX_DETAIL_CHARS = 300
# What a run's facts can hold at most, serialized, whatever the connector says (fit() keeps them
# so; tests/unit/test_words.py builds the worst case): well inside Temporal's 2 MiB per payload,
# which a step's input holding the facts and the outcome must stay under.
FACTS_MAX_BYTES = 512 * 1024
# A count a connector gives (a total, a coverage) is kept up to PostgreSQL's bigint: JSON lets it
# write an integer of a million digits.
MAX_COUNT = 2**63 - 1


@dataclass
class Coverage:
    """Latest DETAIL_COVERAGE of a child stream, with the keys it names."""

    fact: CoverageFact
    gap_keys: set[str] | None


class Tally:
    """The attempt's counters. The hot ones are plain ints and dicts (a pydantic attribute
    write costs a microsecond); `sync` copies them into `facts`."""

    def __init__(self, manifest: Manifest, scope: dict[str, StreamSpec | None], attempt: int):
        self.manifest = manifest
        self.scope = scope
        self.attempt = attempt
        self.facts = CollectFacts(attempt=attempt)
        self.line_no = 0
        self.seen_records = 0  # RECORDs seen in this attempt, for the DONE cross-check
        self.durable = 0
        self.emitted_total = 0
        self.rejected_total = 0
        self.emitted: dict[str, int] = {}
        self.collected: dict[str, int] = {}
        self.last_stream: str | None = None
        # Each stream's own estimate of its size (PROGRESS.total).
        self.totals: dict[str, int] = {}
        self.coverage: dict[str, Coverage] = {}
        self.gap_keys: dict[str, set[str]] = {}
        # DONE.error.message: the connector's own words, kept in PostgreSQL only.
        self.connector_error: str | None = None
        # The connector's resolved secrets, cut out of whatever it says that is kept (the
        # collector sets it once it has resolved them).
        self.redact = Redactor()
        self.reason_pairs = 0  # (stream, reason) pairs counted, up to words.MAX_REASON_PAIRS
        # A recovery run that does not walk its streams forward: its STATEs only resume it
        # (the collector sets it from the lease, pdpp_orch.policy.walks_forward).
        self.resume_only = False

    def stream(self, name: str) -> StreamFacts:
        sf = self.facts.streams.get(name)
        if sf is None:
            sf = self.facts.streams[name] = StreamFacts(stream=name)
        return sf

    def checkpoint(self, name: str) -> CheckpointFact:
        """The stream's checkpoint fact, made at its first STATE."""
        cp = self.facts.checkpoints.get(name)
        if cp is None:
            cp = self.facts.checkpoints[name] = CheckpointFact(stream=name, resume_only=self.resume_only)
        return cp

    def said(self, text: str, limit: int) -> str:
        """What the connector said, as it is kept: its secrets cut out, at most `limit`
        characters (a secret cut in half by the bound included)."""
        return words.bounded(self.redact(text[: limit + 1024]), limit)

    def reason(self, text: str) -> str:
        """A connector's skip reason as facts, the ledger and history keep it."""
        return words.reason(self.said(text, words.MAX_REASON_CHARS + 1))

    def skipped(self, sf: StreamFacts, reason: str, count: int = 1) -> None:
        """Count a skip of `sf` for `reason` (already bounded: Tally.reason); past the run's
        MAX_REASON_PAIRS (stream, reason) pairs, under the stream's OTHER_REASONS."""
        self.reason_pairs = _count(sf.skipped_by_reason, reason, count, self.reason_pairs)

    def violation(self, kind: str, detail: str, line_no: int, quarantined: bool) -> None:
        """Count a violation; the first few go into the facts (and so into Temporal history)."""
        self.facts.violation_count += 1
        kept = self.facts.violations
        if len(kept) < MAX_VIOLATIONS_KEPT or line_no < kept[-1].line_no:
            # The detail of a line-borne violation quotes what the connector wrote (a key, a
            # stream name), so it stays in the quarantine table.
            shown = "see quarantine" if quarantined else self.said(detail, MAX_DETAIL_CHARS)
            # In line order: a record PostgreSQL refused is found after the lines read since.
            bisect.insort(kept, Violation(kind=kind, line_no=line_no, detail=shown), key=lambda v: v.line_no)
            del kept[MAX_VIOLATIONS_KEPT:]
        if quarantined:
            self.facts.lines_quarantined += 1

    def sync(self) -> None:
        self.facts.records_emitted = self.emitted_total
        self.facts.records_rejected = self.rejected_total
        for name, n in self.emitted.items():
            self.stream(name).emitted = n
        for name, n in self.collected.items():
            self.stream(name).collected = n
        for name, total in self.totals.items():
            self.stream(name).total = total

    def progress(self) -> dict[str, Any]:
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

    def live(self) -> LiveProgress:
        """The totals plus each stream's counters, for the workflow's `progress` query."""
        self.sync()
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
        return LiveProgress(**self.progress(), streams=streams)

    def restore(self, resume: dict[str, Any]) -> None:
        """Start counting where the run's latest proven checkpoints left off."""
        self.facts = facts_from_resume(resume, self.attempt)
        self.reason_pairs = _pairs(self.facts)
        self.durable = self.facts.records_durable
        self.emitted_total = self.facts.records_emitted
        self.rejected_total = self.facts.records_rejected
        self.emitted = {n: sf.emitted for n, sf in self.facts.streams.items()}
        self.collected = {n: sf.collected for n, sf in self.facts.streams.items()}

    def snapshot(self, stream: str) -> str:
        """The counters a resume from `stream`'s checkpoint restores: the stream and every
        stream whose checkpoint depends on it."""
        self.sync()
        family = {stream} | self.descendants(stream)
        facts = self.facts
        snap = {
            "streams": {n: facts.streams[n].model_dump() for n in family if n in facts.streams},
            "coverage": {n: facts.coverage[n].model_dump() for n in family if n in facts.coverage},
            "checkpoint": facts.checkpoints[stream].model_dump(),
        }
        return orjson.dumps(snap).decode()

    def descendants(self, stream: str) -> set[str]:
        out: set[str] = set()
        todo = [stream]
        while todo:
            for child in self.manifest.children_of(todo.pop()):
                if child.name not in out:
                    out.add(child.name)
                    todo.append(child.name)
        return out

    def finalize(self) -> CollectFacts:
        self.sync()
        self.facts.records_durable = self.durable
        return fit(totals(self.facts))


def totals(f: CollectFacts) -> CollectFacts:
    """Aggregate per-stream counters into the run totals."""
    f.gaps_opened = sum(s.gaps_opened for s in f.streams.values())
    f.gaps_retryable_opened = sum(s.gaps_retryable for s in f.streams.values())
    f.non_informational_skips = sum(s.non_informational_skips for s in f.streams.values())
    return f


def count(value: Any) -> int | None:
    """A count a connector gave, as the facts keep it: a non-negative integer up to MAX_COUNT,
    else None."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    return min(value, MAX_COUNT)


def _count(counts: dict[str, int], reason: str, n: int, pairs: int) -> int:
    """Add `n` skips for `reason` to one stream's `counts`, under OTHER_REASONS once the run
    counts MAX_REASON_PAIRS (stream, reason) pairs; returns the pairs counted now."""
    if reason not in counts and reason != words.OTHER_REASONS:
        if pairs >= words.MAX_REASON_PAIRS:
            reason = words.OTHER_REASONS
        else:
            pairs += 1
    counts[reason] = counts.get(reason, 0) + n
    return pairs


def _pairs(f: CollectFacts) -> int:
    return sum(1 for sf in f.streams.values() for r in sf.skipped_by_reason if r != words.OTHER_REASONS)


def fit(f: CollectFacts) -> CollectFacts:
    """The facts within their bounds whatever wrote them (facts an older worker saved too):
    reasons and details bounded, at most MAX_REASON_PAIRS (stream, reason) pairs and
    MAX_VIOLATIONS_KEPT violations. Streams are the run's scope (at most models.facts.MAX_RUN_STREAMS)."""
    pairs = 0
    for sf in f.streams.values():
        counts: dict[str, int] = {}
        for raw, n in sf.skipped_by_reason.items():
            pairs = _count(counts, words.reason(raw), n, pairs)
        sf.skipped_by_reason = counts
    f.violations = [
        Violation(
            kind=words.bounded(v.kind, 64),
            line_no=v.line_no,
            detail=words.bounded(v.detail, MAX_DETAIL_CHARS),
        )
        for v in f.violations[:MAX_VIOLATIONS_KEPT]
    ]
    for cp in f.checkpoints.values():
        cp.unproven_reason = _short(cp.unproven_reason)
    for cov in f.coverage.values():
        cov.state_stream = None if cov.state_stream is None else words.bounded(cov.state_stream, 128)
    f.done_error_code = _short(f.done_error_code)
    f.runtime_error = _short(f.runtime_error)
    return f


def _short(text: str | None) -> str | None:
    return None if text is None else words.bounded(text, 64)


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
    return fit(totals(facts))
