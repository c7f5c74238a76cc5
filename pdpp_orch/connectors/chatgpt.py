"""`chatgpt`: conversations from the (simulated) ChatGPT backend API — seed Case E.

Stream `conversations` (key `id`; the record is the full conversation detail including its
`mapping`). Coverage strategy `parent_detail_accounting`: a list lane (pages of 100) and a
detail lane (one request per conversation, at most 8 in flight). Incremental with cursor
`{"update_time": float}`, the high-water mark of the listed items; with a cursor only
conversations updated after it are fetched.

The backend answers 429 with a Retry-After. A short one (≤ 5 s) is waited out, up to 3 times;
a long one (86400 s in the incident) is not: the conversation becomes a durable DETAIL_GAP
carrying the upstream's `retry_after_seconds`, and the connector moves on. At the end a
DETAIL_COVERAGE accounts for every listed conversation — hydrated or backed by a gap — so the
runtime can prove the cursor and retry exactly the gaps later.

`CHATGPT_GAP_STYLE=skip_result` reproduces the seed's original connector instead: one
SKIP_RESULT per rate-limited conversation, which the reference runtime forgot once the run
ended ("4,188 conversations are simply missing").

Recovery: with `recovery_only`, only the served gaps are fetched, each once, page by page
(START's `detail_gaps`, then DETAIL_GAPS_PAGE_REQUEST until an empty page; CHATGPT_PAGE_MAX_BYTES
sets the pages' `max_bytes`); a
recovered gap is reported with DETAIL_GAP_RECOVERED after its RECORD, a still-limited one with a
fresh DETAIL_GAP, a vanished one (404/410) with DETAIL_GAP_ATTEMPTED and a non-retryable gap.
Served gaps in a forward run are drained the same way alongside the walk.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pdpp_orch.connectors.http import Upstream, UpstreamError
from pdpp_orch.connectors.sdk import Connector

STREAM = "conversations"
API = "/chatgpt/backend-api"
PAGE = 100
CONCURRENCY = 8


@dataclass
class Lane:
    """Counts of the detail lane for DETAIL_COVERAGE."""

    required: int = 0
    hydrated: int = 0
    gaps: int = 0


@dataclass
class Listing:
    items: list[dict[str, Any]] = field(default_factory=list)
    total: int | None = None
    error: UpstreamError | None = None


async def list_conversations(up: Upstream) -> Listing:
    """Every listed conversation, or as many as the list lane gave before failing."""
    listing = Listing()
    offset = 0
    while True:
        try:
            page = await up.get_json(f"{API}/conversations", {"offset": offset, "limit": PAGE})
        except UpstreamError as e:
            listing.error = e
            return listing
        items = page.get("items") or []
        listing.items.extend(items)
        listing.total = page.get("total")
        offset += len(items)
        if not items or (listing.total is not None and offset >= listing.total):
            return listing


class Hydrator:
    """Fetches conversation details and reports each one as a RECORD, a gap or a skip."""

    def __init__(self, conn: Connector, up: Upstream, *, skip_style: bool):
        self.conn = conn
        self.up = up
        self.skip_style = skip_style

    async def run(self, ids: Iterable[str], served: dict[str, dict[str, Any]], lane: Lane | None) -> None:
        """Fetch each id once with bounded concurrency. `served` maps ids to gaps the runtime
        served; `lane` (if given) counts the outcomes for DETAIL_COVERAGE."""
        queue = iter(ids)

        async def worker() -> None:
            for cid in queue:  # a shared iterator: each id goes to exactly one worker
                await self.fetch_one(cid, served.get(cid), lane)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    async def fetch_one(self, cid: str, gap: dict[str, Any] | None, lane: Lane | None) -> None:
        try:
            detail = await self.up.get_json(f"{API}/conversation/{cid}")
        except UpstreamError as e:
            self.report_miss(cid, gap, e)
            if lane is not None:
                lane.gaps += 1
            return
        self.conn.record(STREAM, cid, detail)
        if gap is not None:
            self.conn.detail_gap_recovered(
                gap["gap_id"], STREAM, record_key=cid, lease_id=gap.get("lease_id")
            )
        if lane is not None:
            lane.hydrated += 1

    def report_miss(self, cid: str, gap: dict[str, Any] | None, e: UpstreamError) -> None:
        reason = _reason(e)
        if gap is not None and e.permanent:
            self.conn.detail_gap_attempted(gap["gap_id"], STREAM, lease_id=gap.get("lease_id"))
        if self.skip_style and gap is None:
            self.conn.skip(
                STREAM,
                reason,
                message=f"conversation {cid}: {e}",
                recovery_hint=_hint(e),
                resource_ids=[cid],
                retry_after_seconds=e.retry_after,
            )
            return
        self.conn.detail_gap(
            STREAM,
            cid,
            reason=reason,
            retryable=not e.permanent,
            detail_locator={"conversation_id": cid},
            retry_after_seconds=e.retry_after,
            last_error=e.last_error(),
            gap_id=gap["gap_id"] if gap is not None else None,
            lease_id=gap.get("lease_id") if gap is not None else None,
            recovery_hint=_hint(e),
        )


def _hint(e: UpstreamError) -> str:
    """Who can fix the miss: the owner (credentials), nobody (gone), or a later retry."""
    if e.status in (401, 403):
        return "refresh_credentials"
    return "not_retriable" if e.permanent else "retry_by_runtime"


def _reason(e: UpstreamError) -> str:
    if e.status == 429:
        return "rate_limited"
    if e.status in (401, 403):
        return "credentials_rejected"
    if e.permanent:
        return "not_found"
    if e.status is not None and e.status >= 500:
        return "upstream_server_error"
    return "upstream_error" if e.status is not None else "network_error"


def served_gaps(conn: Connector) -> dict[str, dict[str, Any]]:
    """START's served gaps by conversation id."""
    return by_conversation(conn.detail_gaps(STREAM))


def by_conversation(gaps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Served gaps by conversation id (from the locator, else the record key)."""
    out: dict[str, dict[str, Any]] = {}
    for gap in gaps:
        locator = gap.get("detail_locator") or {}
        cid = locator.get("conversation_id") or gap.get("record_key")
        if cid:
            out[str(cid)] = gap
    return out


async def recover(conn: Connector, hydrator: Hydrator) -> None:
    """Drain the served gaps page by page (START's, then DETAIL_GAPS_PAGE_REQUEST until an empty
    page), each fetched once."""
    size = os.environ.get("CHATGPT_PAGE_MAX_BYTES")
    for page in conn.detail_gap_pages(STREAM, int(size) if size else None):
        served = by_conversation(page)
        await hydrator.run(list(served), served, None)


async def forward(conn: Connector, hydrator: Hydrator) -> dict[str, Any] | None:
    """List, hydrate what changed, account for coverage and checkpoint; returns DONE's error."""
    previous = conn.cursor(STREAM) if conn.collection_mode() != "full_refresh" else None
    since = float((previous or {}).get("update_time") or 0.0)
    listing = await list_conversations(hydrator.up)
    # dict.fromkeys: a conversation listed twice (the list shifted under us) is fetched once.
    wanted_ids = list(
        dict.fromkeys(str(c["id"]) for c in listing.items if float(c.get("update_time") or 0.0) > since)
    )
    served = served_gaps(conn)
    lane = Lane(required=len(wanted_ids))
    await hydrator.run(wanted_ids, served, lane)
    listed = set(wanted_ids)
    # Gaps from earlier runs are usually older than the cursor, hence not listed as changed.
    await hydrator.run([cid for cid in served if cid not in listed], served, None)
    conn.detail_coverage(
        STREAM, STREAM, required_keys=lane.required, hydrated_keys=lane.hydrated, gap_keys=lane.gaps
    )
    if listing.error is not None:
        e = listing.error
        conn.skip(
            STREAM,
            _reason(e),
            message=f"listing stopped after {len(listing.items)} of {listing.total} conversations: {e}",
            recovery_hint="retry_by_runtime",
            retry_after_seconds=e.retry_after,
            diagnostics=e.last_error(),
        )
        return {"code": "stream_collection_failed", "message": str(e), "retryable": True}
    high = max([since, *(float(c.get("update_time") or 0.0) for c in listing.items)])
    conn.state(STREAM, {"update_time": high})
    return None


async def collect(conn: Connector) -> dict[str, Any] | None:
    skip_style = os.environ.get("CHATGPT_GAP_STYLE", "detail_gap") == "skip_result"
    # Retry-After ≤ 5 s is waited out up to 3 times (4 attempts); a longer one fails at once.
    async with Upstream(attempts=4, retry_after_cap=5.0, connections=CONCURRENCY) as up:
        hydrator = Hydrator(conn, up, skip_style=skip_style)
        if conn.recovery_only():
            await recover(conn, hydrator)
            return None
        return await forward(conn, hydrator)


def main() -> None:
    conn = Connector()
    conn.start()
    if not conn.in_scope(STREAM) and not conn.recovery_only():
        conn.done()
    error = asyncio.run(collect(conn))
    if error is not None:
        conn.done("failed", error=error)
    conn.done()


if __name__ == "__main__":
    main()
