"""START, the first line a connector reads, and the gaps a recovery run is served: the first page
with START, the rest on the connector's DETAIL_GAPS_PAGE_REQUESTs (pages.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pdpp_orch import protocol
from pdpp_orch.models import RunInput, StreamScope
from pdpp_orch.store import ServedGap


class Served:
    """The gaps leased to a recovery run, served in pages: START's first, then one per
    DETAIL_GAPS_PAGE_REQUEST, each gap at most once per attempt; and the served gaps the
    connector has not yet said anything about. `walks`: the lease also holds a gap only a
    forward walk of its stream can close (pdpp_orch.policy.walks_forward)."""

    def __init__(self, gaps: list[ServedGap], *, walks: bool = False):
        self.gaps = gaps
        self.walks = walks
        # Resource gaps (no locator) are fetched by a run scoped to their resources, so START
        # serves them all; detail gaps (with a locator) are drained page by page.
        self.resource_gaps = [g for g in gaps if g.detail_locator is None]
        self._unserved = [g for g in gaps if g.detail_locator is not None]
        self.unreported: set[str] = set()
        self.by_key = {(g.stream, g.record_key): g.gap_id for g in gaps}
        self.pages = 0

    def first_page(self, budget: int) -> list[ServedGap]:
        """START.detail_gaps: every resource gap, and the first page of detail gaps."""
        return self.resource_gaps + self.next_page(None, budget)

    def next_page(self, streams: set[str] | None, budget: int) -> list[ServedGap]:
        """The next page of detail gaps not yet served (of `streams`, None: all), within
        `budget` bytes; empty when there is nothing more."""
        wanted = [g for g in self._unserved if streams is None or g.stream in streams]
        page = wanted[: protocol.page_fit((g.start_entry() for g in wanted), budget)]
        taken = {g.gap_id for g in page}
        if taken:
            self._unserved = [g for g in self._unserved if g.gap_id not in taken]
        self.unreported |= taken
        self.pages += 1
        return page

    def reported(self, gap_id: str) -> None:
        self.unreported.discard(gap_id)

    def reported_key(self, stream: str, key: str) -> None:
        self.unreported.discard(self.by_key.get((stream, key), ""))

    def resources(self, stream: str) -> list[str]:
        return [g.record_key for g in self.resource_gaps if g.stream == stream]


def start_message(
    run: RunInput,
    scope: list[str],
    state: dict[str, Any],
    excluded: dict[str, list[str]],
    served: Served | None,
    bindings: Sequence[str],
    first_page: Sequence[ServedGap] = (),
) -> dict[str, Any]:
    """START for this attempt, shaped as the reference runtime shapes it: every key present
    (`detail_gaps: []` when none are served, `state: null` on a first run), `bindings` an empty
    descriptor per binding offered, `collection_mode` incremental iff any cursor is stored,
    `recovery_only` only when true. A run that walks forward (a forward run, the recovery of a
    checkpoint, stream or run gap) collects around the resources that open, retryable gaps
    already cover: those are their recovery's to fetch, and an upstream that keeps failing one
    channel must not fail every run (DESIGN §4, case C)."""
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
        "detail_gaps": [g.start_entry() for g in first_page],
    }
    # Detail gaps carry their locator and are drained alone; resource gaps (no locator) are
    # fetched by a run scoped to those resources; a lost checkpoint, a stream skipped whole or
    # a failed run by a forward walk from the committed cursor. A retried attempt whose gaps
    # were all settled by the attempt before it has nothing to do: no forward walk either.
    if served is not None and not served.walks and all(g.detail_locator is not None for g in served.gaps):
        start["recovery_only"] = True
    return start
