"""Protocol lines for connectors: one message encoded as one line, lines batched into few writes.

Every line is valid JSON on one `\\n`-terminated line: neither encoder emits raw newlines, and
integers beyond 64 bits are written exactly.
"""

from __future__ import annotations

import json
import time
from typing import Any, BinaryIO

import orjson

# Lines are written in batches: one pipe write per line would make the runtime read them a few
# at a time. A batch goes out when the next line would not fit in this many bytes, when a line
# finds it this old, and whenever the connector flushes (at every STATE and DONE).
WRITE_BUFFER_BYTES = 256 << 10
WRITE_BUFFER_SECONDS = 0.1


def encode_line(msg: dict[str, Any]) -> bytes:
    """`msg` as one JSON line, newline included."""
    try:
        return orjson.dumps(msg, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        pass
    # A dict with keys that are not strings (OPT_NON_STR_KEYS costs a third more on every
    # line, so only for the line that needs it), or an integer beyond 64 bits: the stdlib
    # writes it exactly.
    try:
        return orjson.dumps(msg, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class LineWriter:
    """Lines to `out`, batched in a buffer allocated once (one that grows and shrinks with each
    batch costs more than encoding the lines)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._buf = bytearray(WRITE_BUFFER_BYTES)
        self._view = memoryview(self._buf)  # assigning to it costs half a bytearray slice
        self._used = 0
        self._flush_at = 0.0  # when the oldest line queued is WRITE_BUFFER_SECONDS old

    def write(self, line: bytes) -> None:
        """Queue `line` (newline included); a line larger than the buffer goes out at once."""
        used = self._used
        end = used + len(line)
        if end > WRITE_BUFFER_BYTES:
            self.flush()
            if len(line) > WRITE_BUFFER_BYTES:
                self._out.write(line)
                self._out.flush()
                return
            used, end = 0, len(line)
        now = time.monotonic()
        if not used:
            self._flush_at = now + WRITE_BUFFER_SECONDS
        self._view[used:end] = line
        self._used = end
        if now >= self._flush_at:
            self.flush()

    def flush(self) -> None:
        """Send every line written so far."""
        if self._used:
            with memoryview(self._buf) as view:
                self._out.write(view[: self._used])
            self._used = 0
        self._out.flush()
