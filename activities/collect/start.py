"""START, the first line a connector reads, and the gaps a recovery run is served with it."""

from __future__ import annotations

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
) -> dict[str, Any]:
    """START for this attempt. A forward run collects around the resources that open,
    retryable gaps already cover: those are their recovery's to fetch, and an upstream
    that keeps failing one channel must not fail every run (DESIGN §4, case C)."""
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
    any_state = any(v is not None for v in state.values())
    start: dict[str, Any] = {
        "type": "START",
        "run_id": run.run_id,
        "collection_mode": "incremental" if any_state else "full_refresh",
        "scope": {"streams": streams},
        "state": state or None,
        "bindings": {},
    }
    if served is not None:
        start["detail_gaps"] = [g.start_entry() for g in served.gaps]
        # Detail gaps carry their locator and are drained alone; resource gaps (no locator)
        # are fetched by a run scoped to those resources. A retried attempt whose gaps were
        # all settled by the attempt before it has nothing to do: no forward walk either.
        start["recovery_only"] = all(g.detail_locator is not None for g in served.gaps)
    return start
