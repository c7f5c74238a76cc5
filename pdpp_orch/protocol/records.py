"""RECORD: its storage key, checked against the manifest's primary key as the PDPP reference
implementation checks it, and what PostgreSQL is known to refuse of it.

What is accepted (the reference's record store, `assertRecordIdentity`, and its runtime's
`assertValidRecordEnvelope`):
- `key` is a non-empty string or a non-empty list of non-empty strings; it is stored as sent: a
  string as it is, a list as its compact JSON (`["a","b"]`, and `["a"]` too: two records).
- `emitted_at` is a non-empty string.
- `op` is absent, null or `"delete"`; a delete needs no `data` (a tombstone addresses its key).
- Otherwise `data` is an object. For each primary-key field `i`, when `data` has the field and
  the key has a part `i`, the two must agree as text. A key with fewer parts than the primary
  key, and primary-key fields missing from `data`, are accepted (not compared): the reference's
  own connectors send `key = String(data.id)` for a two-field primary key.
- In a run whose stream has a `time_range`, a record (not a delete) whose manifest
  `consent_time_field` is missing or outside the range is refused (TimeWindow).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import orjson

from pdpp_orch.protocol.decoding import Envelope, contains_nul
from pdpp_orch.protocol.framing import LineError

MISSING: Any = object()  # a primary-key field `data` does not have


_BAD_KEY = LineError("schema_invalid", "RECORD.key must be a non-empty string or a list of them")
_NO_EMITTED_AT = LineError("schema_invalid", "RECORD.emitted_at must be a non-empty string")


def record_key(msg: dict[str, Any], primary_key: list[str]) -> str | LineError:
    """The storage key of a RECORD, after checking it agrees with the manifest's primary key."""
    key = msg.get("key")
    data = msg.get("data")
    emitted_at = msg.get("emitted_at")
    if not (isinstance(emitted_at, str) and emitted_at):
        return _NO_EMITTED_AT
    if (
        key.__class__ is str
        and key
        and len(primary_key) == 1
        and data.__class__ is dict
        and data.get(primary_key[0]) == key
        and "op" not in msg
    ):
        return key  # the common case, in one test
    if isinstance(key, str) and key:
        parts: list[str] = [key]
        stored = key
    elif isinstance(key, list) and key and all(isinstance(k, str) and k for k in key):
        parts = key
        stored = orjson.dumps(key).decode()
    else:
        return _BAD_KEY
    op = msg.get("op")
    if op is not None and op != "delete":
        return LineError("schema_invalid", "RECORD.op must be absent or 'delete'")
    if not isinstance(data, dict):
        if op == "delete":
            return stored  # a tombstone: its key is enough
        return LineError("schema_invalid", "RECORD.data must be an object")
    err = identity(parts, [data.get(f, MISSING) for f in primary_key], primary_key)
    return err or stored


def identity(parts: Sequence[str], values: Sequence[Any], primary_key: Sequence[str]) -> LineError | None:
    """Why a key disagrees with its record's primary-key values (MISSING where `data` lacks the
    field), or None. Only positions both have are compared, as text."""
    for part, value, field in zip(parts, values, primary_key, strict=False):
        if value is not MISSING and key_text(value) != part:
            return LineError("key_mismatch", f"key does not match data[{field!r}]")
    return None


def key_text(value: Any) -> str | None:
    """A primary-key value as the text a key part must equal (JavaScript's `String(value)`, as
    the reference compares them, except that integers stay exact); None for an object or a
    list, which no key part equals."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number_text(value)
    return None


def _number_text(v: float) -> str:
    """A double as JavaScript writes it: its shortest digits, positional from 1e-7 to 1e21."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0:
        return "0"
    d = Decimal(repr(v)).normalize()
    exponent = d.adjusted()
    if -7 < exponent < 21:
        return format(d, "f")
    digits = "".join(map(str, d.as_tuple().digits))
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{'-' if v < 0 else ''}{mantissa}e{'+' if exponent > 0 else '-'}{abs(exponent)}"


_NOT_AN_OBJECT = LineError("schema_invalid", "RECORD.data must be an object")


class TimeWindow:
    """A stream's START `time_range` over its manifest's `consent_time_field`, as the reference
    admits records by it: the field's value must be there and read as a time (an ISO 8601 text
    or milliseconds since the epoch), `since` <= it < `until`: half-open, as every range of
    this runtime (pdpp_orch/ranges.py). An `until` that is a date alone is its midnight, UTC."""

    __slots__ = ("field", "since", "until", "value")

    def __init__(self, field: str, since: str | None, until: str | None):
        self.field = field
        self.since = _instant(since) if since else None
        self.until = _instant(until) if until else None
        one = msgspec.defstruct("When", [("v", Any, msgspec.UNSET)], rename={"v": field})
        self.value: Callable[[msgspec.Raw | bytes], Any] = msgspec.json.Decoder(one, float_hook=float).decode

    def refusal(self, data: msgspec.Raw | bytes) -> LineError | None:
        """Why a record's data is outside the window, or None."""
        try:
            value = self.value(data).v
        except msgspec.DecodeError:
            return None  # not an object: the key check says so
        return self.check(None if value is msgspec.UNSET else value)

    def check(self, value: Any) -> LineError | None:
        """Why a consent time field's value is outside the window, or None."""
        at = _instant(value) if value and not isinstance(value, bool) else None
        if at is None:
            return LineError("out_of_time_range", f"data[{self.field!r}] is not a time")
        if (self.since is not None and at < self.since) or (self.until is not None and at >= self.until):
            return LineError("out_of_time_range", f"data[{self.field!r}] is outside the run's time_range")
        return None


def _instant(value: Any) -> float | None:
    """Milliseconds since the epoch of a number or an ISO 8601 text (no offset: UTC), or None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            ms = float(value)
        except OverflowError:  # an integer beyond a double
            return None
        return ms if math.isfinite(ms) else None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000


class RecordRules:
    """The rules above for the RECORDs of one stream, read from their envelope: the primary-key
    fields are the only part of `data` decoded (the rest is skipped as JSON text), and the
    consent time field when the run has a time window for the stream."""

    __slots__ = ("primary_key", "single", "values", "window")

    def __init__(self, primary_key: list[str], window: TimeWindow | None = None):
        self.primary_key = primary_key
        self.window = window
        # The inline path of the read loop: one primary-key field and nothing else to check.
        self.single = len(primary_key) == 1 and window is None
        fields = [(f"f{i}", Any, msgspec.UNSET) for i in range(len(primary_key))]
        values = msgspec.defstruct(
            "PrimaryKey", fields, rename={f"f{i}": name for i, name in enumerate(primary_key)}
        )
        # A number beyond a double is Infinity, as JavaScript reads it.
        self.values: Callable[[msgspec.Raw], Any] = msgspec.json.Decoder(values, float_hook=float).decode

    def key(self, env: Envelope) -> str | LineError:
        """The storage key of a RECORD, after checking it agrees with its primary-key values."""
        key = env.key
        if env.op is None and key.__class__ is str and key and self.single and env.emitted_at:
            try:
                value = self.values(env.data).f0
            except msgspec.DecodeError:
                return _NOT_AN_OBJECT
            if value == key or value is msgspec.UNSET:
                return key  # the common case
        return self._key(env)

    def _key(self, env: Envelope) -> str | LineError:
        key = env.key
        if not env.emitted_at:
            return _NO_EMITTED_AT
        if isinstance(key, str) and key:
            parts: list[str] = [key]
            stored = key
        elif key and all(key):  # a non-empty list of non-empty strings (the envelope has the types)
            parts = key
            stored = orjson.dumps(key).decode()
        else:
            return _BAD_KEY
        if env.op is not None and env.op != "delete":
            return LineError("schema_invalid", "RECORD.op must be absent or 'delete'")
        try:
            found = self.values(env.data)
        except msgspec.DecodeError:
            return stored if env.op == "delete" else _NOT_AN_OBJECT  # a tombstone needs no data
        values = [getattr(found, f"f{i}") for i in range(len(self.primary_key))]
        err = identity(parts, [MISSING if v is msgspec.UNSET else v for v in values], self.primary_key)
        if err is None and self.window is not None and env.op is None:
            err = self.window.refusal(env.data)
        return err or stored


def refusal(key: str, data: msgspec.Raw | bytes) -> LineError | None:
    """Why PostgreSQL cannot store a record, when that can be told without asking it: U+0000 in
    its key (text) or data (jsonb). For the store to sort out a batch PostgreSQL refused."""
    if "\x00" in key:
        return LineError("schema_invalid", "key contains \\u0000, which PostgreSQL text cannot store")
    if contains_nul(bytes(data)):
        return LineError("schema_invalid", "data contains \\u0000, which PostgreSQL jsonb cannot store")
    return None
