"""A small SDK for writing PDPP connectors in Python.

    conn = Connector()
    start = conn.start()                      # the START message
    conn.record("notes", "n1", {"id": "n1", "text": "..."})
    conn.state("notes", {"offset": 1})
    conn.done()                               # DONE with the right count; exits 0

Every message is valid JSON on one `\\n`-terminated line: neither encoder emits raw newlines,
and integers beyond 64 bits are written exactly.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, BinaryIO, NoReturn

import orjson


def _dumps(msg: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(msg, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer beyond 64 bits: the stdlib writes it exactly
        return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()


class Connector:
    """Reads START from stdin, writes protocol messages to stdout."""

    def __init__(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None):
        self._in = stdin or sys.stdin.buffer
        self._out = stdout or sys.stdout.buffer
        self.records_emitted = 0
        self.start_message: dict[str, Any] = {}

    # -- reading -----------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        line = self._in.readline()
        msg: dict[str, Any] = orjson.loads(line)
        if msg.get("type") != "START":
            raise SystemExit(f"expected START, got {msg.get('type')!r}")
        self.start_message = msg
        return msg

    def streams(self) -> list[str]:
        return [s["name"] for s in self.start_message.get("scope", {}).get("streams", [])]

    def cursor(self, stream: str) -> Any:
        return (self.start_message.get("state") or {}).get(stream)

    def time_range(self, stream: str) -> dict[str, str] | None:
        for s in self.start_message.get("scope", {}).get("streams", []):
            if s.get("name") == stream:
                tr: dict[str, str] | None = s.get("time_range")
                return tr
        return None

    # -- writing -----------------------------------------------------------------------------

    def emit(self, msg: dict[str, Any]) -> None:
        self._out.write(_dumps(msg) + b"\n")

    def flush(self) -> None:
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
        self.emit(msg)
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
    ) -> None:
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
        ):
            if v is not None:
                msg[k] = v
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
