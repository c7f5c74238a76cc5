"""Framing: a connector's stdout as lines, split on `\\n` only, bounded in length."""

from __future__ import annotations

from dataclasses import dataclass


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
            if len(chunk) <= limit and b"\r" not in chunk:
                # The common case stays in C: no line of the chunk can be too long or end in \r.
                out += pieces[1:]
            else:
                for line in pieces[1:]:
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
