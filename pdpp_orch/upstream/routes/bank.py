"""`/bank/export.csv`: the simulated bank's CSV export of a date range, half-open as the
protocol's ranges are: the days `start` <= day < `end`."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

from aiohttp import web

from pdpp_orch.upstream.routes.http import BadRequest, CountedRoute, json_response
from pdpp_orch.upstream.state import Upstream

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _date(request: web.Request, name: str) -> date:
    raw = request.query.get(name, "")
    if not _DATE.match(raw):
        raise BadRequest(f"{name} must be YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} is not a date") from None


class BankRoutes:
    """`/bank/export.csv`: the transactions of a date range [start, end), within the plan's range
    limit."""

    def __init__(self, up: Upstream) -> None:
        self.up = up
        self.data = up.data.bank

    def counted(self) -> list[CountedRoute]:
        """The one route."""
        return [CountedRoute("bank.export", "/bank/export.csv", self.export)]

    def export(self, request: web.Request) -> web.Response:
        """CSV of the transactions dated in [start, end), or 400 when the range is longer than the
        limit (a limit of N days takes end - start <= N days)."""
        start, end = _date(request, "start"), _date(request, "end")
        if end < start:
            raise BadRequest("end is before start")
        max_days = self.up.plan.limits.bank_max_range_days
        if max_days is not None and (end - start).days > max_days:
            return json_response({"error": "range_too_long", "max_days": max_days}, 400)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(("id", "date", "description", "amount", "balance", "category"))
        writer.writerows(self.data.rows(start, end))
        return web.Response(text=buf.getvalue(), content_type="text/csv")
