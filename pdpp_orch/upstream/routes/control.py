"""`/_control/...`: what tests and the demo use to watch and steer a simulated-upstream server.

Health, the world in effect, the request counters, the fault plan (and the ids each fault
targets) and the server's clock. These routes are not counted and never fault.
"""

from __future__ import annotations

import json
from datetime import datetime

import orjson
from aiohttp import web
from pydantic import ValidationError

from pdpp_orch.upstream.faults import ROUTES, FaultPlan
from pdpp_orch.upstream.routes.http import json_response
from pdpp_orch.upstream.state import Upstream


class ControlRoutes:
    """The control routes of one server."""

    def __init__(self, up: Upstream) -> None:
        self.up = up

    def defs(self) -> list[web.RouteDef]:
        """Every control route."""
        return [
            web.get("/_control/health", self.health),
            web.get("/_control/world", self.world_json),
            web.get("/_control/counters", self.get_counters),
            web.post("/_control/reset", self.reset),
            web.get("/_control/plan", self.get_plan),
            web.put("/_control/plan", self.put_plan),
            web.get("/_control/faults/{index}/ids", self.fault_ids),
            web.get("/_control/clock", self.get_clock),
            web.post("/_control/clock", self.post_clock),
        ]

    async def health(self, request: web.Request) -> web.Response:
        """Liveness and the world's name."""
        return json_response({"ok": True, "world": self.up.world.name})

    async def world_json(self, request: web.Request) -> web.Response:
        """The world's configuration (sizes, seed, anchor)."""
        return json_response(self.up.world.model_dump(mode="json"))

    async def get_counters(self, request: web.Request) -> web.Response:
        """Per-route counters; `?route=R&ids=1` adds R's id → count map."""
        route = request.query.get("route")
        if route is not None and route not in ROUTES:
            return json_response({"error": "unknown_route", "routes": list(ROUTES)}, 404)
        with_ids = request.query.get("ids", "") not in ("", "0", "false")
        return json_response(self.up.counters.snapshot(route if with_ids else None))

    async def reset(self, request: web.Request) -> web.Response:
        """Zero the counters and the faults' fire counts."""
        self.up.counters.reset()
        self.up.faults.reset()
        return json_response({"ok": True})

    async def get_plan(self, request: web.Request) -> web.Response:
        """The current plan, each fault with `resolved_count`."""
        return json_response(self.up.faults.describe())

    async def put_plan(self, request: web.Request) -> web.Response:
        """Replace the plan; answers the resolved plan, or 400 with the validation errors."""
        try:
            plan = FaultPlan.model_validate_json(await request.read())
        except ValidationError as e:
            return json_response(
                {"error": "invalid_plan", "detail": json.loads(e.json(include_url=False))}, 400
            )
        self.up.set_plan(plan)
        return json_response(self.up.faults.describe())

    async def fault_ids(self, request: web.Request) -> web.Response:
        """The ids fault #index targets; a fault without ids/sample targets the whole universe."""
        try:
            index = int(request.match_info["index"])
            fault = self.up.faults.plan.faults[index]
        except (ValueError, IndexError):
            return json_response({"error": "no_such_fault"}, 404)
        targets = self.up.faults.targets(index)
        if targets is None:
            return json_response({"ids": list(self.up.universe(fault.route)), "matches_all": True})
        return json_response({"ids": targets, "matches_all": False})

    async def get_clock(self, request: web.Request) -> web.Response:
        """The server's now."""
        return json_response({"now": self.up.clock.now().isoformat()})

    async def post_clock(self, request: web.Request) -> web.Response:
        """`{"advance_seconds": x}` or `{"now": ISO}`; answers the new now."""
        try:
            body = orjson.loads(await request.read())
            if "advance_seconds" in body:
                self.up.clock.advance(float(body["advance_seconds"]))
            elif "now" in body:
                now = datetime.fromisoformat(str(body["now"]).replace("Z", "+00:00"))
                if now.tzinfo is None:
                    raise ValueError("now needs a timezone")
                self.up.clock.set(now)
            else:
                raise ValueError("expected advance_seconds or now")
        except (orjson.JSONDecodeError, TypeError, ValueError) as e:
            return json_response({"error": "bad_request", "detail": str(e)}, 400)
        return json_response({"now": self.up.clock.now().isoformat()})
