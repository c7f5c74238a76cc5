"""What a miss says of itself: its recovery hint (a closed vocabulary), the recovery class it
maps to, the upstream's own wait signal, and a runtime-owned continuation (not a miss: planned
work)."""

from __future__ import annotations

import re
from typing import Any

from pdpp_orch.models import RecoveryClass
from pdpp_orch.protocol.framing import LineError

RECOVERY_ACTIONS = frozenset(
    {
        "retry_by_runtime",
        "retry_on_connector_upgrade",
        "refresh_credentials",
        "manual_action_required",
        "update_selector",
        "upstream_unblock",
        "not_retriable",
        "unknown",
    }
)

_ACTION_CLASS = {
    "retry_by_runtime": RecoveryClass.TRANSIENT,
    "upstream_unblock": RecoveryClass.TRANSIENT,
    "refresh_credentials": RecoveryClass.OWNER_ACTION,
    "manual_action_required": RecoveryClass.OWNER_ACTION,
    "retry_on_connector_upgrade": RecoveryClass.CONNECTOR_DEFECT,
    "update_selector": RecoveryClass.CONNECTOR_DEFECT,
    "not_retriable": RecoveryClass.INFORMATIONAL,
    "unknown": RecoveryClass.UNKNOWN,
}

# Longer than any real Retry-After, and short enough for datetime arithmetic.
MAX_RETRY_AFTER_S = 366 * 86400.0
_PRESSURE = re.compile(r"rate.?limit|429|quota|throttl|too.?many", re.IGNORECASE)


def parse_recovery_hint(value: Any) -> tuple[str, bool | None] | LineError:
    """A recovery_hint is a bare action or {action, retryable?} (no other key); anything else is
    a violation, as in the reference."""
    if isinstance(value, str):
        action, retryable = value, None
    elif isinstance(value, dict) and not value.keys() <= {"action", "retryable"}:
        return LineError("invalid_recovery_hint", "recovery_hint may only have action and retryable")
    elif isinstance(value, dict) and isinstance(value.get("action"), str):
        action = value["action"]
        r = value.get("retryable")
        if r is not None and not isinstance(r, bool):
            return LineError("invalid_recovery_hint", "recovery_hint.retryable must be a boolean")
        retryable = r
    else:
        return LineError("invalid_recovery_hint", "recovery_hint must be an action or {action}")
    if action not in RECOVERY_ACTIONS:
        return LineError("invalid_recovery_hint", f"unknown recovery action {action[:64]!r}")
    return action, retryable


def recovery_class(reason: str | None, action: str | None, retryable: bool | None) -> RecoveryClass:
    """Map a miss to the recovery class that decides whether and when the runtime retries it."""
    if action is None:
        if retryable is False:
            cls = RecoveryClass.UNKNOWN
        elif retryable is True:
            cls = RecoveryClass.TRANSIENT
        else:
            cls = RecoveryClass.UNKNOWN
    else:
        cls = _ACTION_CLASS[action]
        if retryable is False and cls.runtime_retryable:
            cls = RecoveryClass.UNKNOWN
    if cls is RecoveryClass.TRANSIENT and reason and _PRESSURE.search(reason):
        return RecoveryClass.PROVIDER_PRESSURE
    if cls is RecoveryClass.UNKNOWN and retryable is not False and reason and _PRESSURE.search(reason):
        return RecoveryClass.PROVIDER_PRESSURE
    return cls


# JavaScript's Number.isSafeInteger bound: the reference's test for a continuation's counts.
_SAFE = 2**53 - 1


def _safe_count(value: Any) -> bool:
    """A non-negative safe integer as JavaScript tests it (5.0 is one, true is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 <= value <= _SAFE and float(value).is_integer()


def continuation_problem(value: Any) -> str | None:
    """Why a SKIP_RESULT.continuation is not the reference's RuntimeContinuationFact, or None:
    an object with a non-blank `boundary`, `owner: "runtime"`, `remaining: true`, and safe
    non-negative integer `considered`, `covered`, `slice_start` and `slice_end` >= `slice_start`.
    Other keys are allowed, as there."""
    if not isinstance(value, dict):
        return "SKIP_RESULT.continuation must be an object"
    boundary = value.get("boundary")
    wrong = [
        name
        for name, ok in (
            ("boundary", isinstance(boundary, str) and bool(boundary.strip())),
            ("considered", _safe_count(value.get("considered"))),
            ("covered", _safe_count(value.get("covered"))),
            ("owner", value.get("owner") == "runtime"),
            ("remaining", value.get("remaining") is True),
            ("slice_start", _safe_count(value.get("slice_start"))),
            (
                "slice_end",
                _safe_count(value.get("slice_end"))
                and _safe_count(value.get("slice_start"))
                and value["slice_end"] >= value["slice_start"],
            ),
        )
        if not ok
    ]
    return f"SKIP_RESULT.continuation is not a runtime continuation: {', '.join(wrong)}" if wrong else None


def retry_after_seconds(msg: dict[str, Any]) -> float | None:
    """The upstream's own wait signal, wherever a connector put it."""
    for holder in (msg, msg.get("diagnostics"), msg.get("last_error"), msg.get("error")):
        if isinstance(holder, dict):
            v = holder.get("retry_after_seconds")
            if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0:
                return float(min(v, MAX_RETRY_AFTER_S))
    return None
