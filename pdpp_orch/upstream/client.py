"""The control routes of a running simulated-upstream server, from Python: sync and async twins.

Every helper has an async twin with an `a` prefix; both raise `UpstreamError` on a non-2xx
answer.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp

from pdpp_orch.upstream.faults import FaultPlan


class UpstreamError(RuntimeError):
    """The upstream process failed to start, or a control request failed."""


def plan_json(plan: Mapping[str, Any] | FaultPlan) -> dict[str, Any]:
    """A plan as the JSON the control route (and a plan file) takes."""
    return plan.model_dump(mode="json") if isinstance(plan, FaultPlan) else dict(plan)


def _counters_path(route: str | None, ids: bool) -> str:
    query = {k: v for k, v in (("route", route), ("ids", "1" if ids else None)) if v is not None}
    return "/_control/counters" + (f"?{urllib.parse.urlencode(query)}" if query else "")


class ControlClient:
    """Requests to the `/_control/...` routes of the server at `url`."""

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. `http://127.0.0.1:41234`."""
        raise NotImplementedError

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON request to the server (sync, stdlib); raises UpstreamError on a non-2xx answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise UpstreamError(f"{method} {path} → {e.code}: {e.read().decode(errors='replace')}") from None

    async def arequest(self, method: str, path: str, body: Any = None) -> Any:
        """`request()` with aiohttp."""
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, json=body) as resp,
        ):
            text = await resp.text()
            if resp.status >= 300:
                raise UpstreamError(f"{method} {path} → {resp.status}: {text}")
            return json.loads(text)

    def health(self) -> dict[str, Any]:
        """`{"ok": true, "world": name}`."""
        return dict(self.request("GET", "/_control/health"))

    def counters(self, route: str | None = None, ids: bool = False) -> dict[str, Any]:
        """`{"routes": {route: {total, by_status, distinct_ids, max_per_id}}}`; with `route` and
        `ids=True` also `"ids": {id: count}` for that route."""
        return dict(self.request("GET", _counters_path(route, ids)))

    async def acounters(self, route: str | None = None, ids: bool = False) -> dict[str, Any]:
        """Async `counters()`."""
        return dict(await self.arequest("GET", _counters_path(route, ids)))

    def count(self, route: str) -> int:
        """Total requests of `route` so far."""
        return int(self.counters()["routes"][route]["total"])

    async def acount(self, route: str) -> int:
        """Async `count()`."""
        return int((await self.acounters())["routes"][route]["total"])

    def set_plan(self, plan: Mapping[str, Any] | FaultPlan) -> dict[str, Any]:
        """Replace the fault plan; returns the resolved plan (faults with `resolved_count`)."""
        return dict(self.request("PUT", "/_control/plan", plan_json(plan)))

    async def aset_plan(self, plan: Mapping[str, Any] | FaultPlan) -> dict[str, Any]:
        """Async `set_plan()`."""
        return dict(await self.arequest("PUT", "/_control/plan", plan_json(plan)))

    def get_plan(self) -> dict[str, Any]:
        """The current resolved plan."""
        return dict(self.request("GET", "/_control/plan"))

    async def aget_plan(self) -> dict[str, Any]:
        """Async `get_plan()`."""
        return dict(await self.arequest("GET", "/_control/plan"))

    def reset(self) -> None:
        """Zero the counters and the faults' fire counts."""
        self.request("POST", "/_control/reset")

    async def areset(self) -> None:
        """Async `reset()`."""
        await self.arequest("POST", "/_control/reset")

    def fault_ids(self, index: int) -> list[str]:
        """The ids fault #`index` of the current plan targets."""
        return list(self.request("GET", f"/_control/faults/{index}/ids")["ids"])

    async def afault_ids(self, index: int) -> list[str]:
        """Async `fault_ids()`."""
        return list((await self.arequest("GET", f"/_control/faults/{index}/ids"))["ids"])

    def clock(self) -> datetime:
        """The server's now."""
        return datetime.fromisoformat(self.request("GET", "/_control/clock")["now"])

    async def aclock(self) -> datetime:
        """Async `clock()`."""
        return datetime.fromisoformat((await self.arequest("GET", "/_control/clock"))["now"])

    def advance_clock(self, seconds: float) -> datetime:
        """Move the server's now forward by `seconds`; returns the new now."""
        return datetime.fromisoformat(
            self.request("POST", "/_control/clock", {"advance_seconds": seconds})["now"]
        )

    async def aadvance_clock(self, seconds: float) -> datetime:
        """Async `advance_clock()`."""
        body = await self.arequest("POST", "/_control/clock", {"advance_seconds": seconds})
        return datetime.fromisoformat(body["now"])

    def set_clock(self, now: datetime) -> datetime:
        """Set the server's now (aware datetime); returns it as the server sees it."""
        return datetime.fromisoformat(
            self.request("POST", "/_control/clock", {"now": now.isoformat()})["now"]
        )

    async def aset_clock(self, now: datetime) -> datetime:
        """Async `set_clock()`."""
        body = await self.arequest("POST", "/_control/clock", {"now": now.isoformat()})
        return datetime.fromisoformat(body["now"])
