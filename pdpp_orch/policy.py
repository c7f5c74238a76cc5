"""Retry and terminal policy, in one place (DESIGN §1 option D, §2).

Pure functions, no I/O and no clock of their own, so workflows may import them and tests can
check them table by table. The store only applies the decisions made here:

- when a group of gaps may be retried (the upstream's own signal first, else the connector's
  back-off for that recovery class), what a hint covers and what it costs;
- what a recovery attempt does to each gap it was served (recovered, pending again, terminal);
- what a kind of gap's recovery run does: walk the stream forward, or fetch only the gaps;
- which checkpoints a run may commit, and what kind of miss a lost one is;
- how long a recovery that made no progress waits before it tries again.

The recovery class of the reference's own reason vocabulary is in pdpp_orch/reasons.py.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from pdpp_orch.models import (
    CollectFacts,
    GapKind,
    GapStatus,
    HintScope,
    Mode,
    RecoveryClass,
    ResourceRef,
    RetryHint,
    StreamCommit,
    TimeRange,
)
from pdpp_orch.ranges import bounds, day_span, split
from pdpp_orch.walkcost import walk_cost

# A gap whose recovery never progresses is quarantined (terminal) after this many attempts;
# one that turned permanent (404/410/401/403) after the manifest's max_recovery_attempts.
MAX_NO_PROGRESS = 8
# Without an upstream signal, a recovery round that recovered nothing waits this long,
# doubling, capped.
IDLE_BACKOFF = timedelta(minutes=5)
IDLE_BACKOFF_CAP = timedelta(hours=6)
# A range hint is fetched again chunk by chunk, a recovery run each: at most this many, so a
# connector's range of centuries cannot make a hint of millions (or its history too large).
MAX_RANGE_CHUNKS = 100
# A run's retry plan holds at most this many hints; the groups of gaps beyond them stay open,
# not retried on their own (`gaps list` shows them, `gaps requeue` retries one).
MAX_HINTS = 64
# Gaps stored without a stream (a whole-run miss) use this stream name.
NO_STREAM = "*"
RETRYABLE_CLASSES = frozenset(c for c in RecoveryClass if c.runtime_retryable)
# Gaps nothing narrower than a forward walk can fetch again: a checkpoint that did not commit,
# a stream skipped whole, a run that failed. Their recovery run walks the stream (the run)
# forward from its committed cursor, as a forward run does (DESIGN §4 case B: "the next run
# resumes only that stream").
WALKED_KINDS = frozenset({GapKind.CHECKPOINT, GapKind.STREAM, GapKind.RUN})
# Why a checkpoint is not committed by design, which is no miss: a recovery run scoped to items,
# resources or a time range (its STATE is where that scope ended, not where the stream is), and
# a recovery whose stream another run committed while it ran.
SCOPED_RECOVERY = "scoped_recovery"
SUPERSEDED = "superseded"
WITHHELD = frozenset({SCOPED_RECOVERY, SUPERSEDED})


# -- back-off -------------------------------------------------------------------------------


class ClassPolicy(BaseModel):
    """Back-off of one recovery class: `base_seconds` × `factor`^(attempt-1), capped."""

    # Strict: `true` is not 1 second, and infinities are not a policy.
    model_config = ConfigDict(strict=True, allow_inf_nan=False)

    base_seconds: float = Field(gt=0)
    factor: float = Field(default=2.0, ge=1.0)
    cap_seconds: float = Field(gt=0)


class RetryPolicy(BaseModel):
    """`[connectors.NAME.retry]`: back-off per recovery class when the upstream gives no signal."""

    provider_pressure: ClassPolicy = ClassPolicy(base_seconds=900, cap_seconds=24 * 3600)
    transient: ClassPolicy = ClassPolicy(base_seconds=300, cap_seconds=6 * 3600)

    model_config = {"extra": "forbid"}

    def delay(self, cls: RecoveryClass, attempt: int) -> timedelta:
        """How long to wait before retry number `attempt` (1-based) of a gap of class `cls`."""
        p = self.provider_pressure if cls is RecoveryClass.PROVIDER_PRESSURE else self.transient
        seconds = p.base_seconds
        for _ in range(max(0, attempt - 1)):
            if seconds >= p.cap_seconds:
                break  # capped already: never multiply towards an overflow
            seconds *= p.factor
        return timedelta(seconds=min(seconds, p.cap_seconds))


def not_before(
    now: datetime, signalled: datetime | None, policy: RetryPolicy, cls: RecoveryClass, attempt: int
) -> datetime:
    """The upstream's own signal wins; otherwise the policy's back-off from `now`."""
    if signalled is not None:
        return signalled
    return now + policy.delay(cls, attempt)


def idle_backoff(idle_rounds: int) -> timedelta:
    """How long a recovery waits after its `idle_rounds`-th round in a row without progress."""
    wait: timedelta = IDLE_BACKOFF * 2 ** (idle_rounds - 1)
    return min(wait, IDLE_BACKOFF_CAP)


# -- hints ----------------------------------------------------------------------------------


def hint_id(run_id: str, stream: str, kind: str, reason: str) -> str:
    """A stable id for the hint of one group of gaps found by one run."""
    h = hashlib.sha256("\x1f".join((run_id, stream, kind, reason)).encode())
    return "hint_" + h.hexdigest()[:20]


def requeue_hint_id(gap_id: str, nonce: str) -> str:
    """The hint of a gap requeued by hand: its own, and a new one at every requeue, so no two
    recoveries of requeued gaps ever share a hint (or the run ids made from it)."""
    h = hashlib.sha256(f"{gap_id}\x1f{nonce}".encode())
    return "hint_rq" + h.hexdigest()[:18]


@dataclass(frozen=True)
class GapGroup:
    """Open gaps that one retry hint covers: one stream, kind and reason."""

    stream: str
    kind: GapKind
    reason: str
    recovery_class: RecoveryClass
    count: int
    not_before: datetime | None
    attempts: int
    ranges: tuple[str, ...] = ()
    max_days: int | None = None
    # What a walk of the stream (of every stream, for a whole-run gap) re-collects
    # (walkcost.stream_walk, by store.hints.walk_records). None: not known.
    walk_records: int | None = None


def _range_chunks(g: GapGroup) -> list[TimeRange]:
    """The ranges to fetch again, half-open as the protocol reads them, each cut into chunks no
    longer than the source accepted that meet at their bounds (a recovery run each). Where more
    than MAX_RANGE_CHUNKS would be needed, the span from the earliest `since` to the latest
    `until` is cut into that many longer chunks; open-ended ranges are fetched as the widest of
    them; ranges whose bounds are not times, as the whole stream."""
    ranges = [(r, *bounds(r)) for r in map(_range, g.ranges)]
    dated = [(r, s, u) for r, s, u in ranges if s and u]
    spans = [(r, *day_span(s, u)) for r, s, u in dated]

    def length(first: date, end: date) -> int:
        return g.max_days or max(1, (end - first).days)

    needed = sum(-(-max(1, (e - f).days) // length(f, e)) for _, f, e in spans)
    if needed > MAX_RANGE_CHUNKS - 3:
        earliest, latest = min(dated, key=lambda d: d[1]), max(dated, key=lambda d: d[2])
        whole = TimeRange(since=earliest[0].since, until=latest[0].until)
        first, end = day_span(earliest[1], latest[2])
        wide = max(g.max_days or 1, -(-(end - first).days // (MAX_RANGE_CHUNKS - 3)))
        chunks = split(whole, wide, first, end)
    else:
        chunks = [c for r, f, e in spans for c in split(r, length(f, e), f, e)]
    froms = [(s, r.since) for r, s, _ in ranges if s and not r.until]
    untils = [(u, r.until) for r, _, u in ranges if u and not r.since]
    chunks += [TimeRange(since=min(froms)[1])] if froms else []
    chunks += [TimeRange(until=max(untils)[1])] if untils else []
    if any(s is None and u is None for _, s, u in ranges):
        chunks.append(TimeRange())
    return chunks


def _range(subject: str) -> TimeRange:
    """A range gap's subject (the connector's `time_range`, as JSON) with its bounds as short
    texts, whatever the connector wrote there."""
    try:
        raw = json.loads(subject)
    except ValueError:
        raw = None
    raw = raw if isinstance(raw, dict) else {}
    return TimeRange(**{k: str(raw[k])[:64] for k in ("since", "until") if raw.get(k) is not None})


def hint_for(
    hid: str, g: GapGroup, retry: RetryPolicy, cost_per_item: int, now: datetime, max_attempts: int
) -> RetryHint:
    """The retry hint of one group of gaps: when, what scope, how much."""
    attempt = g.attempts + 1
    scope = HintScope(stream=None if g.stream == NO_STREAM else g.stream)
    cost = 1
    if g.kind is GapKind.ITEM:
        scope.include_resources = ResourceRef(count=g.count, ref=f"gaps?hint_id={hid}")
        cost = g.count * cost_per_item
    elif g.kind is GapKind.RANGE:
        scope.time_ranges = _range_chunks(g)
        cost = len(scope.time_ranges)
    elif g.kind in WALKED_KINDS:
        cost = walk_cost(g.walk_records, cost_per_item)
    return RetryHint(
        hint_id=hid,
        reason=g.reason,
        recovery_class=g.recovery_class,
        not_before=not_before(now, g.not_before, retry, g.recovery_class, attempt),
        scope=scope,
        gap_count=g.count,
        estimated_cost=cost,
        attempt=attempt,
        max_attempts=max_attempts,
    )


# -- what a recovery run does ----------------------------------------------------------------


def walks_forward(mode: Mode, leased: set[GapKind]) -> bool:
    """Whether a run walks its streams forward from their committed cursors, its STATEs the
    streams' next cursors: every forward run, and the recovery of a lease that holds a gap of
    WALKED_KINDS. Any other recovery run fetches exactly its gaps (`recovery_only` detail gaps,
    `resources`, a `time_range` chunk): its STATEs are its own resume points, never committed."""
    return mode is Mode.FORWARD or bool(leased & WALKED_KINDS)


def adoptable(hint_kinds: set[GapKind]) -> set[GapKind]:
    """The kinds of the new gaps a recovery run found that the hint it executes takes over: a
    range hint's chunk runs cover ranges only (and close every open gap of the hint once all
    are done); a hint served by leases fetches items and walks streams, never a range. The
    others stay open, owned by no hint, for a forward run to plan (`gaps list` shows them)."""
    if GapKind.RANGE in hint_kinds:
        return {GapKind.RANGE}
    return set(GapKind) - {GapKind.RANGE}


# -- settling what a recovery run was served -------------------------------------------------


@dataclass(frozen=True)
class ServedGap:
    """What settling needs to know of one gap a recovery run was served."""

    gap_id: str
    recovery_class: RecoveryClass
    attempts: int
    has_locator: bool
    seen_again: bool = False  # the run reported it missing again
    served: bool = True  # the run was served it (in START or a page), not only leased it
    closed_by_commit: bool = False  # a checkpoint gap: only the commit of its stream closes it


@dataclass(frozen=True)
class Settlement:
    gap_id: str
    status: GapStatus
    attempts: int
    terminal_reason: str | None = None
    attempted: bool = True


def settle(
    gap: ServedGap, reason: str, run_clean: bool, max_attempts: int, max_no_progress: int
) -> Settlement:
    """What a recovery attempt did to one gap still leased after its run (those the connector
    recovered were closed during the run). A resource, stream or run gap (no locator) that a
    clean run neither reported again nor failed on is recovered; a checkpoint gap never is here:
    the commit of its stream closed it, if the run committed one. Every other one used an
    attempt: it is pending again, or terminal — `permanent:REASON` once it is no longer
    runtime-retryable (it turned 404/410/401/403) after `max_attempts`, `quarantined` after
    `max_no_progress`. A detail gap the run was leased but never served (it stopped paging
    first) goes back untried."""
    if not gap.served and gap.has_locator:
        return Settlement(gap.gap_id, GapStatus.PENDING, gap.attempts, attempted=False)
    attempts = gap.attempts + 1  # the run was an attempt, whatever came of it
    if run_clean and not gap.has_locator and not gap.seen_again and not gap.closed_by_commit:
        return Settlement(gap.gap_id, GapStatus.RECOVERED, attempts)
    if gap.recovery_class not in RETRYABLE_CLASSES and attempts >= max_attempts:
        return Settlement(gap.gap_id, GapStatus.TERMINAL, attempts, f"permanent:{reason}")
    if attempts >= max_no_progress:
        return Settlement(gap.gap_id, GapStatus.TERMINAL, attempts, "quarantined")
    return Settlement(gap.gap_id, GapStatus.PENDING, attempts)


# -- the run's own failure --------------------------------------------------------------------


def run_gap(
    facts: CollectFacts, failed_retryably: bool, mode: Mode = Mode.FORWARD
) -> tuple[str, RecoveryClass] | None:
    """The gap a run's own failure stands for, as (reason, class), or None. A DONE failed whose
    error carries a recovery_hint opens one of the hint's class (an owner action, a connector
    upgrade, a retry), whatever else the run collected; one that is only retryable opens a
    transient one when the run produced nothing usable. A `not_retriable` hint opens none: that
    failure is final. A cancelled run opens none. A recovery run's failure is its served gaps'
    (they back off, and its hint retries them): it opens one only for what no retry fixes."""
    if facts.cancelled:
        return None
    reason = facts.done_error_code or "connector_reported_failed"
    cls = facts.done_recovery_class
    if facts.done_status == "failed" and cls is not None:
        if cls is RecoveryClass.INFORMATIONAL or (mode is Mode.RECOVERY and cls.runtime_retryable):
            return None
        return reason, cls
    if failed_retryably and mode is Mode.FORWARD:
        return reason, RecoveryClass.TRANSIENT
    return None


def ran_to_its_end(facts: CollectFacts) -> bool:
    """A run whose connector said DONE succeeded, with nothing wrong on the way: the gap an
    earlier run's own failure left (GapKind.RUN) is closed by it."""
    return (
        facts.done_status == "succeeded"
        and not facts.violated
        and not facts.runtime_error
        and not (facts.cancelled)
    )


# -- checkpoints ----------------------------------------------------------------------------


def checkpoint_gap_class(c: StreamCommit) -> RecoveryClass:
    """A cursor too large for the cap needs the owner to raise it; a coverage that does not
    add up is the connector's bug; anything else may clear on a retry from the committed cursor."""
    if c.reason == "state_too_large":
        return RecoveryClass.OWNER_ACTION
    if c.reason and c.reason.startswith("coverage_"):
        return RecoveryClass.CONNECTOR_DEFECT
    return RecoveryClass.TRANSIENT


def why_not_committed(stream: str, facts: CollectFacts, strict: bool) -> str | None:
    """Why `stream`'s checkpoint of this run may not commit, or None if its proven one may.
    A cancelled run commits nothing, nor does a recovery run that did not walk the stream
    forward (its cursor is where its scope ended); under `pdpp_strict` a run that did not end
    cleanly commits nothing either, but for the siblings of a certified stream-scoped failure."""
    cp = facts.checkpoints[stream]
    if facts.cancelled:
        return "cancelled"
    if cp.resume_only:
        return SCOPED_RECOVERY
    clean = facts.done_status == "succeeded" and not facts.violated and not facts.runtime_error
    if strict and not clean:
        failed = certified_failed_streams(facts)
        if failed is None or stream in failed:
            return "pdpp_strict_run_failed"
    if cp.proven_seq is None:
        return cp.unproven_reason or "unproven"
    return None


def certified_failed_streams(facts: CollectFacts) -> set[str] | None:
    """The reference runtime's certified stream-scoped failure: DONE.error.code
    `stream_collection_failed` plus a matching SKIP_RESULT commits the siblings."""
    if facts.done_error_code != "stream_collection_failed":
        return None
    failed = {
        name for name, sf in facts.streams.items() if sf.skipped_by_reason.get("stream_collection_failed")
    }
    return failed or None
