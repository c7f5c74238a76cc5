"""A small SDK for writing PDPP connectors in Python.

    conn = Connector()
    start = conn.start()                      # the START message
    conn.record("notes", "n1", {"id": "n1", "text": "..."})
    conn.state("notes", {"offset": 1})
    conn.done()                               # DONE with the right count; exits 0

Scope and recovery: `conn.in_scope(stream)`, `conn.resources(stream)` /
`conn.exclude_resources(stream)` (or `conn.wants_resource(stream, id)`), `conn.recovery_only()`
and `conn.detail_gaps(stream)` (START's page of served gaps; `conn.detail_gap_pages(stream)`
yields it and then asks for the next page until the runtime has no more); a served gap is
answered with its RECORD plus `conn.detail_gap_recovered(...)`, a fresh `conn.detail_gap(...)`,
or `conn.detail_gap_attempted(...)`.

What START asked for is read through `StartView` (start.py); lines are encoded and batched by
`LineWriter` (lines.py).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO, NoReturn

import orjson

from pdpp_orch.connectors.lines import LineWriter, encode_line
from pdpp_orch.connectors.start import StartView


def _with(msg: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """`msg` plus those of `optional` that are not None, in the order given."""
    msg.update({k: v for k, v in optional.items() if v is not None})
    return msg


class Connector(StartView):
    """Reads START from stdin, writes protocol messages to stdout."""

    def __init__(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None):
        self._in = stdin or sys.stdin.buffer
        self._lines = LineWriter(stdout or sys.stdout.buffer)
        self._write = self._lines.write  # bound once: every RECORD goes through it
        self.records_emitted = 0
        self.start_message: dict[str, Any] = {}
        self._page_requests = 0

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

    def emit(self, msg: dict[str, Any]) -> None:
        """Write any protocol message (the methods below build the usual ones)."""
        self._write(encode_line(msg))

    def emit_raw_line(self, line: bytes) -> None:
        """Write `line` as it is, plus the newline. Only for reproducing connectors that wrote
        lines no JSON encoder would; everything else goes through `emit`."""
        self._write(line + b"\n")

    def flush(self) -> None:
        """Send every line written so far."""
        self._lines.flush()

    def record(
        self, stream: str, key: str | list[str], data: dict[str, Any], *, delete: bool = False
    ) -> None:
        """A RECORD of `stream` under `key` (a list for a compound key); `delete` marks it gone."""
        msg: dict[str, Any] = {
            "type": "RECORD",
            "stream": stream,
            "key": key,
            "data": data,
            "emitted_at": _now(),
        }
        if delete:
            msg["op"] = "delete"
        self._write(encode_line(msg))
        self.records_emitted += 1

    def state(self, stream: str, cursor: dict[str, Any] | None) -> None:
        """A STATE: `stream`'s cursor after everything written so far (flushed at once)."""
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
        """What of `stream` (or of the run, with None) was not collected, and why."""
        msg = {"type": "SKIP_RESULT", "reason": reason}
        self.emit(
            _with(
                msg,
                stream=stream,
                message=message,
                recovery_hint=recovery_hint,
                resource_ids=resource_ids,
                time_range=time_range,
                retry_after_seconds=retry_after_seconds,
                diagnostics=diagnostics,
            )
        )

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
        msg = {
            "type": "DETAIL_GAP",
            "stream": stream,
            "record_key": record_key,
            "reason": reason,
            "retryable": retryable,
        }
        self.emit(
            _with(
                msg,
                detail_locator=detail_locator,
                parent_stream=parent_stream,
                retry_after_seconds=retry_after_seconds,
                last_error=last_error,
                gap_id=gap_id,
                lease_id=lease_id,
                recovery_hint=recovery_hint,
            )
        )

    def request_detail_gap_page(
        self, streams: list[str] | None = None, max_bytes: int | None = None
    ) -> list[dict[str, Any]]:
        """The next page of served gaps (of `streams`, within `max_bytes`), as the reference SDK
        asks for it: DETAIL_GAPS_PAGE_REQUEST, then wait for the matching response on stdin. An
        empty page means there is no more."""
        self._page_requests += 1
        request_id = f"dgp_{int(time.time() * 1000)}_{self._page_requests}"
        msg: dict[str, Any] = {"type": "DETAIL_GAPS_PAGE_REQUEST", "reference_only": True}
        self.emit(_with(msg, request_id=request_id, streams=streams or None, max_bytes=max_bytes or None))
        self.flush()
        while True:
            line = self._in.readline()
            if not line:
                raise SystemExit("stdin closed while waiting for a DETAIL_GAPS_PAGE_RESPONSE")
            answer = orjson.loads(line)
            if answer.get("type") == "DETAIL_GAPS_PAGE_RESPONSE" and answer.get("request_id") == request_id:
                gaps: list[dict[str, Any]] = answer.get("detail_gaps") or []
                return gaps

    def detail_gap_pages(
        self, stream: str | None = None, max_bytes: int | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """The served gaps (of `stream`) page by page: START's, then each page asked for, until
        an empty one. Nothing is asked for when START served none."""
        page = self.detail_gaps(stream)
        if not self.detail_gaps():
            return
        while True:
            if page:
                yield page
            page = self.request_detail_gap_page([stream] if stream else None, max_bytes)
            if not page:
                return

    def detail_gap_recovered(
        self, gap_id: str, stream: str, *, record_key: str | None = None, lease_id: str | None = None
    ) -> None:
        """A served gap was fetched; send after the gap's RECORD."""
        msg = {"type": "DETAIL_GAP_RECOVERED", "gap_id": gap_id, "stream": stream}
        self.emit(_with(msg, record_key=record_key, lease_id=lease_id))

    def detail_gap_attempted(self, gap_id: str, stream: str, *, lease_id: str | None = None) -> None:
        """A served gap was tried and not recovered (e.g. the item is gone upstream)."""
        msg = {"type": "DETAIL_GAP_ATTEMPTED", "gap_id": gap_id, "stream": stream}
        self.emit(_with(msg, lease_id=lease_id))

    def detail_coverage(
        self,
        stream: str,
        state_stream: str,
        *,
        required_keys: list[str] | int,
        hydrated_keys: list[str] | int,
        gap_keys: list[str] | int | None = None,
    ) -> None:
        """How many of `stream`'s records needed a detail fetch, and how many got one."""
        msg: dict[str, Any] = {
            "type": "DETAIL_COVERAGE",
            "reference_only": True,
            "stream": stream,
            "state_stream": state_stream,
            "required_keys": required_keys,
            "hydrated_keys": hydrated_keys,
        }
        self.emit(_with(msg, gap_keys=gap_keys))

    def progress(
        self, message: str, *, stream: str | None = None, count: int | None = None, total: int | None = None
    ) -> None:
        """A PROGRESS line for the operator (`count` of `total`, optionally per stream)."""
        msg = {"type": "PROGRESS", "message": message}
        self.emit(_with(msg, stream=stream, count=count, total=total))

    def done(self, status: str = "succeeded", *, error: dict[str, Any] | None = None) -> NoReturn:
        """Send DONE with the true record count, wait for the runtime to close stdin, and exit
        with the code that agrees with `status`."""
        msg = {"type": "DONE", "status": status, "records_emitted": self.records_emitted}
        self.emit(_with(msg, error=error))
        self.flush()
        self._in.read()  # EOF: the runtime's acknowledgement
        raise SystemExit(0 if status == "succeeded" else 1)


_clock: list[Any] = [0.0, 0.0, ""]  # [this second, the next, this second formatted]


def _now() -> str:
    """The emission time to the second, formatted once per second."""
    now = time.time()
    clock = _clock
    if not clock[0] <= now < clock[1]:
        second = int(now)
        clock[:] = [second, second + 1, datetime.fromtimestamp(second, UTC).isoformat()]
    text: str = clock[2]
    return text
