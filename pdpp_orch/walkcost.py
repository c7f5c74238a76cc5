"""What a recovery that walks a stream costs (a checkpoint, stream or whole-run gap: nothing
narrower than a forward walk re-collects it, pdpp_orch.policy.WALKED_KINDS).

An item gap costs `cost_per_item` and a range gap a unit per chunk, known before the recovery
runs. A walk re-collects the stream from its committed cursor, so it is priced before it starts
from what that stream held last time, asks its budget for all of it at once, and is charged
after for what it really re-collected beyond. Pure, so workflows may call it.
"""

from __future__ import annotations

from pdpp_orch.models import RetryHint


def stream_walk(total: int | None, at_cursor: int | None, stored: int | None) -> int | None:
    """What a walk of one stream re-collects from its committed cursor. `total`: what the run
    that committed the cursor collected of the stream; `at_cursor`: what it had collected at the
    checkpoint it committed. Records it collected past that cursor are what the walk re-reads
    (a final checkpoint lost: Case A re-reads one page, not the mailbox); a run that committed
    its last checkpoint left nothing to re-read, and the walk's increment is taken to be like
    that run's collection. A stream never committed is walked from nothing: everything `stored`."""
    if total is None:
        return stored
    past = total - (at_cursor or 0)
    return past if past > 0 else total


def walk_cost(records: int | None, cost_per_item: int) -> int:
    """What a walk is estimated to cost before it starts: the records it re-collects
    (stream_walk), at `cost_per_item` each; one item's worth when nothing is known of the
    stream, or it holds nothing (the walk may find nothing, but it asks the upstream)."""
    return max(1, records or 0) * cost_per_item


def walks(hint: RetryHint) -> bool:
    """Whether a hint's recovery walks its stream (the run): nothing narrower to serve."""
    return hint.scope.include_resources is None and not hint.scope.time_ranges


def walk_grant(estimated_cost: int, cost_per_item: int, budget_units: int | None) -> int:
    """The units a walk asks its budget for, all or nothing (half a walk is no walk): its
    estimate, capped at a whole window of the budget so a walk dearer than that runs once a
    window is untouched rather than never (what it spends beyond is charged after it)."""
    if budget_units is None:
        return estimated_cost
    return max(cost_per_item, min(estimated_cost, budget_units))


def walk_overspend(records_emitted: int, gaps_opened: int, cost_per_item: int, granted: int) -> int:
    """What a walk really cost beyond the units it was granted before it started, charged after
    it as a forward run is (records and gaps it found, at `cost_per_item`); a walk that cost less
    is not refunded: its grant was spent upstream's way when it ran."""
    return max(0, (records_emitted + gaps_opened) * cost_per_item - granted)
