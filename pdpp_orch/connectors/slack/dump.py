"""Phase 1, the dump: refresh the archive from the Slack Web API, channel by channel."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from pdpp_orch.connectors.http import Upstream, UpstreamError
from pdpp_orch.connectors.sdk import Connector
from pdpp_orch.connectors.slack.archive import Archive

API = "/slack/api"
PAGE = 1000
CHANNEL_CONCURRENCY = 4


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
    """Replace the archived inventory `stream` with a fresh listing; a failure is noted in `dump`."""
    try:
        items = await fetch_pages(up, method, key, {})
    except UpstreamError as e:
        dump.failed_streams[stream] = e
        return
    # dict: an id listed twice (the listing shifted under us) is stored once.
    latest = {item["id"]: orjson.dumps(item) for item in items}
    archive.replace_inventory(stream, list(latest.items()))


async def dump_channel(up: Upstream, archive: Archive, channel: str) -> None:
    """Archive `channel`'s messages newer than its watermark, all or nothing."""
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


async def refresh(conn: Connector, archive: Archive) -> Dump:
    """`dump_workspace` over a client that retries 5xx answers."""
    # Slack's rate-limit Retry-After is usually seconds; anything longer fails the channel.
    async with Upstream(
        attempts=3, backoff=0.05, retry_after_cap=10.0, connections=CHANNEL_CONCURRENCY
    ) as up:
        return await dump_workspace(conn, up, archive)
