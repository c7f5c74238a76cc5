"""How many records open gaps stand for: `records_missing_estimate`, the same number on every
surface (DESIGN §12). An item gap (a detail, a resource) is one record; a range, a skipped stream
and a lost checkpoint carry the estimate their run stored with them; a whole run that failed and
an unanswered interaction are of unknown size, counted apart so no surface says "none missing"
while they are open."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pdpp_orch import ranges
from pdpp_orch.models import CollectFacts, CoverageFact, GapKind, StreamScope, TimeRange


@dataclass(frozen=True)
class OpenGaps:
    """Open gaps of one kind: how many, the sum of their stored estimates and how many have none."""

    kind: GapKind
    n: int
    estimated: int = 0
    unestimated: int = 0


@dataclass(frozen=True)
class Missing:
    records: int = 0
    unknown_size: int = 0


def missing(groups: Iterable[OpenGaps], *, checkpoints: bool = True) -> Missing:
    """The records open gaps stand for, and how many gaps are of unknown size. A checkpoint gap
    stands for the coverage keys its lost checkpoint left unaccounted (none when its records are
    all durable and only the cursor is lost); `checkpoints` False leaves them out, for an outcome
    that counts those keys from its own facts."""
    records = unknown = 0
    for g in groups:
        if g.kind is GapKind.ITEM:
            records += g.n
        elif g.kind is GapKind.CHECKPOINT:
            records += g.estimated if checkpoints else 0
        else:
            records += g.estimated
            unknown += g.unestimated
    return Missing(records, unknown)


def range_estimate(collected: int, requested: TimeRange | None, uncovered: TimeRange) -> int | None:
    """The records an uncovered range likely holds: the run's density over the days it did
    cover (e.g. 219 transactions in 90 days, 1,736 days uncovered: 4,224), the days a range
    touches counted half-open (ranges.days). None when the run asked for an open-ended range,
    a bound is not a time (a range gap's bounds are whatever its connector wrote), or it covered
    nothing to measure by."""
    asked = ranges.days(requested) if requested else None
    gap = ranges.days(uncovered)
    if asked is None or gap is None or collected == 0 or asked <= gap:
        return None
    return round(collected * gap / (asked - gap))


def stream_estimate(total: int | None, collected: int) -> int | None:
    """A skipped stream's shortfall against the connector's own total, when it gave one."""
    return max(0, total - collected) if total is not None else None


def found_estimates(
    found: Iterable[tuple[str, str, GapKind, str]], facts: CollectFacts, asked: Iterable[StreamScope]
) -> dict[str, int | None]:
    """The estimates of the range and stream gaps a run found, by gap id, from what it collected
    (`asked`: the streams and time ranges the run asked for)."""
    wanted = {s.name: s.time_range for s in asked}
    out: dict[str, int | None] = {}
    for gap_id, stream, kind, subject in found:
        sf = facts.streams.get(stream)
        collected = sf.collected if sf else 0
        if kind is GapKind.RANGE:
            try:
                uncovered = TimeRange.model_validate_json(subject)
            except ValueError:
                out[gap_id] = None
                continue
            out[gap_id] = range_estimate(collected, wanted.get(stream), uncovered)
        elif kind is GapKind.STREAM:
            out[gap_id] = stream_estimate(sf.total if sf else None, collected)
    return out


def unaccounted(coverage: Iterable[CoverageFact], stream: str) -> int:
    """The coverage keys a stream's checkpoint stands on that were neither hydrated, backed by a
    gap, nor optional."""
    return sum(
        max(0, c.required - c.hydrated - c.gap_backed - c.optional_skipped)
        for c in coverage
        if (c.state_stream or c.stream) == stream
    )


def missing_text(m: Missing, whole: int | None = None) -> str:
    """`4,188 missing (28%)`, `none known missing`, `1 gap of unknown size open`."""
    unknown = f"{m.unknown_size:,} gap(s) of unknown size" if m.unknown_size else ""
    if m.records == 0:
        return f"{unknown} open" if unknown else "none known missing"
    share = f" ({100 * m.records / whole:.0f}%)" if whole else ""
    return f"{m.records:,} missing{share}" + (f" and {unknown}" if unknown else "")
