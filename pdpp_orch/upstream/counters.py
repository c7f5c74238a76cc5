"""Per-route request counters: what tests read to assert how many upstream calls a run made."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pdpp_orch.upstream.faults import ROUTES

JSON = dict[str, Any]


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
