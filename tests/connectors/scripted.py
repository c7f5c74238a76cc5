"""A connector that plays a JSON script, for tests of the runtime's protocol handling.

SCRIPT_PLAN is a path to a JSON list of steps:
  {"records": {"stream": "a", "count": 10}}      RECORDs a-000000.. continuing from the cursor
  {"state": "a"}                                 STATE a with cursor {"offset": <records so far>}
  {"state": "a", "pad_bytes": N}                 ... padded to about N bytes
  {"msg": {...}}                                 any message, as given
  {"raw": "text"}                                a raw line (need not be JSON)
  {"sleep": 0.5}
  {"wait_for": "PATH"}                           wait (at most 120 s) until the file PATH exists
  {"spawn": ["sleep", "300"]}                   start a process of its own (a browser, a helper) and
                                                 append its pid to SCRIPT_SPAWN_LOG
  {"await_response": true}                       read an INTERACTION_RESPONSE from stdin, append it
                                                 to SCRIPT_RESPONSE_LOG
  {"done": "succeeded" | "failed", "records_emitted": optional override, "error": optional}
  {"exit": 3}                                    exit now with this code (no DONE)
SCRIPT_START_LOG, if set, is a file the START message is appended to (one JSON line per run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any


def main() -> None:
    plan: list[dict[str, Any]] = json.loads(open(os.environ["SCRIPT_PLAN"]).read())
    start = json.loads(sys.stdin.buffer.readline())
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
        elif "msg" in step:
            write(step["msg"])
            if step["msg"].get("type") == "RECORD":
                emitted += 1
        elif "raw" in step:
            out.write(step["raw"].encode() + b"\n")
        elif "await_response" in step:
            out.flush()
            line = sys.stdin.buffer.readline()
            with open(os.environ["SCRIPT_RESPONSE_LOG"], "ab") as f:
                f.write(line)
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
        elif "exit" in step:
            out.flush()
            sys.exit(step["exit"])
    out.flush()


if __name__ == "__main__":
    main()
