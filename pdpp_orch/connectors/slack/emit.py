"""Phase 2, the emit: the archive's records for the in-scope streams, and what the dump missed."""

from __future__ import annotations

import os
from typing import Any

from pdpp_orch.connectors.http import loads
from pdpp_orch.connectors.sdk import Connector
from pdpp_orch.connectors.slack.archive import Archive
from pdpp_orch.connectors.slack.dump import Dump

STATE_EVERY = 100_000  # messages between intermediate STATEs (at channel boundaries)


def emit_inventory(conn: Connector, archive: Archive, stream: str) -> None:
    """Every archived item of inventory `stream`, then its STATE."""
    count = 0
    for key, data in archive.rows(stream):
        conn.record(stream, key, loads(data))
        count += 1
    conn.state(stream, {"count": count})


def emit_messages(conn: Connector, archive: Archive, channels: list[str]) -> None:
    """Archived messages of `channels` newer than the cursor; STATE at channel boundaries. Keyed
    by [channel, ts], or by the reference manifest's `id` with SLACK_MESSAGE_KEY=id."""
    previous = conn.cursor("messages") if conn.collection_mode() != "full_refresh" else None
    cursor: dict[str, str] = dict((previous or {}).get("channels") or {})
    selected = set(channels)
    reference_ids = os.environ.get("SLACK_MESSAGE_KEY") == "id"
    since_state = 0
    current: str | None = None
    for channel, ts, data in archive.messages():
        if channel != current:
            if since_state >= STATE_EVERY:
                conn.state("messages", {"channels": dict(cursor)})
                since_state = 0
            current = channel
        # Slack ts strings have a fixed shape (10 digits '.' 6 digits): text order is time order.
        if channel not in selected or ts <= cursor.get(channel, ""):
            continue
        if reference_ids:
            # The reference's slack manifest keys a message by `id`, "<channel>:<ts>".
            message = {"id": f"{channel}:{ts}", "channel_id": channel, **loads(data)}
            conn.record("messages", message["id"], message)
        else:
            conn.record("messages", [channel, ts], loads(data))
        cursor[channel] = ts
        since_state += 1
    conn.state("messages", {"channels": cursor})


def retry_delay() -> float:
    """The connector's own retry delay for channels that failed (seconds)."""
    seconds = float(os.environ.get("SLACK_RETRY_DELAY_SECONDS", "600"))
    return int(seconds) if seconds.is_integer() else seconds


def report_failures(conn: Connector, dump: Dump) -> dict[str, Any] | None:
    """SKIP_RESULTs for what the refresh missed; DONE's error if anything was missed."""
    delay = retry_delay()
    for stream, e in dump.failed_streams.items():
        if conn.in_scope(stream):
            conn.skip(
                stream,
                "upstream_server_error",
                message=f"{stream} could not be refreshed; emitted the archived copy: {e}",
                recovery_hint="retry_by_runtime",
                retry_after_seconds=delay,
                diagnostics={"status": e.status, "attempts": e.attempts},
            )
    failed = sorted(dump.failed_channels)
    if failed:
        last = dump.failed_channels[failed[-1]]
        conn.skip(
            "messages",
            "upstream_server_error",
            message=(
                f"{len(failed)} channel(s) failed after {last.attempts} attempts ({last}); "
                "their archived messages were emitted, newer ones were not collected"
            ),
            resource_ids=failed,
            recovery_hint="retry_by_runtime",
            retry_after_seconds=delay,
            diagnostics={"status": last.status, "attempts": last.attempts},
        )
    missed = [s for s in dump.failed_streams if conn.in_scope(s)] + (["messages"] if failed else [])
    if not missed:
        return None
    return {
        "code": "stream_collection_failed",
        "message": f"refresh failed for {', '.join(missed)}"
        + (f" (channels {', '.join(failed[:10])}{'…' if len(failed) > 10 else ''})" if failed else ""),
        "retryable": True,
    }
