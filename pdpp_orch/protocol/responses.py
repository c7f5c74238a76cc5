"""What the runtime writes to a connector's stdin besides START: INTERACTION_RESPONSE and
DETAIL_GAPS_PAGE_RESPONSE, shaped as the reference runtime shapes them."""

from __future__ import annotations

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
