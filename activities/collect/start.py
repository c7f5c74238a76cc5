"""START, the first line a connector reads, and the gaps a recovery run is served with it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pdpp_orch.models import RunInput, StreamScope
from pdpp_orch.store import ServedGap


class Served:
    """The gaps a recovery run is served, and those it has not yet said anything about."""

    def __init__(self, gaps: list[ServedGap]):
        self.gaps = gaps
        # Detail gaps (with a locator) must each be reported on; resource gaps are fetched by a
        # run scoped to their resources, and settled by whether that run was clean.
        self.unreported = {g.gap_id for g in gaps if g.detail_locator is not None}
        self.by_key = {(g.stream, g.record_key): g.gap_id for g in gaps}

    def reported(self, gap_id: str) -> None:
        self.unreported.discard(gap_id)

    def reported_key(self, stream: str, key: str) -> None:
        self.unreported.discard(self.by_key.get((stream, key), ""))

    def resources(self, stream: str) -> list[str]:
        return [g.record_key for g in self.gaps if g.stream == stream]


def start_message(
    run: RunInput,
    scope: list[str],
    state: dict[str, Any],
    excluded: dict[str, list[str]],
    served: Served | None,
    bindings: Sequence[str],
) -> dict[str, Any]:
    """START for this attempt, shaped as the reference runtime shapes it: every key present
    (`detail_gaps: []` when none are served, `state: null` on a first run), `bindings` an empty
    descriptor per binding offered, `collection_mode` incremental iff any cursor is stored,
    `recovery_only` only when true. A forward run collects around the resources that open,
    retryable gaps already cover: those are their recovery's to fetch, and an upstream that
    keeps failing one channel must not fail every run (DESIGN §4, case C)."""
    streams = []
    for s in run.streams or [StreamScope(name=n) for n in scope]:
        item: dict[str, Any] = {"name": s.name}
        if s.time_range and (s.time_range.since or s.time_range.until):
            item["time_range"] = s.time_range.model_dump(exclude_none=True)
        if excluded.get(s.name):
            item["exclude_resources"] = excluded[s.name]
        resources = served.resources(s.name) if served else []
        if resources:
            item["resources"] = resources
        streams.append(item)
    start: dict[str, Any] = {
        "type": "START",
        "run_id": run.run_id,
        # The reference's rule: incremental as soon as any stream has a stored checkpoint
        # (even a null cursor), full_refresh with state null otherwise.
        "collection_mode": "incremental" if state else "full_refresh",
        "scope": {"streams": streams},
        "state": state or None,
        "bindings": {name: {} for name in bindings},
        "detail_gaps": [g.start_entry() for g in served.gaps] if served is not None else [],
    }
    # Detail gaps carry their locator and are drained alone; resource gaps (no locator) are
    # fetched by a run scoped to those resources. A retried attempt whose gaps were all settled
    # by the attempt before it has nothing to do: no forward walk either.
    if served is not None and all(g.detail_locator is not None for g in served.gaps):
        start["recovery_only"] = True
    return start
