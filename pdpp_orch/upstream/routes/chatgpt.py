"""`/chatgpt/backend-api/...`: the simulated ChatGPT conversation list and conversations."""

from __future__ import annotations

from aiohttp import web

from pdpp_orch.upstream.routes.http import CountedRoute, int_param, json_response
from pdpp_orch.upstream.state import Upstream


def _id_param(request: web.Request) -> str | None:
    return request.match_info["id"]


class ChatGPTRoutes:
    """`/chatgpt/backend-api/...`: the conversation list and single conversations."""

    def __init__(self, up: Upstream) -> None:
        self.cfg = up.world.chatgpt
        self.data = up.data.chatgpt

    def counted(self) -> list[CountedRoute]:
        """The routes; a conversation request is about its id."""
        c = "/chatgpt/backend-api"
        return [
            CountedRoute("chatgpt.list", f"{c}/conversations", self.conversations),
            CountedRoute("chatgpt.conversation", f"{c}/conversation/{{id}}", self.conversation, _id_param),
        ]

    def conversations(self, request: web.Request) -> web.Response:
        """Conversation summaries, most recently updated first, offset-paginated."""
        cg = self.data
        limit = int_param(request, "limit", 100, 1, 100)
        offset = int_param(request, "offset", 0, 0)
        items = [cg.summary(k) for k in cg.by_update[offset : offset + limit]]
        total = self.cfg.conversations
        return json_response(
            {
                "items": items,
                "total": total,
                "limit": limit,
                "offset": offset,
                "has_missing_conversations": False,
            }
        )

    def conversation(self, request: web.Request) -> web.Response:
        """One conversation with its message mapping."""
        k = self.data.index.get(request.match_info["id"])
        if k is None:
            return json_response(
                {"error": "conversation_not_found", "detail": "Can't load conversation"}, 404
            )
        return json_response(self.data.detail(k))
