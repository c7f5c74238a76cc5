"""What every route handler is made of: JSON answers, checked query parameters, page cursors.

Handlers are synchronous: generating a page is pure CPU, so a coroutine would only add
overhead. `app` wraps each `CountedRoute` with the fault plan and the counters.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

SyncHandler = Callable[[web.Request], web.Response]
RidOf = Callable[[web.Request], str | None]


@dataclass(frozen=True)
class CountedRoute:
    """A GET route whose requests are counted and may be answered by a fault instead.

    `rid_of` names the resource a request is about (what faults target and counters count per
    id); None for routes without per-resource ids.
    """

    name: str
    path: str
    handler: SyncHandler
    rid_of: RidOf | None = None


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """`obj` as an `application/json` response."""
    return web.Response(
        body=orjson.dumps(obj), status=status, headers=headers, content_type="application/json"
    )


class BadRequest(Exception):
    """A malformed parameter: answered with 400 in the route's error style."""

    def __init__(self, detail: str, slack_error: str = "invalid_arguments") -> None:
        super().__init__(detail)
        self.detail = detail
        self.slack_error = slack_error


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int | None = None) -> int:
    """Query parameter `name` as an integer >= `lo`, clamped to `hi`; `default` when absent."""
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


def encode_cursor(kind: str, n: int) -> str:
    """An opaque page cursor for position `n` of a `kind` listing."""
    return base64.urlsafe_b64encode(f"{kind}:{n}".encode()).decode()


def cursor_param(request: web.Request, kind: str) -> int | None:
    """The position in the `cursor` query parameter (None when absent); 400 if it is not a
    cursor of this `kind`."""
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


def cursor_page(request: web.Request, kind: str, total: int, default_limit: int) -> tuple[range, str | None]:
    """The positions of the page that `limit` and `cursor` ask for out of `total`, and the next
    page's cursor (None after the last page)."""
    limit = int_param(request, "limit", default_limit, 1, 1000)
    start = cursor_param(request, kind) or 0
    stop = min(start + limit, total)
    return range(start, stop), encode_cursor(kind, stop) if stop < total else None
