"""One aiohttp application serving every simulated upstream, its request counters and its controls.

Each counted route goes through `_counted`: resolve the request's resource id, let the fault plan
answer if a fault fires, otherwise run the handler; then count the request under its final
status. Handlers are synchronous: generating a page is pure CPU, so a coroutine would only add
overhead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import io
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from pdpp_orch.upstream.faults import (
    ROUTES,
    SLACK_ROUTES,
    Fault,
    FaultEngine,
    FaultPlan,
    error_body,
    load_plan,
)
from pdpp_orch.upstream.world import World, WorldData, load_world

log = logging.getLogger("pdpp_orch.upstream")

JSON = dict[str, Any]
SyncHandler = Callable[[web.Request], web.Response]
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, headers=headers, content_type="application/json"
    )


class BadRequest(Exception):
    """A malformed parameter: answered with 400 in the route's error style."""

    def __init__(self, detail: str, slack_error: str = "invalid_arguments") -> None:
        super().__init__(detail)
        self.detail = detail
        self.slack_error = slack_error


def _int(request: web.Request, name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = request.query.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if value < lo:
        raise BadRequest(f"{name} must be >= {lo}")
    # Like the real APIs, an oversized limit is clamped rather than refused.
    return value if hi is None else min(value, hi)


def _encode_cursor(kind: str, n: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{n}".encode()).decode()


def _cursor(request: web.Request, kind: str) -> int | None:
    raw = request.query.get("cursor", "")
    if not raw:
        return None
    try:
        got_kind, _, n = base64.urlsafe_b64decode(raw.encode()).decode().partition(":")
        if got_kind == kind and n.isdigit():
            return int(n)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise BadRequest("invalid cursor", slack_error="invalid_cursor")


_TS = re.compile(r"^(\d{1,12})(?:\.(\d{1,6}))?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _slack_ts_us(raw: str) -> int:
    m = _TS.match(raw)
    if m is None:
        raise BadRequest("oldest must be a Slack timestamp like 1587340800.000100")
    return int(m[1]) * 1_000_000 + int((m[2] or "0").ljust(6, "0"))


def _date(request: web.Request, name: str) -> date:
    raw = request.query.get(name, "")
    if not _DATE.match(raw):
        raise BadRequest(f"{name} must be YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} is not a date") from None


# --- counters and clock --------------------------------------------------------------------------


@dataclass
class RouteCount:
    """Requests of one route: total, per status, per resource id."""

    total: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    ids: Counter[str] = field(default_factory=Counter)

    def snapshot(self, with_ids: bool) -> JSON:
        """JSON view; `ids` (id → count) only when asked, it can be large."""
        out: JSON = {
            "total": self.total,
            "by_status": {str(s): n for s, n in sorted(self.by_status.items())},
            "distinct_ids": len(self.ids),
            "max_per_id": max(self.ids.values(), default=0),
        }
        if with_ids:
            out["ids"] = dict(self.ids)
        return out


class Counters:
    """Per-route request counters, every route present from the start."""

    def __init__(self) -> None:
        self.routes = {r: RouteCount() for r in ROUTES}

    def hit(self, route: str, rid: str | None, status: int) -> None:
        """Count one answered request."""
        c = self.routes[route]
        c.total += 1
        c.by_status[status] += 1
        if rid is not None:
            c.ids[rid] += 1

    def snapshot(self, ids_for: str | None = None) -> JSON:
        """`{"routes": {...}}`, plus `"ids"` for route `ids_for` (also inside that route's entry)."""
        out: JSON = {"routes": {r: c.snapshot(r == ids_for) for r, c in self.routes.items()}}
        if ids_for is not None:
            out["ids"] = dict(self.routes[ids_for].ids)
        return out

    def reset(self) -> None:
        """Zero everything."""
        self.routes = {r: RouteCount() for r in ROUTES}


class Clock:
    """The server's notion of now: starts at the world anchor, runs in real time, can be shifted.

    Starting at the anchor keeps `until` in plans meaningful ("429s for the first 24 h") and
    lets tests on Temporal's time-skipping server move it forward with the workflow clock.
    """

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._t0 = time.monotonic()
        self._offset = timedelta()

    def _real(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._t0)

    def now(self) -> datetime:
        """Current simulated time (aware, UTC)."""
        return self._real() + self._offset

    def advance(self, seconds: float) -> None:
        """Move now forward (or back, if negative) by `seconds`."""
        self._offset += timedelta(seconds=seconds)

    def set(self, now: datetime) -> None:
        """Make now equal `now`."""
        self._offset = now - self._real()


# --- the application -----------------------------------------------------------------------------


class Upstream:
    """World data, fault plan, counters and clock of one server, and its request handlers."""

    def __init__(self, world: World, plan: FaultPlan | None = None) -> None:
        self.world = world
        self.data = WorldData(world)
        self.clock = Clock(world.anchor)
        self.counters = Counters()
        self.faults = FaultEngine(plan or FaultPlan(), self.universe)

    def universe(self, route: str) -> Sequence[str]:
        """Every resource id of `route` (what a fault `sample` draws from)."""
        if route == "slack.history":
            return self.data.slack.channel_ids
        if route == "chatgpt.conversation":
            return self.data.chatgpt.ids
        return []

    def set_plan(self, plan: FaultPlan) -> None:
        """Replace the plan; fire counts start from zero."""
        self.faults = FaultEngine(plan, self.universe)

    def _counted(
        self, route: str, handler: SyncHandler, rid_of: Callable[[web.Request], str | None] | None
    ) -> Handler:
        async def counted(request: web.Request) -> web.Response:
            rid = rid_of(request) if rid_of is not None else None
            fault = self.faults.match(route, rid, self.clock.now())
            if fault is not None:
                response = self._fault_response(route, fault)
            else:
                try:
                    response = handler(request)
                except BadRequest as e:
                    slack = route in SLACK_ROUTES
                    body = {"ok": False, "error": e.slack_error} if slack else {"error": "bad_request"}
                    body["detail"] = e.detail
                    response = _json(body, 400)
                except Exception:
                    log.exception("handler for %s failed", route)
                    response = _json({"error": "simulator_bug", "status": 500}, 500)
            self.counters.hit(route, rid, response.status)
            return response

        return counted

    @staticmethod
    def _fault_response(route: str, fault: Fault) -> web.Response:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return _json(error_body(route, fault), fault.status, headers)

    def routes(self) -> list[web.RouteDef]:
        """Every upstream and control route."""
        g, s, c = "/gmail/v1/users/me", "/slack/api", "/chatgpt/backend-api"
        counted = [
            ("gmail.profile", f"{g}/profile", self.gmail_profile, None),
            ("gmail.labels", f"{g}/labels", self.gmail_labels, None),
            ("gmail.threads", f"{g}/threads", self.gmail_threads, None),
            ("gmail.messages", f"{g}/messages", self.gmail_messages, None),
            ("slack.users", f"{s}/users.list", self.slack_users, None),
            ("slack.channels", f"{s}/conversations.list", self.slack_channels, None),
            ("slack.history", f"{s}/conversations.history", self.slack_history, _channel_param),
            ("chatgpt.list", f"{c}/conversations", self.chatgpt_list, None),
            ("chatgpt.conversation", f"{c}/conversation/{{id}}", self.chatgpt_conversation, _id_param),
            ("bank.export", "/bank/export.csv", self.bank_export, None),
        ]
        defs = [web.get(path, self._counted(route, h, rid_of)) for route, path, h, rid_of in counted]
        return [
            *defs,
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

    # --- Gmail -----------------------------------------------------------------------------------

    def gmail_profile(self, request: web.Request) -> web.Response:
        """Mailbox totals, the highest modseq (a JSON number, 2**64-1) and active quirks."""
        cfg, gm = self.world.gmail, self.data.gmail
        return _json(
            {
                "emailAddress": cfg.email,
                "messagesTotal": cfg.messages,
                "threadsTotal": cfg.threads,
                "labelsTotal": cfg.labels,
                "historyId": str(gm.highest_modseq),
                "highestModseq": gm.highest_modseq,
                "quirks": self.faults.plan.quirks.active("gmail"),
            }
        )

    def gmail_labels(self, request: web.Request) -> web.Response:
        """All labels with message counts."""
        return _json({"labels": self.data.gmail.labels})

    def gmail_threads(self, request: web.Request) -> web.Response:
        """Threads in order of their first message, `limit` per page."""
        limit = _int(request, "limit", 500, 1, 1000)
        start = _cursor(request, "threads") or 0
        stop = min(start + limit, self.world.gmail.threads)
        nxt = _encode_cursor("threads", stop) if stop < self.world.gmail.threads else None
        return _json({"threads": [self.data.gmail.thread(t) for t in range(start, stop)], "next_cursor": nxt})

    def gmail_messages(self, request: web.Request) -> web.Response:
        """Messages by ascending modseq; `since_modseq` keeps only newer ones."""
        gm, total = self.data.gmail, self.world.gmail.messages
        limit = _int(request, "limit", 500, 1, 1000)
        start = _cursor(request, "messages") or 0
        if request.query.get("since_modseq", ""):
            start = max(start, gm.first_after(_int(request, "since_modseq", 0, 0)))
        stop = min(start + limit, total)
        nxt = _encode_cursor("messages", stop) if stop < total else None
        return _json({"messages": [gm.message(i) for i in range(start, stop)], "next_cursor": nxt})

    # --- Slack -----------------------------------------------------------------------------------

    def slack_users(self, request: web.Request) -> web.Response:
        """users.list, cursor-paginated."""
        limit = _int(request, "limit", 1000, 1, 1000)
        start = _cursor(request, "user") or 0
        stop = min(start + limit, self.world.slack.users)
        nxt = _encode_cursor("user", stop) if stop < self.world.slack.users else ""
        members = [self.data.slack.user(k) for k in range(start, stop)]
        return _json({"ok": True, "members": members, "response_metadata": {"next_cursor": nxt}})

    def slack_channels(self, request: web.Request) -> web.Response:
        """conversations.list, cursor-paginated."""
        limit = _int(request, "limit", 1000, 1, 1000)
        start = _cursor(request, "channel") or 0
        stop = min(start + limit, self.world.slack.channels)
        nxt = _encode_cursor("channel", stop) if stop < self.world.slack.channels else ""
        channels = [self.data.slack.channel(k) for k in range(start, stop)]
        return _json({"ok": True, "channels": channels, "response_metadata": {"next_cursor": nxt}})

    def slack_history(self, request: web.Request) -> web.Response:
        """conversations.history: newest first, `oldest` exclusive, cursor-paginated."""
        sl = self.data.slack
        channel = request.query.get("channel", "")
        if not channel:
            raise BadRequest("channel is required")
        ch = sl.channel_index.get(channel)
        if ch is None:
            return _json({"ok": False, "error": "channel_not_found"}, 404)
        limit = _int(request, "limit", 1000, 1, 1000)
        oldest = request.query.get("oldest", "")
        lo = sl.first_after(ch, _slack_ts_us(oldest)) if oldest else 0
        cursor = _cursor(request, "history")
        hi = sl.message_counts[ch] - 1 if cursor is None else min(cursor, sl.message_counts[ch] - 1)
        page_lo = max(lo, hi - limit + 1)
        messages = sl.messages(ch, hi, page_lo) if hi >= lo else []
        has_more = page_lo - 1 >= lo
        nxt = _encode_cursor("history", page_lo - 1) if has_more else ""
        return _json(
            {
                "ok": True,
                "messages": messages,
                "has_more": has_more,
                "response_metadata": {"next_cursor": nxt},
            }
        )

    # --- ChatGPT ---------------------------------------------------------------------------------

    def chatgpt_list(self, request: web.Request) -> web.Response:
        """Conversation summaries, most recently updated first, offset-paginated."""
        cg = self.data.chatgpt
        limit = _int(request, "limit", 100, 1, 100)
        offset = _int(request, "offset", 0, 0)
        items = [cg.summary(k) for k in cg.by_update[offset : offset + limit]]
        total = self.world.chatgpt.conversations
        return _json(
            {
                "items": items,
                "total": total,
                "limit": limit,
                "offset": offset,
                "has_missing_conversations": False,
            }
        )

    def chatgpt_conversation(self, request: web.Request) -> web.Response:
        """One conversation with its message mapping."""
        k = self.data.chatgpt.index.get(request.match_info["id"])
        if k is None:
            return _json({"error": "conversation_not_found", "detail": "Can't load conversation"}, 404)
        return _json(self.data.chatgpt.detail(k))

    # --- Bank ------------------------------------------------------------------------------------

    def bank_export(self, request: web.Request) -> web.Response:
        """CSV of the transactions dated in [start, end], or 400 when the range exceeds the limit."""
        start, end = _date(request, "start"), _date(request, "end")
        if end < start:
            raise BadRequest("end is before start")
        max_days = self.faults.plan.limits.bank_max_range_days
        if max_days is not None and (end - start).days + 1 > max_days:
            return _json({"error": "range_too_long", "max_days": max_days}, 400)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(("id", "date", "description", "amount", "balance", "category"))
        writer.writerows(self.data.bank.rows(start, end))
        return web.Response(text=buf.getvalue(), content_type="text/csv")

    # --- control ---------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        """Liveness and the world's name."""
        return _json({"ok": True, "world": self.world.name})

    async def world_json(self, request: web.Request) -> web.Response:
        """The world's configuration (sizes, seed, anchor)."""
        return _json(self.world.model_dump(mode="json"))

    async def get_counters(self, request: web.Request) -> web.Response:
        """Per-route counters; `?route=R&ids=1` adds R's id → count map."""
        route = request.query.get("route")
        if route is not None and route not in ROUTES:
            return _json({"error": "unknown_route", "routes": list(ROUTES)}, 404)
        with_ids = request.query.get("ids", "") not in ("", "0", "false")
        return _json(self.counters.snapshot(route if with_ids else None))

    async def reset(self, request: web.Request) -> web.Response:
        """Zero the counters and the faults' fire counts."""
        self.counters.reset()
        self.faults.reset()
        return _json({"ok": True})

    async def get_plan(self, request: web.Request) -> web.Response:
        """The current plan, each fault with `resolved_count`."""
        return _json(self.faults.describe())

    async def put_plan(self, request: web.Request) -> web.Response:
        """Replace the plan; answers the resolved plan, or 400 with the validation errors."""
        try:
            plan = FaultPlan.model_validate_json(await request.read())
        except ValidationError as e:
            return _json({"error": "invalid_plan", "detail": json.loads(e.json(include_url=False))}, 400)
        self.set_plan(plan)
        return _json(self.faults.describe())

    async def fault_ids(self, request: web.Request) -> web.Response:
        """The ids fault #index targets; a fault without ids/sample targets the whole universe."""
        try:
            index = int(request.match_info["index"])
            fault = self.faults.plan.faults[index]
        except (ValueError, IndexError):
            return _json({"error": "no_such_fault"}, 404)
        targets = self.faults.targets(index)
        if targets is None:
            return _json({"ids": list(self.universe(fault.route)), "matches_all": True})
        return _json({"ids": targets, "matches_all": False})

    async def get_clock(self, request: web.Request) -> web.Response:
        """The server's now."""
        return _json({"now": self.clock.now().isoformat()})

    async def post_clock(self, request: web.Request) -> web.Response:
        """`{"advance_seconds": x}` or `{"now": ISO}`; answers the new now."""
        try:
            body = orjson.loads(await request.read())
            if "advance_seconds" in body:
                self.clock.advance(float(body["advance_seconds"]))
            elif "now" in body:
                now = datetime.fromisoformat(str(body["now"]).replace("Z", "+00:00"))
                if now.tzinfo is None:
                    raise ValueError("now needs a timezone")
                self.clock.set(now)
            else:
                raise ValueError("expected advance_seconds or now")
        except (orjson.JSONDecodeError, TypeError, ValueError) as e:
            return _json({"error": "bad_request", "detail": str(e)}, 400)
        return _json({"now": self.clock.now().isoformat()})


def _channel_param(request: web.Request) -> str | None:
    return request.query.get("channel") or None


def _id_param(request: web.Request) -> str | None:
    return request.match_info["id"]


def build_app(world: World, plan: FaultPlan | None = None) -> web.Application:
    """The aiohttp application serving `world` under `plan`."""
    app = web.Application()
    app.add_routes(Upstream(world, plan).routes())
    return app


# --- process -------------------------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=512)


def _write_ready(path: str, payload: JSON) -> None:
    # Write-then-rename so a poller never reads half a file.
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(payload))
    os.replace(tmp, path)


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


async def run(world: World, plan: FaultPlan | None, host: str, port: int, ready_file: str | None) -> None:
    """Serve until SIGTERM/SIGINT; announce the URL on stdout and in `ready_file` once listening."""
    runner = web.AppRunner(build_app(world, plan), access_log=None, handle_signals=False)
    await runner.setup()
    sock = _bind(host, port)
    site = web.SockSite(runner, sock)
    await site.start()
    bound = sock.getsockname()[1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"upstream listening on {url}", flush=True)
    if ready_file:
        _write_ready(ready_file, {"url": url, "pid": os.getpid(), "world": world.name})
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if ready_file:
            _remove(ready_file)


def serve(host: str, port: int, world: str, plan: str | None, ready_file: str | None) -> None:
    """Run the simulated upstreams in this process until SIGTERM/SIGINT.

    `world` is a preset name (`seed`, `small`) or a world JSON file; `plan` a fault plan file or a
    bundled preset name (`case-a`, `case-c`, `case-d`, `case-e`); port 0 picks a free port.
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        loaded_world, loaded_plan = load_world(world), load_plan(plan) if plan else None
    except (OSError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        raise SystemExit(f"upstream: {e}") from None
    asyncio.run(run(loaded_world, loaded_plan, host, port, ready_file))
