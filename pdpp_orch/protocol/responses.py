"""What the runtime writes to a connector's stdin besides START: INTERACTION_RESPONSE and
DETAIL_GAPS_PAGE_RESPONSE, shaped as the reference runtime shapes them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import orjson

from pdpp_orch.models import InteractionStatus


def interaction_response(
    request_id: str, status: InteractionStatus, data: str | None, waited: timedelta
) -> dict[str, Any]:
    """INTERACTION_RESPONSE as the reference sends it: `data` with a success; `error` (`code`,
    `message`) when the owner declined or did not answer, as the reference's own interaction
    handler says it; `value` when the answer is a single string (connectors read it as a code)."""
    response: dict[str, Any] = {
        "type": "INTERACTION_RESPONSE",
        "request_id": request_id,
        "status": status.value,
    }
    if status is InteractionStatus.SUCCESS and data is not None:
        answer = orjson.loads(data)
        response["data"] = answer
        values = list(answer.values()) if isinstance(answer, dict) else []
        if len(values) == 1 and isinstance(values[0], str):
            response["value"] = values[0]
    elif status is InteractionStatus.TIMEOUT:
        seconds = round(waited.total_seconds())
        response["error"] = {"code": "timeout", "message": f"no answer from the owner within {seconds} s"}
    elif status is InteractionStatus.CANCELLED:
        response["error"] = {"code": "cancelled", "message": "the owner declined"}
    return response


# Gap pages, by the reference's rules: a `max_bytes` below 16 KiB (or none, or not a finite
# number) means the default 256 KiB, above 1 MiB means 1 MiB; a page holds at most 500 entries
# (the most the reference's candidate query returns).
PAGE_DEFAULT_BYTES = 256 * 1024
PAGE_MIN_BYTES = 16 * 1024
PAGE_MAX_BYTES = 1024 * 1024
PAGE_MAX_ENTRIES = 500


def page_budget(max_bytes: Any) -> int:
    """The byte budget of a page the connector asked for with `max_bytes`."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int | float):
        return PAGE_DEFAULT_BYTES
    if not math.isfinite(max_bytes) or max_bytes < PAGE_MIN_BYTES:
        return PAGE_DEFAULT_BYTES
    return min(PAGE_MAX_BYTES, math.floor(max_bytes))


def page_fit(entries: Iterable[dict[str, Any]], budget: int) -> int:
    """How many of `entries`, in order, one page of `budget` bytes holds: each costs its JSON
    and a separator, the array 2 bytes; the first is always served, even alone over budget (a
    gap too large for any page would never be served otherwise). Unlike the reference, the
    cost counts the whole entry, lease id included, so a page stays within `max_bytes`."""
    total, n = 2, 0
    for entry in entries:
        cost = len(orjson.dumps(entry)) + 1
        if n and total + cost > budget:
            break
        total += cost
        n += 1
        if n >= PAGE_MAX_ENTRIES or total >= budget:
            break
    return n


def page_response(request_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """DETAIL_GAPS_PAGE_RESPONSE; an empty page tells the connector there is nothing more."""
    return {
        "type": "DETAIL_GAPS_PAGE_RESPONSE",
        "reference_only": True,
        "request_id": request_id,
        "detail_gaps": entries,
    }
