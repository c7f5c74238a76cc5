"""`gmail`: labels, threads and messages from the (simulated) Gmail API — seed Case A.

Streams:
- `labels`   — full inventory, key `id`.
- `threads`  — every thread, key `id`; one STATE at the end.
- `messages` — incremental by IMAP-style modseq, key `id`. Cursor
  `{"highest_modseq": int, "history_id": str}`. Pages are read with `since_modseq` from the
  cursor; a STATE follows every page (the highest modseq seen so far: the listing is ordered by
  modseq, so everything at or below it is collected) and a final STATE carries the mailbox's
  highest modseq from the profile, which can be 2**64-1 and is written exactly.
`GMAIL_PAGE_SIZE` (default 1000, the API's maximum) sets the messages page size, hence how
often a STATE is written.

Case A reproduction: when the profile's `quirks` contains `"bigint_state"`, the connector
behaves like the original JavaScript connector whose serializer met a BigInt: the FINAL messages
STATE is written with a BigInt literal (`"highest_modseq":18446744073709551615n`), which is not
JSON. Every other line stays valid, and DONE still reports success with the true record count —
exactly what the runtime saw in the incident (50,396 records, then a broken final STATE).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from pdpp_orch.connectors.http import Upstream, UpstreamError
from pdpp_orch.connectors.sdk import Connector

API = "/gmail/v1/users/me"
PAGE = 1000


async def collect(conn: Connector) -> None:
    async with Upstream() as up:
        profile: dict[str, Any] = await up.get_json(f"{API}/profile")
        if conn.in_scope("labels"):
            await collect_labels(conn, up, profile)
        if conn.in_scope("threads"):
            await collect_threads(conn, up, profile)
        if conn.in_scope("messages"):
            await collect_messages(conn, up, profile)


async def collect_labels(conn: Connector, up: Upstream, profile: dict[str, Any]) -> None:
    body = await up.get_json(f"{API}/labels")
    for label in body["labels"]:
        conn.record("labels", label["id"], label)
    conn.state("labels", {"history_id": str(profile["historyId"])})


async def collect_threads(conn: Connector, up: Upstream, profile: dict[str, Any]) -> None:
    cursor: str | None = None
    while True:
        page = await up.get_json(f"{API}/threads", {"cursor": cursor, "limit": PAGE})
        for thread in page["threads"]:
            conn.record("threads", thread["id"], thread)
        cursor = page.get("next_cursor")
        if not cursor:
            break
    conn.state("threads", {"history_id": str(profile["historyId"])})


async def collect_messages(conn: Connector, up: Upstream, profile: dict[str, Any]) -> None:
    history_id = str(profile["historyId"])
    previous = conn.cursor("messages") if conn.collection_mode() != "full_refresh" else None
    highest = int((previous or {}).get("highest_modseq", 0))
    since = highest or None  # fixed for the whole walk: the page cursor is relative to it
    page_size = int(os.environ.get("GMAIL_PAGE_SIZE", PAGE))
    cursor: str | None = None
    while True:
        params = {"cursor": cursor, "limit": page_size, "since_modseq": since}
        page = await up.get_json(f"{API}/messages", params)
        for message in page["messages"]:
            conn.record("messages", message["id"], message)
            highest = max(highest, int(message["modseq"]))
        cursor = page.get("next_cursor")
        if not cursor:
            break
        conn.state("messages", {"highest_modseq": highest, "history_id": history_id})
    # The walk saw everything up to the mailbox's own high-water mark, read before it started.
    final = {"highest_modseq": max(highest, int(profile["highestModseq"])), "history_id": history_id}
    if "bigint_state" in profile.get("quirks", []):
        conn.emit_raw_line(bigint_state_line(final))
        conn.flush()
    else:
        conn.state("messages", final)


def bigint_state_line(cursor: dict[str, Any]) -> bytes:
    """The final STATE as JavaScript's BigInt-aware serializer wrote it: not JSON."""
    modseq = int(cursor["highest_modseq"])
    history_id = json.dumps(cursor["history_id"])
    return (
        f'{{"type":"STATE","stream":"messages","cursor":{{"highest_modseq":{modseq}n,"history_id":{history_id}}}}}'
    ).encode()


def main() -> None:
    conn = Connector()
    conn.start()
    if conn.recovery_only():  # no detail lanes: nothing to drain
        conn.done()
    try:
        asyncio.run(collect(conn))
    except UpstreamError as e:
        conn.done(
            "failed",
            error={"code": "upstream_error", "message": str(e), "retryable": e.status != 404},
        )
    conn.done()


if __name__ == "__main__":
    main()
