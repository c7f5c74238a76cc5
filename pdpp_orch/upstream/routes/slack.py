"""`/slack/api/...`: the simulated Slack Web API (users.list, conversations.list and .history)."""

from __future__ import annotations

import re
from collections.abc import Callable

from aiohttp import web

from pdpp_orch.upstream.routes.http import (
    BadRequest,
    CountedRoute,
    cursor_page,
    cursor_param,
    encode_cursor,
    int_param,
    json_response,
)
from pdpp_orch.upstream.state import Upstream
from pdpp_orch.upstream.synth import JSON

_TS = re.compile(r"^(\d{1,12})(?:\.(\d{1,6}))?$")


def _ts_us(raw: str) -> int:
    m = _TS.match(raw)
    if m is None:
        raise BadRequest("oldest must be a Slack timestamp like 1587340800.000100")
    return int(m[1]) * 1_000_000 + int((m[2] or "0").ljust(6, "0"))


def _channel_param(request: web.Request) -> str | None:
    return request.query.get("channel") or None


class SlackRoutes:
    """`/slack/api/...`: users.list, conversations.list and conversations.history."""

    def __init__(self, up: Upstream) -> None:
        self.cfg = up.world.slack
        self.data = up.data.slack

    def counted(self) -> list[CountedRoute]:
        """The routes; a history request is about its `channel`."""
        s = "/slack/api"
        return [
            CountedRoute("slack.users", f"{s}/users.list", self.users),
            CountedRoute("slack.channels", f"{s}/conversations.list", self.channels),
            CountedRoute("slack.history", f"{s}/conversations.history", self.history, _channel_param),
        ]

    def users(self, request: web.Request) -> web.Response:
        """users.list, cursor-paginated."""
        return self._listing(request, "user", self.cfg.users, self.data.user, "members")

    def channels(self, request: web.Request) -> web.Response:
        """conversations.list, cursor-paginated."""
        return self._listing(request, "channel", self.cfg.channels, self.data.channel, "channels")

    @staticmethod
    def _listing(
        request: web.Request, kind: str, total: int, item: Callable[[int], JSON], key: str
    ) -> web.Response:
        page, nxt = cursor_page(request, kind, total, 1000)
        items = [item(k) for k in page]
        return json_response({"ok": True, key: items, "response_metadata": {"next_cursor": nxt or ""}})

    def history(self, request: web.Request) -> web.Response:
        """conversations.history: newest first, `oldest` exclusive, cursor-paginated."""
        sl = self.data
        channel = request.query.get("channel", "")
        if not channel:
            raise BadRequest("channel is required")
        ch = sl.channel_index.get(channel)
        if ch is None:
            return json_response({"ok": False, "error": "channel_not_found"}, 404)
        limit = int_param(request, "limit", 1000, 1, 1000)
        oldest = request.query.get("oldest", "")
        lo = sl.first_after(ch, _ts_us(oldest)) if oldest else 0
        cursor = cursor_param(request, "history")
        hi = sl.message_counts[ch] - 1 if cursor is None else min(cursor, sl.message_counts[ch] - 1)
        page_lo = max(lo, hi - limit + 1)
        messages = sl.messages(ch, hi, page_lo) if hi >= lo else []
        has_more = page_lo - 1 >= lo
        nxt = encode_cursor("history", page_lo - 1) if has_more else ""
        return json_response(
            {
                "ok": True,
                "messages": messages,
                "has_more": has_more,
                "response_metadata": {"next_cursor": nxt},
            }
        )
