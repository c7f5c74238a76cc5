"""A small SDK for writing PDPP connectors in Python.

    conn = Connector()
    start = conn.start()                      # the START message
    conn.record("notes", "n1", {"id": "n1", "text": "..."})
    conn.state("notes", {"offset": 1})
    conn.done()                               # DONE with the right count; exits 0

Scope and recovery: `conn.in_scope(stream)`, `conn.resources(stream)` /
`conn.exclude_resources(stream)` (or `conn.wants_resource(stream, id)`), `conn.recovery_only()`
and `conn.detail_gaps(stream)`; a served gap is answered with its RECORD plus
`conn.detail_gap_recovered(...)`, a fresh `conn.detail_gap(...)`, or `conn.detail_gap_attempted(...)`.

Every message is valid JSON on one `\\n`-terminated line: neither encoder emits raw newlines,
and integers beyond 64 bits are written exactly.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any, BinaryIO, NoReturn

import orjson

# Lines are written in batches: one pipe write per line would make the runtime read them a few
# at a time. A batch goes out when the next line would not fit in this many bytes, when a line
# finds it this old, and at every STATE and DONE.
WRITE_BUFFER_BYTES = 256 << 10
WRITE_BUFFER_SECONDS = 0.1


def _line(msg: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(msg, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # an integer beyond 64 bits: the stdlib writes it exactly
        return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class Connector:
    """Reads START from stdin, writes protocol messages to stdout."""

    def __init__(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None):
        self._in = stdin or sys.stdin.buffer
        self._out = stdout or sys.stdout.buffer
        # Lines not yet written, in a buffer allocated once (one that grows and shrinks with
        # each batch costs more than encoding the lines).
        self._buf = bytearray(WRITE_BUFFER_BYTES)
        self._used = 0
        self._pending_since = 0.0
        self.records_emitted = 0
        self.start_message: dict[str, Any] = {}

    # -- reading -----------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Read START. With PDPP_START_LOG set, also append it to that file: what the runtime
        asked for (scope, state, served gaps) is then visible when debugging a connector."""
        line = self._in.readline()
        msg: dict[str, Any] = orjson.loads(line)
        if msg.get("type") != "START":
            raise SystemExit(f"expected START, got {msg.get('type')!r}")
        log = os.environ.get("PDPP_START_LOG")
        if log:
            with open(log, "ab") as f:
                f.write(line.rstrip(b"\n") + b"\n")
        self.start_message = msg
        return msg

    def streams(self) -> list[str]:
        return [s["name"] for s in self.start_message.get("scope", {}).get("streams", [])]

    def cursor(self, stream: str) -> Any:
        return (self.start_message.get("state") or {}).get(stream)

    def time_range(self, stream: str) -> dict[str, str] | None:
        tr: dict[str, str] | None = self.scope(stream).get("time_range")
        return tr

    def scope(self, stream: str) -> dict[str, Any]:
        """The START scope entry of `stream` (empty when the stream is not in scope)."""
        for s in self.start_message.get("scope", {}).get("streams", []):
            if s.get("name") == stream:
                entry: dict[str, Any] = s
                return entry
        return {}

    def in_scope(self, stream: str) -> bool:
        return stream in self.streams()

    def resources(self, stream: str) -> list[str] | None:
        """The only resources of `stream` to collect, or None for all of them."""
        res: list[str] | None = self.scope(stream).get("resources")
        return None if res is None else [str(r) for r in res]

    def exclude_resources(self, stream: str) -> list[str]:
        """Resources of `stream` not to collect (a runtime extension to the protocol)."""
        return [str(r) for r in self.scope(stream).get("exclude_resources") or []]

    def wants_resource(self, stream: str, resource_id: str) -> bool:
        """Whether `resource_id` of `stream` is selected by `resources` and `exclude_resources`."""
        only = self.resources(stream)
        if only is not None and resource_id not in only:
            return False
        return resource_id not in self.exclude_resources(stream)

    def collection_mode(self) -> str:
        return str(self.start_message.get("collection_mode") or "incremental")

    def recovery_only(self) -> bool:
        """True when the runtime asks only to drain the served detail gaps, with no forward walk."""
        return bool(self.start_message.get("recovery_only"))

    def detail_gaps(self, stream: str | None = None) -> list[dict[str, Any]]:
        """The detail gaps the runtime served for recovery, optionally those of one stream."""
        gaps: list[dict[str, Any]] = self.start_message.get("detail_gaps") or []
        return [g for g in gaps if stream is None or g.get("stream") == stream]

    # -- writing -----------------------------------------------------------------------------

    def emit(self, msg: dict[str, Any]) -> None:
        self._write(_line(msg))

    def emit_raw_line(self, line: bytes) -> None:
        """Write `line` as it is, plus the newline. Only for reproducing connectors that wrote
        lines no JSON encoder would; everything else goes through `emit`."""
        self._write(line + b"\n")

    def _write(self, line: bytes) -> None:
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

    def record(
        self, stream: str, key: str | list[str], data: dict[str, Any], *, delete: bool = False
    ) -> None:
        msg: dict[str, Any] = {
            "type": "RECORD",
            "stream": stream,
            "key": key,
            "data": data,
            "emitted_at": _now(),
        }
        if delete:
            msg["op"] = "delete"
        self._write(_line(msg))
        self.records_emitted += 1

    def state(self, stream: str, cursor: dict[str, Any] | None) -> None:
        self.emit({"type": "STATE", "stream": stream, "cursor": cursor})
        self.flush()

    def skip(
        self,
        stream: str | None,
        reason: str,
        *,
        message: str | None = None,
        recovery_hint: str | dict[str, Any] | None = None,
        resource_ids: list[str] | None = None,
        time_range: dict[str, str] | None = None,
        retry_after_seconds: float | None = None,
        diagnostics: dict[str, Any] | None = None,
    ) -> None:
        msg: dict[str, Any] = {"type": "SKIP_RESULT", "reason": reason}
        for k, v in (
            ("stream", stream),
            ("message", message),
            ("recovery_hint", recovery_hint),
            ("resource_ids", resource_ids),
            ("time_range", time_range),
            ("retry_after_seconds", retry_after_seconds),
            ("diagnostics", diagnostics),
        ):
            if v is not None:
                msg[k] = v
        self.emit(msg)

    def detail_gap(
        self,
        stream: str,
        record_key: str,
        *,
        reason: str,
        retryable: bool = True,
        detail_locator: dict[str, Any] | None = None,
        parent_stream: str | None = None,
        retry_after_seconds: float | None = None,
        last_error: dict[str, Any] | None = None,
        gap_id: str | None = None,
        lease_id: str | None = None,
        recovery_hint: str | dict[str, Any] | None = None,
    ) -> None:
        """A record whose detail could not be fetched. `recovery_hint` (e.g. "refresh_credentials")
        says who can fix it when retrying alone will not."""
        msg: dict[str, Any] = {
            "type": "DETAIL_GAP",
            "stream": stream,
            "record_key": record_key,
            "reason": reason,
            "retryable": retryable,
        }
        for k, v in (
            ("detail_locator", detail_locator),
            ("parent_stream", parent_stream),
            ("retry_after_seconds", retry_after_seconds),
            ("last_error", last_error),
            ("gap_id", gap_id),
            ("lease_id", lease_id),
            ("recovery_hint", recovery_hint),
        ):
            if v is not None:
                msg[k] = v
        self.emit(msg)

    def detail_gap_recovered(
        self, gap_id: str, stream: str, *, record_key: str | None = None, lease_id: str | None = None
    ) -> None:
        """A served gap was fetched; send after the gap's RECORD."""
        msg: dict[str, Any] = {"type": "DETAIL_GAP_RECOVERED", "gap_id": gap_id, "stream": stream}
        for k, v in (("record_key", record_key), ("lease_id", lease_id)):
            if v is not None:
                msg[k] = v
        self.emit(msg)

    def detail_gap_attempted(self, gap_id: str, stream: str, *, lease_id: str | None = None) -> None:
        """A served gap was tried and not recovered (e.g. the item is gone upstream)."""
        msg: dict[str, Any] = {"type": "DETAIL_GAP_ATTEMPTED", "gap_id": gap_id, "stream": stream}
        if lease_id is not None:
            msg["lease_id"] = lease_id
        self.emit(msg)

    def detail_coverage(
        self,
        stream: str,
        state_stream: str,
        *,
        required_keys: list[str] | int,
        hydrated_keys: list[str] | int,
        gap_keys: list[str] | int | None = None,
    ) -> None:
        msg: dict[str, Any] = {
            "type": "DETAIL_COVERAGE",
            "reference_only": True,
            "stream": stream,
            "state_stream": state_stream,
            "required_keys": required_keys,
            "hydrated_keys": hydrated_keys,
        }
        if gap_keys is not None:
            msg["gap_keys"] = gap_keys
        self.emit(msg)

    def progress(
        self, message: str, *, stream: str | None = None, count: int | None = None, total: int | None = None
    ) -> None:
        msg: dict[str, Any] = {"type": "PROGRESS", "message": message}
        for k, v in (("stream", stream), ("count", count), ("total", total)):
            if v is not None:
                msg[k] = v
        self.emit(msg)

    def done(self, status: str = "succeeded", *, error: dict[str, Any] | None = None) -> NoReturn:
        """Send DONE with the true record count, wait for the runtime to close stdin, and exit
        with the code that agrees with `status`."""
        msg: dict[str, Any] = {"type": "DONE", "status": status, "records_emitted": self.records_emitted}
        if error is not None:
            msg["error"] = error
        self.emit(msg)
        self.flush()
        self._in.read()  # EOF: the runtime's acknowledgement
        raise SystemExit(0 if status == "succeeded" else 1)


_clock: tuple[int, str] = (0, "")


def _now() -> str:
    """The emission time to the second, formatted once per second."""
    global _clock
    second = int(time.time())
    if second != _clock[0]:
        _clock = (second, datetime.fromtimestamp(second, UTC).isoformat())
    return _clock[1]
