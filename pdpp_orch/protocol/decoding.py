"""Decoding one line into a message, and writing JSON back exactly (big integers included)."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import orjson

from pdpp_orch.protocol.framing import LineError

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
        "DETAIL_GAPS_PAGE_REQUEST",
        "ASSISTANCE",
        "ASSISTANCE_STATUS",
    }
)

# orjson writes values nested at most 254 deep, and a message is one level around its values:
# anything deeper could be read but never written back (or stored).
MAX_NESTING = 254
# U+0000 in JSON text, as orjson and json write it: \u0000 after an even run of backslashes.
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


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


class Envelope(msgspec.Struct):
    """What the worker reads of a line to take a RECORD: its type, stream, key, op and emitted_at,
    and its `data` as the bytes it arrived as (checked as JSON text, not decoded). Every other field is
    skipped, checked as JSON text too. PostgreSQL's jsonb reads `data` when the batch is written,
    which it does anyway; it refuses what it cannot store (store/records.py)."""

    type: str
    stream: str | None = None
    key: str | list[str] | None = None
    op: str | None = None
    emitted_at: str | None = None
    data: msgspec.Raw = msgspec.Raw()


_ENVELOPE = msgspec.json.Decoder(Envelope)
# Numbers of any size: only the nesting is looked at.
_NESTING = msgspec.json.Decoder(float_hook=lambda _: 0)


def envelope(line: bytes) -> Envelope | None:
    """The envelope of a line, or None when it has none of the right types (not JSON, not an
    object, a field of the wrong type): `decode` then says what the line is, or why not."""
    try:
        return _ENVELOPE.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return None


def record_envelope(line: bytes) -> Envelope | None:
    """The envelope of a RECORD line, read without decoding its data, or None when the line is
    not one that can be read so (another message, or not a message): `decode` then has it."""
    env = envelope(line)
    return env if env is not None and env.type == "RECORD" and readable(line) else None


def readable(line: bytes) -> bool:
    """Whether a line whose envelope was read is whole as a message: UTF-8 throughout (skipped
    text is not checked for it) and nested no deeper than can be written back."""
    if not line.isascii():
        try:
            line.decode()
        except UnicodeDecodeError:
            return False
    if line.count(b"[") + line.count(b"{") <= MAX_NESTING:
        return True
    try:
        return not _nested_deeper_than(_NESTING.decode(line), MAX_NESTING)
    except (msgspec.DecodeError, RecursionError):
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
    return b"\\u0000" in json_bytes and NUL_ESCAPE.search(json_bytes) is not None
