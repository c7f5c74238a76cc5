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
        return orjson.dumps(msg, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # an integer beyond 64 bits: the stdlib writes it exactly
        return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class LineWriter:
    """Lines to `out`, batched in a buffer allocated once (one that grows and shrinks with each
    batch costs more than encoding the lines)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._buf = bytearray(WRITE_BUFFER_BYTES)
        self._used = 0
        self._pending_since = 0.0

    def write(self, line: bytes) -> None:
        """Queue `line` (newline included); a line larger than the buffer goes out at once."""
        end = self._used + len(line)
        if end > len(self._buf):
            self.flush()
            if len(line) > len(self._buf):
                self._out.write(line)
                self._out.flush()
                return
            end = len(line)
        if not self._used:
            self._pending_since = time.monotonic()
        self._buf[self._used : end] = line
        self._used = end
        if time.monotonic() - self._pending_since >= WRITE_BUFFER_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Send every line written so far."""
        if self._used:
            with memoryview(self._buf) as view:
                self._out.write(view[: self._used])
            self._used = 0
        self._out.flush()
