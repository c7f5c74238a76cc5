"""`slack`: a workspace through an on-disk archive, in the role of slackdump — seed Case C.

Streams `users`, `channels` (full inventories, key `id`) and `messages` (key `[channel, ts]`,
`channel` added to each message; cursor `{"channels": {channel_id: latest_ts}}`).

Two phases, like the original connector around slackdump:

1. Dump: refresh a SQLite archive from the API — users, channels, then each selected channel's
   history from the newest ts already archived (`oldest`), so a second run refreshes instead of
   re-dumping. A channel's new messages and its watermark are written in one transaction only
   once its whole history came back, so the archive always holds a complete prefix of every
   channel. 5xx answers are retried (3 attempts, ~0.15 s of back-off); a channel that still
   fails is recorded and the dump CONTINUES with the other channels.
2. Emit: everything the archive holds for the in-scope streams (messages newer than the cursor,
   of the channels selected by `resources` / `exclude_resources`), one STATE per stream.

In the incident slackdump exited 6 on channel C017NG64T24 after a 5-hour dump and the connector
emitted nothing; the workaround was an environment variable to skip the refresh. Here there is
no escape hatch and nothing is lost: the archive is emitted, the failed channels are named in a
SKIP_RESULT (`upstream_server_error`, `retry_by_runtime`, `retry_after_seconds` =
$SLACK_RETRY_DELAY_SECONDS, default 600), and DONE is `failed` with the certified stream-scoped
code `stream_collection_failed` (exit 1, as slackdump's non-zero exit). A later run that excludes
(or only includes) those channels completes on its own.

Archive: $SLACK_ARCHIVE, else `<user cache dir>/pdpp-orch/slack/archive.sqlite`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import platformdirs

from pdpp_orch.connectors.http import Upstream, UpstreamError, loads
from pdpp_orch.connectors.sdk import Connector

API = "/slack/api"
PAGE = 1000
CHANNEL_CONCURRENCY = 4
STATE_EVERY = 100_000  # messages between intermediate STATEs (at channel boundaries)

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channels (id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    channel TEXT NOT NULL, ts TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (channel, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channel_sync (channel TEXT PRIMARY KEY, latest_ts TEXT) WITHOUT ROWID;
"""


def archive_path() -> Path:
    configured = os.environ.get("SLACK_ARCHIVE")
    if configured:
        return Path(configured)
    return Path(platformdirs.user_cache_dir("pdpp-orch")) / "slack" / "archive.sqlite"


class Archive:
    """The on-disk dump: what slackdump's SQLite file is to the original connector."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def replace_inventory(self, table: str, rows: list[tuple[str, bytes]]) -> None:
        """A fresh complete listing replaces the old one, so deleted users/channels go too."""
        with self._transaction():
            self.db.execute(f"DELETE FROM {table}")
            self.db.executemany(f"INSERT INTO {table} (id, data) VALUES (?, ?)", rows)

    def watermark(self, channel: str) -> str | None:
        row = self.db.execute("SELECT latest_ts FROM channel_sync WHERE channel = ?", (channel,)).fetchone()
        return None if row is None else row[0]

    def put_history(self, channel: str, rows: list[tuple[str, str, bytes]], latest_ts: str | None) -> None:
        """A channel's complete refresh and its new watermark, atomically."""
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO messages (channel, ts, data) VALUES (?, ?, ?)", rows)
            self.db.execute(
                "INSERT OR REPLACE INTO channel_sync (channel, latest_ts) VALUES (?, ?)", (channel, latest_ts)
            )

    def ids(self, table: str) -> list[str]:
        return [r[0] for r in self.db.execute(f"SELECT id FROM {table} ORDER BY id")]

    def rows(self, table: str) -> Iterator[tuple[str, bytes]]:
        yield from self.db.execute(f"SELECT id, data FROM {table} ORDER BY id")

    def messages(self) -> Iterator[tuple[str, str, bytes]]:
        yield from self.db.execute("SELECT channel, ts, data FROM messages ORDER BY channel, ts")

    def _transaction(self) -> sqlite3.Connection:
        self.db.execute("BEGIN")
        return self.db  # its context manager commits or rolls back


@dataclass
class Dump:
    """What the refresh could not do."""

    failed_streams: dict[str, UpstreamError] = field(default_factory=dict)
    failed_channels: dict[str, UpstreamError] = field(default_factory=dict)
    channels_dumped: int = 0


async def fetch_pages(up: Upstream, method: str, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """All items under `key` of a cursor-paginated Web API method."""
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        body = await up.get_json(f"{API}/{method}", {**params, "cursor": cursor or None, "limit": PAGE})
        if not body.get("ok", False):
            raise UpstreamError(f"{method}: {body.get('error')}", status=200, attempts=1, body=body)
        items.extend(body.get(key) or [])
        cursor = (body.get("response_metadata") or {}).get("next_cursor") or ""
        if not cursor:
            return items


async def dump_inventory(
    up: Upstream, archive: Archive, dump: Dump, stream: str, method: str, key: str
) -> None:
    try:
        items = await fetch_pages(up, method, key, {})
    except UpstreamError as e:
        dump.failed_streams[stream] = e
        return
    # dict: an id listed twice (the listing shifted under us) is stored once.
    latest = {item["id"]: orjson.dumps(item) for item in items}
    archive.replace_inventory(stream, list(latest.items()))


async def dump_channel(up: Upstream, archive: Archive, channel: str) -> None:
    oldest = archive.watermark(channel)
    messages = await fetch_pages(
        up, "conversations.history", "messages", {"channel": channel, "oldest": oldest}
    )
    rows = [(channel, m["ts"], orjson.dumps({**m, "channel": channel})) for m in messages]
    latest = max([oldest or "", *(r[1] for r in rows)]) or None
    archive.put_history(channel, rows, latest)


async def dump_workspace(conn: Connector, up: Upstream, archive: Archive) -> Dump:
    """Refresh the archive: inventories, then the history of the channels the scope selects."""
    dump = Dump()
    await dump_inventory(up, archive, dump, "users", "users.list", "members")
    await dump_inventory(up, archive, dump, "channels", "conversations.list", "channels")
    if not conn.in_scope("messages"):
        return dump
    todo = iter(wanted_channels(conn, archive.ids("channels")))

    async def worker() -> None:
        for channel in todo:  # shared iterator: each channel is dumped by exactly one worker
            try:
                await dump_channel(up, archive, channel)
            except UpstreamError as e:
                dump.failed_channels[channel] = e
            dump.channels_dumped += 1
            if dump.channels_dumped % 500 == 0:
                conn.progress(f"dumped {dump.channels_dumped} channels", stream="messages")

    await asyncio.gather(*(worker() for _ in range(CHANNEL_CONCURRENCY)))
    return dump


def wanted_channels(conn: Connector, known: list[str]) -> list[str]:
    """The channels the messages scope selects: `resources` (even if not listed), minus exclusions."""
    only = conn.resources("messages")
    excluded = set(conn.exclude_resources("messages"))
    return [c for c in (only if only is not None else known) if c not in excluded]


def emit_inventory(conn: Connector, archive: Archive, stream: str) -> None:
    count = 0
    for key, data in archive.rows(stream):
        conn.record(stream, key, loads(data))
        count += 1
    conn.state(stream, {"count": count})


def emit_messages(conn: Connector, archive: Archive, channels: list[str]) -> None:
    """Archived messages of `channels` newer than the cursor; STATE at channel boundaries."""
    previous = conn.cursor("messages") if conn.collection_mode() != "full_refresh" else None
    cursor: dict[str, str] = dict((previous or {}).get("channels") or {})
    selected = set(channels)
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


async def refresh(conn: Connector, archive: Archive) -> Dump:
    # Slack's rate-limit Retry-After is usually seconds; anything longer fails the channel.
    async with Upstream(
        attempts=3, backoff=0.05, retry_after_cap=10.0, connections=CHANNEL_CONCURRENCY
    ) as up:
        return await dump_workspace(conn, up, archive)


def main() -> None:
    conn = Connector()
    conn.start()
    if conn.recovery_only():  # no detail lanes: nothing to drain
        conn.done()
    archive = Archive(archive_path())
    try:
        dump = asyncio.run(refresh(conn, archive))
        for stream in ("users", "channels"):
            if conn.in_scope(stream):
                emit_inventory(conn, archive, stream)
        if conn.in_scope("messages"):
            emit_messages(conn, archive, wanted_channels(conn, archive.ids("channels")))
        error = report_failures(conn, dump)
    finally:
        archive.close()
    if error is not None:
        conn.done("failed", error=error)
    conn.done()


if __name__ == "__main__":
    main()
