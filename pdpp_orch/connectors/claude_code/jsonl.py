"""Session-log lines as Claude Code (JavaScript) writes them, and text PostgreSQL can store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson


def events(data: bytes) -> Iterator[tuple[int, Any]]:
    """`(line number, parsed value)` of every non-blank line; the value is None if not JSON."""
    for lineno, line in enumerate(data.split(b"\n"), 1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line or line.isspace():
            continue
        yield lineno, loads(line)


def loads(line: bytes) -> Any:
    """Parse one line; None if it is not JSON.

    orjson rejects lone UTF-16 surrogates, which JavaScript writes as escapes (a tool output cut
    mid-pair), and integers beyond 64 bits; the stdlib accepts both, and a surrogate becomes `?`.
    """
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    try:
        value = json.loads(line)
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)  # NaN/Infinity are not JSON
    except (ValueError, RecursionError):
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.loads(text.encode("utf-8", "replace"))
    return value


def clean(text: str) -> str:
    """`text` with U+0000 replaced: PostgreSQL jsonb cannot store it, and tool output from
    binary files contains it."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
