"""Field checks of every message type but RECORD (checked by records.record_key): a table of
the typed fields each type may carry, plus the few rules a type check cannot say."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from pdpp_orch.protocol.decoding import NUL_ESCAPE, dumps
from pdpp_orch.protocol.framing import LineError
from pdpp_orch.protocol.progress import finite, progress_problems

_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # fullmatch: `$` also matches before a \n

Types = type | tuple[type, ...]
# type -> field -> (accepted types, required)
FIELDS: dict[str, dict[str, tuple[Types, bool]]] = {
    "STATE": {"stream": (str, True)},
    "SKIP_RESULT": {
        "stream": (str, False),
        "reason": (str, False),
        "message": (str, False),
        "resource_ids": (list, False),
        "resources": (list, False),
        "time_range": (dict, False),
        # `diagnostics` is any JSON, as in the reference (which keeps it bounded).
    },
    "DETAIL_GAP": {
        "stream": (str, True),
        "parent_stream": (str, False),
        "reason": (str, False),
        "retryable": (bool, False),
        "detail_locator": ((dict, str), False),
        "gap_id": (str, False),
        "record_key": ((str, int, float, list), False),  # a number is its text, as in the reference
    },
    "DETAIL_COVERAGE": {"stream": (str, True), "state_stream": (str, False)},
    "DETAIL_GAP_RECOVERED": {"gap_id": (str, True), "stream": (str, True)},
    "DETAIL_GAP_ATTEMPTED": {"gap_id": (str, True), "stream": (str, True)},
    "PROGRESS": {"message": (str, False), "stream": (str, False)},
    "INTERACTION": {
        "request_id": (str, True),
        "kind": (str, True),
        "message": (str, False),
        "stream": (str, False),
        "schema": (dict, False),
    },
    "DETAIL_GAPS_PAGE_REQUEST": {"request_id": (str, True), "streams": (list, False)},
    "ASSISTANCE": {
        "assistance_request_id": (str, False),
        "message": (str, True),
        "owner_action": (str, True),
        "progress_posture": (str, True),
        "response_contract": (str, True),
        "sensitivity": (str, False),
        "input_schema": (dict, False),
        "attachments": (list, False),
        "stream": (str, False),
    },
    "ASSISTANCE_STATUS": {
        "assistance_request_id": (str, True),
        "status": (str, True),
        "message": (str, False),
    },
}

# The reference's INTERACTION kinds.
INTERACTION_KINDS = ("credentials", "otp", "manual_action")
# The reference's vocabularies for owner assistance.
OWNER_ACTIONS = ("none", "act_elsewhere", "provide_value", "operate_attachment")
POSTURES = ("running", "blocked", "waiting_retry")
SENSITIVITIES = ("none", "non_secret", "secret")
ATTACHMENT_KINDS = ("browser_surface", "url", "qr", "file", "fixture")
ASSISTANCE_STATUSES = ("resolved", "cancelled", "timed_out", "escalated")


def _typed(t: str, msg: dict[str, Any]) -> list[str]:
    problems = []
    for field, (types, required) in FIELDS.get(t, {}).items():
        v = msg.get(field)
        if v is None:
            if required:
                problems.append(f"{t}.{field} is required")
        elif not isinstance(v, types) or (isinstance(v, bool) and bool not in _as_tuple(types)):
            problems.append(f"{t}.{field} has the wrong type")
    return problems


def _state(msg: dict[str, Any]) -> list[str]:
    # An absent cursor is a null one, as in the reference.
    if msg.get("cursor") is not None and not isinstance(msg["cursor"], dict):
        return ["STATE.cursor must be an object or null"]
    return []


def _coverage(msg: dict[str, Any]) -> list[str]:
    problems = []
    for f in ("required_keys", "hydrated_keys", "gap_keys", "optional_skip_keys"):
        v = msg.get(f)
        if v is not None and not isinstance(v, list) and not _is_count(v):
            problems.append(f"DETAIL_COVERAGE.{f} must be a list of keys or a count")
    if msg.get("required_keys") is None:
        problems.append("DETAIL_COVERAGE.required_keys is required")
    return problems


def _done(msg: dict[str, Any]) -> list[str]:
    problems = []
    if msg.get("status") not in ("succeeded", "failed", "cancelled"):
        problems.append("DONE.status must be succeeded, failed or cancelled")
    if not _is_count(msg.get("records_emitted")):
        problems.append("DONE.records_emitted must be a non-negative integer")
    err = msg.get("error")
    if err is not None and not isinstance(err, dict):
        problems.append("DONE.error must be an object")
    elif err is not None:
        code = err.get("code")
        if code is not None and not (isinstance(code, str) and _ERROR_CODE.fullmatch(code)):
            problems.append("DONE.error.code must be snake_case, at most 64 characters")
    return problems


def _interaction(msg: dict[str, Any]) -> list[str]:
    """The reference's rules for INTERACTION (its `message` is optional here: lenient)."""
    t = "INTERACTION"
    problems = _not_blank(msg, t, "request_id", "message", "stream") + _one_of(
        msg, t, "kind", INTERACTION_KINDS
    )
    timeout = msg.get("timeout_seconds")
    if timeout is not None and not (finite(timeout) and timeout > 0):
        problems.append("INTERACTION.timeout_seconds must be a positive number")
    return problems


def _page_request(msg: dict[str, Any]) -> list[str]:
    """The reference's rules for DETAIL_GAPS_PAGE_REQUEST."""
    problems = []
    if msg.get("reference_only") is not True:
        problems.append("DETAIL_GAPS_PAGE_REQUEST.reference_only must be true")
    rid = msg.get("request_id")
    if isinstance(rid, str) and not rid.strip():
        problems.append("DETAIL_GAPS_PAGE_REQUEST.request_id must not be empty")
    streams = msg.get("streams")
    if isinstance(streams, list) and not all(isinstance(s, str) and s.strip() for s in streams):
        problems.append("DETAIL_GAPS_PAGE_REQUEST.streams must be non-empty strings")
    size = msg.get("max_bytes")
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int | float) or not math.isfinite(size) or size <= 0
    ):
        problems.append("DETAIL_GAPS_PAGE_REQUEST.max_bytes must be a positive number")
    return problems


def _one_of(msg: dict[str, Any], t: str, field: str, allowed: tuple[str, ...]) -> list[str]:
    v = msg.get(field)
    if isinstance(v, str) and v not in allowed:
        return [f"{t}.{field} must be one of {', '.join(allowed)}"]
    return []


def _not_blank(msg: dict[str, Any], t: str, *fields: str) -> list[str]:
    return [
        f"{t}.{f} must not be empty" for f in fields if isinstance(msg.get(f), str) and not msg[f].strip()
    ]


def _assistance(msg: dict[str, Any]) -> list[str]:
    """The reference's rules for ASSISTANCE, a notice that never blocks: no answer is written
    back, so `response_contract` must be `none`."""
    t = "ASSISTANCE"
    problems = _not_blank(msg, t, "assistance_request_id", "message", "stream")
    problems += _one_of(msg, t, "owner_action", OWNER_ACTIONS)
    problems += _one_of(msg, t, "progress_posture", POSTURES)
    problems += _one_of(msg, t, "sensitivity", SENSITIVITIES)
    if isinstance(msg.get("response_contract"), str) and msg["response_contract"] != "none":
        problems.append("ASSISTANCE.response_contract must be none (ASSISTANCE never waits for an answer)")
    timeout = msg.get("timeout_seconds")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf
    ):
        problems.append("ASSISTANCE.timeout_seconds must be a positive number")
    for i, a in enumerate(msg.get("attachments") or []):
        if not isinstance(a, dict):
            problems.append(f"ASSISTANCE.attachments[{i}] must be an object")
            continue
        if a.get("kind") not in ATTACHMENT_KINDS:
            problems.append(f"ASSISTANCE.attachments[{i}].kind must be one of {', '.join(ATTACHMENT_KINDS)}")
        for f in ("role", "status", "availability"):
            if f in a and a[f] is not None and not (isinstance(a[f], str) and a[f].strip()):
                problems.append(f"ASSISTANCE.attachments[{i}].{f} must be a non-empty string")
    return problems


def _assistance_status(msg: dict[str, Any]) -> list[str]:
    t = "ASSISTANCE_STATUS"
    return _not_blank(msg, t, "assistance_request_id", "message") + _one_of(
        msg, t, "status", ASSISTANCE_STATUSES
    )


RULES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "INTERACTION": _interaction,
    "PROGRESS": progress_problems,
    "ASSISTANCE": _assistance,
    "ASSISTANCE_STATUS": _assistance_status,
    "STATE": _state,
    "DETAIL_COVERAGE": _coverage,
    "DONE": _done,
    "DETAIL_GAPS_PAGE_REQUEST": _page_request,
}


def check_fields(msg: dict[str, Any]) -> LineError | None:
    """Why a non-RECORD message is malformed (`schema_invalid`), or None."""
    t = msg["type"]
    problems = _typed(t, msg)
    if t in RULES:
        problems += RULES[t](msg)
    if not problems and NUL_ESCAPE.search(dumps(msg)):
        problems.append(f"{t} contains \\u0000, which PostgreSQL text and jsonb cannot store")
    if problems:
        return LineError("schema_invalid", "; ".join(problems))
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _as_tuple(types: Types) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def count_or_len(value: Any) -> int:
    """A DETAIL_COVERAGE key field as a number: its length if a list, itself if a count."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 0
