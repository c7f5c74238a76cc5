"""PROGRESS, checked as the reference runtime checks it: its counts and the shape of the blocks a
connector on the reference SDK may add (its provider budget's circuit, its collection rate, its
attachment recovery outcomes). Only `message` stays optional here (lenient)."""

from __future__ import annotations

import math
from typing import Any

_CIRCUIT = {
    "previous_state": ("closed", "half_open", "open"),
    "state": ("closed", "half_open", "open"),
    "reason": ("provider_failure", "provider_throttle", "reset_timeout", "success"),
    "trigger": ("before_request", "provider_failure", "provider_throttle", "success"),
}
_RATE_NUMBERS = (
    "ceiling_interval_ms",
    "ceiling_rate_per_min",
    "current_interval_ms",
    "effective_rate_per_min",
)
_BACKOFF_REASONS = ("retry_after", "throttle")
# The exact counters of each attachment outcome block (besides `object`).
_RECOVERY_OUTCOME = frozenset(
    {
        "admitted",
        "admitted_bytes",
        "attempted",
        "hydration_failed",
        "lookup_miss",
        "metadata_lookups",
        "recovered",
        "run_cap_deferred",
        "served",
    }
)
_FAILURE_OUTCOME = frozenset(
    {
        "blob_upload_http_4xx",
        "blob_upload_http_5xx",
        "blob_upload_integrity_failed",
        "blob_upload_invalid_response",
        "blob_upload_transport_failed",
        "imap_download_failed",
        "unclassified_failed",
    }
)
_SAFE = 2**53 - 1


def _number(value: Any) -> bool:
    """A finite non-negative number (JavaScript's Number.isFinite and >= 0; an integer beyond a
    double is Infinity there)."""
    return finite(value) and value >= 0


def finite(value: Any) -> bool:
    """A JSON number JavaScript reads as finite (Number.isFinite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _safe_count(value: Any) -> bool:
    return _number(value) and float(value).is_integer() and value <= _SAFE


def _budget(b: Any) -> list[str]:
    where = "PROGRESS.provider_budget"
    if not isinstance(b, dict):
        return [f"{where} must be an object"]
    if b.get("object") != "provider_budget_circuit_transition":
        return [f"{where}.object must be provider_budget_circuit_transition"]
    circuit = b.get("circuit")
    if not isinstance(circuit, dict):
        return [f"{where}.circuit must be an object"]
    problems = [
        f"{where}.circuit.{f} must be one of {', '.join(ok)}"
        for f, ok in _CIRCUIT.items()
        if circuit.get(f) not in ok
    ]
    problems += [
        f"{where}.{f} must be a non-negative number"
        for f in ("elapsed_ms", "request_count")
        if not _number(b.get(f))
    ]
    tokens = b.get("retry_tokens_remaining")
    if tokens is not None and tokens != "unbounded" and not _number(tokens):
        problems.append(f"{where}.retry_tokens_remaining must be a non-negative number or unbounded")
    return problems


def _rate(r: Any) -> list[str]:
    where = "PROGRESS.collection_rate"
    if not isinstance(r, dict):
        return [f"{where} must be an object"]
    if r.get("object") != "collection_rate":
        return [f"{where}.object must be collection_rate"]
    problems = [f"{where}.{f} must be a non-negative number" for f in _RATE_NUMBERS if not _number(r.get(f))]
    backoff = r.get("last_backoff")
    if backoff is not None:
        if not isinstance(backoff, dict):
            problems.append(f"{where}.last_backoff must be an object or null")
        elif not _number(backoff.get("at_interval_ms")) or backoff.get("reason") not in _BACKOFF_REASONS:
            problems.append(
                f"{where}.last_backoff needs at_interval_ms >= 0 and reason retry_after or throttle"
            )
    return problems


def _outcome(o: Any, name: str, counters: frozenset[str]) -> list[str]:
    where = f"PROGRESS.{name}"
    if not isinstance(o, dict):
        return [f"{where} must be an object"]
    if o.get("object") != name:
        return [f"{where}.object must be {name}"]
    if o.keys() != counters | {"object"}:
        return [f"{where} must have exactly the fields {', '.join(sorted(counters))}"]
    return [f"{where}.{f} must be a non-negative integer" for f in sorted(counters) if not _safe_count(o[f])]


def _attachments(msg: dict[str, Any]) -> list[str]:
    """The two attachment outcome blocks come together, and the failure stages add up to the
    recovery's `hydration_failed`."""
    recovery, failure = (
        msg.get("attachment_recovery_outcome"),
        msg.get("attachment_hydration_failure_outcome"),
    )
    if recovery is None and failure is None:
        return []
    problems = []
    if recovery is not None:
        problems += _outcome(recovery, "attachment_recovery_outcome", _RECOVERY_OUTCOME)
    if failure is not None:
        problems += _outcome(failure, "attachment_hydration_failure_outcome", _FAILURE_OUTCOME)
    if problems:
        return problems
    if recovery is None or failure is None:
        return ["PROGRESS.attachment_recovery_outcome and attachment_hydration_failure_outcome come together"]
    if sum(failure[f] for f in _FAILURE_OUTCOME) != recovery["hydration_failed"]:
        return ["PROGRESS.attachment_hydration_failure_outcome must add up to hydration_failed"]
    return []


def progress_problems(msg: dict[str, Any]) -> list[str]:
    """Why a PROGRESS is not one the reference accepts (but for a missing message)."""
    problems = [
        f"PROGRESS.{f} must be a non-negative number"
        for f in ("count", "total")
        if msg.get(f) is not None and not _number(msg[f])
    ]
    if isinstance(msg.get("message"), str) and not msg["message"].strip():
        problems.append("PROGRESS.message must not be empty")
    if isinstance(msg.get("stream"), str) and not msg["stream"].strip():
        problems.append("PROGRESS.stream must not be empty")
    if msg.get("provider_budget") is not None:
        problems += _budget(msg["provider_budget"])
    if msg.get("collection_rate") is not None:
        problems += _rate(msg["collection_rate"])
    return problems + _attachments(msg)
