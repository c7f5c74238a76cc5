"""One aiohttp application serving every simulated upstream, its request counters and its controls.

Each counted route goes through `_counted`: resolve the request's resource id, let the fault plan
answer if a fault fires, otherwise run the handler; then count the request under its final
status.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from pdpp_orch.upstream.faults import SLACK_ROUTES, Fault, FaultPlan, error_body
from pdpp_orch.upstream.routes.bank import BankRoutes
from pdpp_orch.upstream.routes.chatgpt import ChatGPTRoutes
from pdpp_orch.upstream.routes.control import ControlRoutes
from pdpp_orch.upstream.routes.gmail import GmailRoutes
from pdpp_orch.upstream.routes.http import BadRequest, CountedRoute, json_response
from pdpp_orch.upstream.routes.slack import SlackRoutes
from pdpp_orch.upstream.state import Upstream
from pdpp_orch.upstream.world import World

log = logging.getLogger("pdpp_orch.upstream")

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _counted(up: Upstream, route: CountedRoute) -> Handler:
    name, handler, rid_of = route.name, route.handler, route.rid_of

    async def counted(request: web.Request) -> web.Response:
        rid = rid_of(request) if rid_of is not None else None
        fault = up.faults.match(name, rid, up.clock.now())
        if fault is not None:
            response = _fault_response(name, fault)
        else:
            try:
                response = handler(request)
            except BadRequest as e:
                slack = name in SLACK_ROUTES
                body = {"ok": False, "error": e.slack_error} if slack else {"error": "bad_request"}
                body["detail"] = e.detail
                response = json_response(body, 400)
            except Exception:
                log.exception("handler for %s failed", name)
                response = json_response({"error": "simulator_bug", "status": 500}, 500)
        up.counters.hit(name, rid, response.status)
        return response

    return counted


def _fault_response(route: str, fault: Fault) -> web.Response:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    return json_response(error_body(route, fault), fault.status, headers)


def routes(up: Upstream) -> list[web.RouteDef]:
    """Every upstream route (counted, subject to faults), then the control routes."""
    counted = [
        *GmailRoutes(up).counted(),
        *SlackRoutes(up).counted(),
        *ChatGPTRoutes(up).counted(),
        *BankRoutes(up).counted(),
    ]
    return [*(web.get(r.path, _counted(up, r)) for r in counted), *ControlRoutes(up).defs()]


def build_app(world: World, plan: FaultPlan | None = None) -> web.Application:
    """The aiohttp application serving `world` under `plan`."""
    app = web.Application()
    app.add_routes(routes(Upstream(world, plan)))
    return app
