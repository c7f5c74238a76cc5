"""RECORD: its storage key, checked against the manifest's primary key, and the full check of
its data for a batch PostgreSQL refused."""

from __future__ import annotations

from typing import Any

import orjson

from pdpp_orch.protocol.decoding import contains_nul, decode, record_data
from pdpp_orch.protocol.framing import LineError


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
