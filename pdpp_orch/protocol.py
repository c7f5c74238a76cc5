"""The PDPP connector wire protocol: framing, decoding and classification of each line.

Pure functions and small classes, no I/O, so the reader loop can be fuzzed and unit-tested.
Every line ends up either as an accepted message or as a `LineError` with a kind.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from pdpp_orch.models import RecoveryClass

MESSAGE_TYPES = frozenset(
    {
        "RECORD",
        "STATE",
        "SKIP_RESULT",
        "DETAIL_GAP",
        "DETAIL_COVERAGE",
        "DETAIL_GAP_RECOVERED",
        "DETAIL_GAP_ATTEMPTED",
        "PROGRESS",
        "INTERACTION",
        "DONE",
    }
)

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

# orjson writes values nested at most 254 deep, and a message is one level around its values:
# anything deeper could be read but never written back (or stored).
MAX_NESTING = 254
# Longer than any real Retry-After, and short enough for datetime arithmetic.
MAX_RETRY_AFTER_S = 366 * 86400.0
_PRESSURE = re.compile(r"rate.?limit|429|quota|throttl|too.?many", re.IGNORECASE)
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # fullmatch: `$` also matches before a \n
# U+0000 in JSON text, as orjson and json write it: \u0000 after an even run of backslashes.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


@dataclass(frozen=True, slots=True)
class LineError:
    """A line that is not an acceptable message; `kind` is the classification."""

    kind: str
    detail: str
    size: int = 0


class LineSplitter:
    """Splits a byte stream on `\\n` only (one trailing `\\r` stripped); U+2028/U+2029 inside
    strings are data. Lines longer than `max_line_bytes` are dropped whole and reported with
    their length instead of being buffered without bound."""

    def __init__(self, max_line_bytes: int):
        self.max_line_bytes = max_line_bytes
        self._partial = bytearray()
        self._oversize = 0  # bytes of an oversize line seen so far, 0 when none

    def feed(self, chunk: bytes) -> list[bytes | LineError]:
        """Complete lines in `chunk` (with whatever was pending before it)."""
        pieces = chunk.split(b"\n")
        rest = pieces.pop()  # after the last newline: not a line yet
        out: list[bytes | LineError] = []
        if pieces:
            first = pieces[0]
            if self._oversize:
                out.append(self._too_long(self._oversize + len(first)))
                self._oversize = 0
            else:
                if self._partial:
                    self._partial += first
                    first = bytes(self._partial)
                    self._partial.clear()
                out.append(self._line(first))
            limit = self.max_line_bytes
            for line in pieces[1:]:
                # The common case stays in C: only odd lines take the slow path.
                out.append(self._line(line) if len(line) > limit or line.endswith(b"\r") else line)
        self._keep(rest)
        return out

    def finish(self) -> list[bytes | LineError]:
        """The unterminated tail at EOF, if any, as a final line."""
        if self._oversize:
            n, self._oversize = self._oversize, 0
            return [self._too_long(n)]
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            return [self._line(line)]
        return []

    def _keep(self, rest: bytes) -> None:
        if not rest:
            return
        if self._oversize:
            self._oversize += len(rest)
            return
        # One byte more than the limit may be the `\r` that is stripped once the line ends.
        if len(self._partial) + len(rest) > self.max_line_bytes + 1:
            self._oversize = len(self._partial) + len(rest)
            self._partial.clear()
            return
        self._partial += rest

    def _line(self, line: bytes) -> bytes | LineError:
        text = line[:-1] if line.endswith(b"\r") else line
        if len(text) > self.max_line_bytes:
            # The size as received, like that of a line dropped before its end was seen.
            return self._too_long(len(line))
        return text

    def _too_long(self, n: int) -> LineError:
        detail = f"line of {n} bytes exceeds the {self.max_line_bytes}-byte limit"
        return LineError("line_too_long", detail, n)


# msgspec reads every integer exactly (up to 4,300 digits, as Python does), and refuses floats
# beyond a double (as orjson does), invalid UTF-8, lone surrogates and control characters.
_DECODER = msgspec.json.Decoder()


def _nested_deeper_than(value: Any, limit: int) -> bool:
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        v, depth = todo.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, list):
            continue
        if depth == limit:
            return True
        todo.extend((x, depth + 1) for x in v)
    return False


def decode(line: bytes) -> dict[str, Any] | LineError:
    """Decode one line into a message object with a known `type`, or classify why not."""
    try:
        msg = _DECODER.decode(line)
    except (msgspec.DecodeError, ValueError, RecursionError) as e:
        return LineError("invalid_json", str(e)[:200])
    if line.count(b"[") + line.count(b"{") > MAX_NESTING and _nested_deeper_than(msg, MAX_NESTING):
        return LineError("invalid_json", f"nested deeper than {MAX_NESTING} levels")
    if not isinstance(msg, dict):
        return LineError("not_an_object", f"a JSON {type(msg).__name__}, not an object")
    t = msg.get("type")
    if t not in MESSAGE_TYPES:
        return LineError("unknown_type", f"unknown message type {str(t)[:64]!r}")
    return msg


_ENCODER = msgspec.json.Encoder()


def record_data(value: Any) -> bytes:
    """Compact JSON of a record's data, integers exact. (Not orjson: its output keeps spare
    capacity that a batch of 20,000 records held in memory pays for in heap growth.)"""
    return _ENCODER.encode(value)


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON (keys sorted when it is an identity); exact for integers beyond 64 bits,
    which orjson cannot write."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys).encode()


def contains_nul(json_bytes: bytes) -> bool:
    """Whether JSON text holds an escaped U+0000 (not the text `\\u0000`), which PostgreSQL's
    jsonb cannot store."""
    return b"\\u0000" in json_bytes and _NUL_ESCAPE.search(json_bytes) is not None


def record_key(msg: dict[str, Any], primary_key: list[str]) -> str | LineError:
    """The storage key of a RECORD, after checking it matches the manifest's primary key."""
    key = msg.get("key")
    data = msg.get("data")
    if (
        key.__class__ is str
        and len(primary_key) == 1
        and data.__class__ is dict
        and data.get(primary_key[0]) == key
        and "op" not in msg
    ):
        return key  # the common case, in one test
    if not isinstance(data, dict):
        return LineError("schema_invalid", "RECORD.data must be an object")
    if isinstance(key, str):
        parts: list[Any] = [key]
    elif isinstance(key, list) and key and all(isinstance(k, str) for k in key):
        parts = key
    else:
        return LineError("schema_invalid", "RECORD.key must be a string or a list of strings")
    if len(parts) != len(primary_key):
        return LineError("key_mismatch", f"key has {len(parts)} parts, primary_key has {len(primary_key)}")
    for part, field in zip(parts, primary_key, strict=True):
        value = data.get(field)
        if value is None or _key_text(value) != part:
            return LineError("key_mismatch", f"key does not match data[{field!r}]")
    op = msg.get("op")
    if op is not None and op != "delete":
        return LineError("schema_invalid", "RECORD.op must be absent or 'delete'")
    if len(parts) == 1:
        return str(parts[0])
    return orjson.dumps(parts).decode()


def strict_record(key: str, data: bytes) -> bytes | LineError:
    """A record's data as the collector stores it, or why PostgreSQL cannot store the record:
    for the store to sort out a batch PostgreSQL refused."""
    if "\x00" in key:
        return LineError("schema_invalid", "key contains \\u0000, which PostgreSQL text cannot store")
    msg = decode(b'{"type":"RECORD","data":' + data + b"}")
    if isinstance(msg, LineError):
        return msg
    out = record_data(msg["data"])
    if contains_nul(out):
        return LineError("schema_invalid", "data contains \\u0000, which PostgreSQL jsonb cannot store")
    return out


def _key_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_recovery_hint(value: Any) -> tuple[str, bool | None] | LineError:
    """A recovery_hint is a bare action or {action, retryable?}; anything else is a violation."""
    if isinstance(value, str):
        action, retryable = value, None
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


def retry_after_seconds(msg: dict[str, Any]) -> float | None:
    """The upstream's own wait signal, wherever a connector put it."""
    for holder in (msg, msg.get("diagnostics"), msg.get("last_error"), msg.get("error")):
        if isinstance(holder, dict):
            v = holder.get("retry_after_seconds")
            if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0:
                return float(min(v, MAX_RETRY_AFTER_S))
    return None


def check_fields(msg: dict[str, Any]) -> LineError | None:
    """Type checks for the non-RECORD messages (RECORD is checked by `record_key`)."""
    t = msg["type"]
    problems: list[str] = []

    def want(field: str, types: type | tuple[type, ...], required: bool = False) -> None:
        v = msg.get(field)
        if v is None:
            if required:
                problems.append(f"{t}.{field} is required")
        elif not isinstance(v, types) or (isinstance(v, bool) and bool not in _as_tuple(types)):
            problems.append(f"{t}.{field} has the wrong type")

    if t == "STATE":
        want("stream", str, True)
        if "cursor" not in msg:
            problems.append("STATE.cursor is required")
        elif msg["cursor"] is not None and not isinstance(msg["cursor"], dict):
            problems.append("STATE.cursor must be an object or null")
    elif t == "SKIP_RESULT":
        want("stream", str)
        want("reason", str)
        want("message", str)
        want("resource_ids", list)
        want("time_range", dict)
        want("diagnostics", dict)
    elif t == "DETAIL_GAP":
        want("stream", str, True)
        want("parent_stream", str)
        want("reason", str)
        want("retryable", bool)
        want("detail_locator", (dict, str))
        want("gap_id", str)
        if not isinstance(msg.get("record_key"), str | list | type(None)):
            problems.append("DETAIL_GAP.record_key has the wrong type")
    elif t == "DETAIL_COVERAGE":
        want("stream", str, True)
        want("state_stream", str)
        for f in ("required_keys", "hydrated_keys", "gap_keys"):
            v = msg.get(f)
            if v is not None and not isinstance(v, list) and not _is_count(v):
                problems.append(f"DETAIL_COVERAGE.{f} must be a list of keys or a count")
        if msg.get("required_keys") is None:
            problems.append("DETAIL_COVERAGE.required_keys is required")
    elif t in ("DETAIL_GAP_RECOVERED", "DETAIL_GAP_ATTEMPTED"):
        want("gap_id", str, True)
        want("stream", str, True)
    elif t == "PROGRESS":
        want("message", str)
    elif t == "INTERACTION":
        want("request_id", str, True)
        want("kind", str, True)
    elif t == "DONE":
        status = msg.get("status")
        if status not in ("succeeded", "failed", "cancelled"):
            problems.append("DONE.status must be succeeded, failed or cancelled")
        n = msg.get("records_emitted")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            problems.append("DONE.records_emitted must be a non-negative integer")
        err = msg.get("error")
        if err is not None:
            if not isinstance(err, dict):
                problems.append("DONE.error must be an object")
            else:
                code = err.get("code")
                if code is not None and not (isinstance(code, str) and _ERROR_CODE.fullmatch(code)):
                    problems.append("DONE.error.code must be snake_case, at most 64 characters")
    if not problems and _NUL_ESCAPE.search(dumps(msg)):
        problems.append(f"{t} contains \\u0000, which PostgreSQL text and jsonb cannot store")
    if problems:
        return LineError("schema_invalid", "; ".join(problems))
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def count_or_len(value: Any) -> int:
    if isinstance(value, list):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 0
