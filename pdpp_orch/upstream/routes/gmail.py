"""`/gmail/v1/users/me/...`: the simulated Gmail API's profile, labels, threads and messages."""

from __future__ import annotations

from aiohttp import web

from pdpp_orch.upstream.routes.http import (
    CountedRoute,
    cursor_page,
    cursor_param,
    encode_cursor,
    int_param,
    json_response,
)
from pdpp_orch.upstream.state import Upstream


class GmailRoutes:
    """`/gmail/v1/users/me/...`: profile, labels, threads and messages of one world's mailbox."""

    def __init__(self, up: Upstream) -> None:
        self.up = up
        self.cfg = up.world.gmail
        self.data = up.data.gmail

    def counted(self) -> list[CountedRoute]:
        """The routes, none of them with per-resource ids."""
        g = "/gmail/v1/users/me"
        return [
            CountedRoute("gmail.profile", f"{g}/profile", self.profile),
            CountedRoute("gmail.labels", f"{g}/labels", self.labels),
            CountedRoute("gmail.threads", f"{g}/threads", self.threads),
            CountedRoute("gmail.messages", f"{g}/messages", self.messages),
        ]

    def profile(self, request: web.Request) -> web.Response:
        """Mailbox totals, the highest modseq (a JSON number, 2**64-1) and active quirks."""
        cfg, gm = self.cfg, self.data
        return json_response(
            {
                "emailAddress": cfg.email,
                "messagesTotal": cfg.messages,
                "threadsTotal": cfg.threads,
                "labelsTotal": cfg.labels,
                "historyId": str(gm.highest_modseq),
                "highestModseq": gm.highest_modseq,
                "quirks": self.up.plan.quirks.active("gmail"),
            }
        )

    def labels(self, request: web.Request) -> web.Response:
        """All labels with message counts."""
        return json_response({"labels": self.data.labels})

    def threads(self, request: web.Request) -> web.Response:
        """Threads in order of their first message, `limit` per page."""
        page, nxt = cursor_page(request, "threads", self.cfg.threads, 500)
        return json_response({"threads": [self.data.thread(t) for t in page], "next_cursor": nxt})

    def messages(self, request: web.Request) -> web.Response:
        """Messages by ascending modseq; `since_modseq` keeps only newer ones."""
        gm, total = self.data, self.cfg.messages
        limit = int_param(request, "limit", 500, 1, 1000)
        start = cursor_param(request, "messages") or 0
        if request.query.get("since_modseq", ""):
            start = max(start, gm.first_after(int_param(request, "since_modseq", 0, 0)))
        stop = min(start + limit, total)
        nxt = encode_cursor("messages", stop) if stop < total else None
        return json_response({"messages": [gm.message(i) for i in range(start, stop)], "next_cursor": nxt})
