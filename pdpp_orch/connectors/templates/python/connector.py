"""A PDPP connector on the bundled SDK, written by `pdpp-orch connectors new`: a working example
to change into yours (replace `read_items` with your upstream).

It collects one stream, `items`, from a JSON-lines file (ITEMS_FILE, one item a line, each with
an `id` and an `updated_at`), incrementally:

- START.state carries the cursor the last run committed, {"updated_at": ..., "id": ...}: only
  items after it are collected (a first run gets `state: null` and collects everything);
- a STATE every CHECKPOINT_EVERY items and one at the end: the runtime commits the latest STATE
  whose records are all durable, so an interrupted run resumes from there;
- an item marked "archived" is skipped (SKIP_RESULT, reason `archived`); the registry entry
  maps that reason to `informational`, so it is no miss and the run still `succeeded`;
- an item that cannot be fetched ("unavailable": true) is a DETAIL_GAP: the run ends
  `partially_completed` with a retry hint, and a recovery run later serves the gap back
  (START.detail_gaps, then DETAIL_GAPS_PAGE_REQUEST pages); this connector then fetches exactly
  those items, answers each with its RECORD and DETAIL_GAP_RECOVERED (DETAIL_GAP_ATTEMPTED while
  it is still unavailable), and writes no STATE: a recovery does not move the cursor.

docs/protocol.md tells every message with real lines.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from pdpp_orch.connectors.sdk import Connector

STREAM = "items"
CHECKPOINT_EVERY = int(os.environ.get("CHECKPOINT_EVERY", "100"))

Item = dict[str, Any]


def read_items() -> dict[str, Item]:
    """The upstream: every item, by id. A real connector calls its API here."""
    items: dict[str, Item] = {}
    for line in Path(os.environ["ITEMS_FILE"]).read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            items[str(item["id"])] = item
    return items


def position(item: Item) -> tuple[str, str]:
    """Where an item sits in the walk: by update time, then id (two items may share a time)."""
    return str(item["updated_at"]), str(item["id"])


def forward(conn: Connector, items: dict[str, Item]) -> None:
    """The forward walk: every item after the committed cursor, oldest first."""
    cursor = conn.cursor(STREAM)
    after = (cursor["updated_at"], cursor["id"]) if cursor else ("", "")
    todo = sorted((i for i in items.values() if position(i) > after), key=position)
    # stderr is the connector's log: `pdpp-orch logs RUN_ID` shows it, attempt by attempt.
    print(f"{len(todo)} item(s) after {cursor or 'the start'}", file=sys.stderr)
    for n, item in enumerate(todo, 1):
        key = str(item["id"])
        if not conn.wants_resource(STREAM, key):
            pass  # an open gap stands for it: its recovery fetches it, not this run
        elif item.get("archived"):
            conn.skip(STREAM, "archived", message="archived upstream", resource_ids=[key])
        elif item.get("unavailable"):
            conn.detail_gap(STREAM, key, reason="upstream_unavailable", detail_locator={"id": key})
        else:
            conn.record(STREAM, key, item)
        cursor = {"updated_at": item["updated_at"], "id": key}
        if n % CHECKPOINT_EVERY == 0 and n < len(todo):
            conn.state(STREAM, cursor)
    conn.state(STREAM, cursor)


def recover(conn: Connector, items: dict[str, Item]) -> None:
    """A recovery run: fetch exactly the gaps served, page by page; no STATE."""
    for page in conn.detail_gap_pages(STREAM):
        print(f"fetching {len(page)} served gap(s)", file=sys.stderr)
        for gap in page:
            item = items.get(str(gap["record_key"]))
            if item is None or item.get("unavailable"):
                conn.detail_gap_attempted(gap["gap_id"], STREAM, lease_id=gap.get("lease_id"))
                continue
            conn.record(STREAM, str(item["id"]), item)
            conn.detail_gap_recovered(gap["gap_id"], STREAM, lease_id=gap.get("lease_id"))


def main() -> None:
    conn = Connector()
    conn.start()
    items = read_items()
    if conn.recovery_only():
        recover(conn, items)
    elif conn.in_scope(STREAM):
        forward(conn, items)
    conn.done()


if __name__ == "__main__":
    main()
