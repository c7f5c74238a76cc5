"""A connector that plays a JSON script, for tests of the runtime's protocol handling.

SCRIPT_PLAN is a path to a JSON list of steps:
  {"records": {"stream": "a", "count": 10}}      RECORDs a-000000.. continuing from the cursor
  {"state": "a"}                                 STATE a with cursor {"offset": <records so far>}
  {"state": "a", "pad_bytes": N}                 ... padded to about N bytes
  {"days": {"stream": "a"}}                      a RECORD per day in START's time_range of the stream,
                                                 read as the protocol says: since <= day < until
                                                 (a day as its midnight, UTC), keyed by the date
  {"msg": {...}}                                 any message, as given
  {"raw": "text"}                                a raw line (need not be JSON)
  {"stderr": "text"}                             a line on stderr (flushed)
  {"sleep": 0.5}
  {"wait_for": "PATH"}                           wait (at most 120 s) until the file PATH exists
  {"spawn": ["sleep", "300"]}                   start a process of its own (a browser, a helper) and
                                                 append its pid to SCRIPT_SPAWN_LOG
  {"await_response": true}                       read an INTERACTION_RESPONSE from stdin, append it
                                                 to SCRIPT_RESPONSE_LOG
  {"page": {...}}                                DETAIL_GAPS_PAGE_REQUEST with these fields (plus
                                                 type, reference_only: true unless given), then wait
                                                 for a DETAIL_GAPS_PAGE_RESPONSE, appended to
                                                 SCRIPT_RESPONSE_LOG
  {"drain": {"max_bytes": N, "streams": [...],   the reference SDK's recovery drain: START's gaps,
             "redefer_every": K, "max_pages": P,   then pages until an empty one (or P pages); per gap
             "gone": [KEY, ...]}}                  DETAIL_GAP_ATTEMPTED, then (every K-th re-deferred
                                                 with a DETAIL_GAP instead; a `gone` key reported
                                                 not_found, not retryable) a RECORD keyed by its
                                                 record_key and DETAIL_GAP_RECOVERED; the pages go
                                                 to SCRIPT_RESPONSE_LOG
  {"done": "succeeded" | "failed", "records_emitted": optional override, "error": optional}
  {"exit": 3}                                    exit now with this code (no DONE)
  {"home_note": "PATH"}                          append {"home": $HOME, "seen": whether an earlier run
                                                 left its note there} to PATH, and leave the note
SCRIPT_START_LOG, if set, is a file the START message is appended to (one JSON line per run).
SCRIPT_RECOVERY_PLAN, if set, is the plan played instead when START says `recovery_only`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any


def main() -> None:
    start = json.loads(sys.stdin.buffer.readline())
    which = (
        "SCRIPT_RECOVERY_PLAN"
        if start.get("recovery_only") and "SCRIPT_RECOVERY_PLAN" in os.environ
        else "SCRIPT_PLAN"
    )
    plan: list[dict[str, Any]] = json.loads(open(os.environ[which]).read())
    if os.environ.get("SCRIPT_START_LOG"):
        with open(os.environ["SCRIPT_START_LOG"], "a") as f:
            f.write(json.dumps(start) + "\n")
    state = start.get("state") or {}
    offsets = {s: int((c or {}).get("offset", 0)) for s, c in state.items()}
    out = sys.stdout.buffer
    emitted = 0

    def write(obj: Any) -> None:
        out.write(json.dumps(obj).encode() + b"\n")

    for step in plan:
        if "records" in step:
            spec = step["records"]
            stream = spec["stream"]
            for _ in range(spec["count"]):
                i = offsets.get(stream, 0)
                key = f"{stream}-{i:06d}"
                write(
                    {
                        "type": "RECORD",
                        "stream": stream,
                        "key": key,
                        "data": {"id": key, "n": i, "text": f"item {i} of {stream}"},
                        "emitted_at": "2026-11-26T00:00:00Z",
                    }
                )
                offsets[stream] = i + 1
                emitted += 1
        elif "state" in step:
            stream = step["state"]
            cursor: dict[str, Any] = {"offset": offsets.get(stream, 0)}
            if step.get("pad_bytes"):
                cursor["pad"] = "x" * step["pad_bytes"]
            write({"type": "STATE", "stream": stream, "cursor": cursor})
        elif "days" in step:
            emitted += days(start, step["days"]["stream"], write)
        elif "msg" in step:
            write(step["msg"])
            if step["msg"].get("type") == "RECORD":
                emitted += 1
        elif "raw" in step:
            out.write(step["raw"].encode() + b"\n")
        elif "stderr" in step:
            print(step["stderr"], file=sys.stderr, flush=True)
        elif "await_response" in step:
            out.flush()
            line = sys.stdin.buffer.readline()
            with open(os.environ["SCRIPT_RESPONSE_LOG"], "ab") as f:
                f.write(line)
        elif "page" in step:
            out.flush()
            fields = {"type": "DETAIL_GAPS_PAGE_REQUEST", "reference_only": True, **step["page"]}
            write(fields)
            out.flush()
            log_response(read_page(None))
        elif "drain" in step:
            emitted += drain(start, step["drain"], write, out)
        elif "spawn" in step:
            child = subprocess.Popen(step["spawn"])
            with open(os.environ["SCRIPT_SPAWN_LOG"], "a") as f:
                f.write(f"{child.pid}\n")
        elif "sleep" in step:
            out.flush()
            time.sleep(step["sleep"])
        elif "wait_for" in step:
            out.flush()
            deadline = time.monotonic() + 120
            while not os.path.exists(step["wait_for"]) and time.monotonic() < deadline:
                time.sleep(0.05)
        elif "done" in step:
            msg: dict[str, Any] = {
                "type": "DONE",
                "status": step["done"],
                "records_emitted": step.get("records_emitted", emitted),
            }
            if "error" in step:
                msg["error"] = step["error"]
            write(msg)
            out.flush()
            sys.stdin.buffer.read()
            sys.exit(0 if step["done"] == "succeeded" else 1)
        elif "home_note" in step:
            note = os.path.join(os.environ["HOME"], "scripted-was-here")
            with open(step["home_note"], "a") as f:
                f.write(json.dumps({"home": os.environ["HOME"], "seen": os.path.exists(note)}) + "\n")
            open(note, "w").close()
        elif "exit" in step:
            out.flush()
            sys.exit(step["exit"])
    out.flush()


def read_page(request_id: str | None) -> dict[str, Any]:
    """The next DETAIL_GAPS_PAGE_RESPONSE on stdin (for `request_id`, if given); other lines are
    skipped, as the reference SDK's listener skips them."""
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            sys.exit(0)  # stdin closed while waiting: the reference SDK exits without DONE
        msg = json.loads(line)
        if msg.get("type") == "DETAIL_GAPS_PAGE_RESPONSE" and request_id in (None, msg.get("request_id")):
            return msg


def log_response(msg: dict[str, Any]) -> None:
    with open(os.environ["SCRIPT_RESPONSE_LOG"], "a") as f:
        f.write(json.dumps(msg) + "\n")


def _day_on_or_after(value: str) -> date:
    """The first day whose midnight (UTC) is at or after the time `value` (no offset: UTC)."""
    moment = datetime.fromisoformat(value)
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    day = moment.date()
    return day if moment == datetime(day.year, day.month, day.day, tzinfo=UTC) else day + timedelta(days=1)


def days(start: dict[str, Any], stream: str, write: Any) -> int:
    """One RECORD per day of the stream's START time_range, half-open as the reference reads it."""
    [tr] = [s.get("time_range") or {} for s in start["scope"]["streams"] if s["name"] == stream]
    day, end = _day_on_or_after(tr["since"]), _day_on_or_after(tr["until"])
    n = 0
    while day < end:
        key = day.isoformat()
        write({"type": "RECORD", "stream": stream, "key": key, "data": {"id": key, "date": key},
               "emitted_at": "2026-11-26T00:00:00Z"})  # fmt: skip
        day, n = day + timedelta(days=1), n + 1
    return n


def drain(start: dict[str, Any], spec: dict[str, Any], write: Any, out: Any) -> int:
    """Recover every served gap as a connector on the reference SDK does; returns the RECORDs."""
    emitted, n, pages = 0, 0, 0
    gaps = list(start.get("detail_gaps") or [])
    every = spec.get("redefer_every", 0)
    max_pages = spec.get("max_pages")
    while gaps:
        for gap in gaps:
            n += 1
            ref = {"reference_only": True, "gap_id": gap["gap_id"], "lease_id": gap.get("lease_id")}
            write({"type": "DETAIL_GAP_ATTEMPTED", **ref, "stream": gap["stream"]})
            if gap["record_key"] in spec.get("gone", []):
                write(
                    {
                        "type": "DETAIL_GAP",
                        **ref,
                        "stream": gap["stream"],
                        "record_key": gap["record_key"],
                        "reason": "not_found",
                        "retryable": False,
                        "detail_locator": gap.get("detail_locator"),
                    }
                )
            elif not every or n % every:
                key = gap["record_key"]
                data = {"id": key, "recovered": True}
                write(
                    {
                        "type": "RECORD",
                        "stream": gap["stream"],
                        "key": key,
                        "data": data,
                        "emitted_at": "2026-11-26T00:00:00Z",
                    }
                )
                write({"type": "DETAIL_GAP_RECOVERED", **ref, "stream": gap["stream"], "record_key": key})
                emitted += 1
            else:
                write(
                    {
                        "type": "DETAIL_GAP",
                        **ref,
                        "stream": gap["stream"],
                        "record_key": gap["record_key"],
                        "reason": "rate_limited",
                        "detail_locator": gap.get("detail_locator"),
                    }
                )
        if max_pages is not None and pages >= max_pages:
            break
        pages += 1
        request = {
            "type": "DETAIL_GAPS_PAGE_REQUEST",
            "reference_only": True,
            "request_id": f"dgp_{int(time.time() * 1000)}_{pages}",
        }
        if spec.get("streams"):
            request["streams"] = spec["streams"]
        if spec.get("max_bytes"):
            request["max_bytes"] = spec["max_bytes"]
        write(request)
        out.flush()
        page = read_page(request["request_id"])
        log_response(page)
        gaps = page["detail_gaps"]
    return emitted


if __name__ == "__main__":
    main()
