"""A connector with a fixed dataset that misbehaves on cue, for the fault tests.

Unlike scripted.py, its records do not depend on how often it runs: stream S holds records
S-000000 .. S-{total-1}, and a run resumed from cursor {"offset": k} emits only k.. onwards.
So after any crash and resume, the record store must hold exactly `total` rows per stream.
FAULT_START_LOG, if set, gets every START as a JSON line, with the connector's pid as `_pid` (in
its PID namespace: sandboxed, not the host's) and its network namespace as `_netns` (the host it
ran on, in tests/hosts/). Its arguments are ignored: tests register it with the connector's name
as one, to find its process (tests/helpers.py live()).

FAULT_PLAN is a path to a JSON list of steps:
  {"pages": {"stream": "a", "total": 300, "every": 50, "pause": 0.1}}
        records from the cursor up to `total`, a STATE after every `every` (unless "states":
        false), `pause` s after each page
  {"state": "a"}                   STATE a at the current offset
  {"sleep": 0.5}
  {"hang": true}                   stop writing and sleep for an hour
  {"close_stdout": true}           close stdout (and go on running: a later step may hang)
  {"grandchild": "PIDFILE"}        start a sleeping grandchild (it inherits stdout; PIDFILE is among
                                   its arguments, how a test finds it), write its pid
  {"stderr_bytes": N}              write N bytes to stderr, in lines of 1,000
  {"long_line": N}                 write one line of N bytes (a RECORD that never ends in time)
  {"signal": 9}                    send itself this signal
  {"ignore_sigterm": true}         ignore SIGTERM from now on (only SIGKILL ends it)
  {"env_dump": "PATH"}             write {"env": environ, "cwd": cwd} as JSON to PATH
  {"touch": "NAME"}                create NAME in the working directory
  {"done": "succeeded"}            DONE with the records emitted so far; later steps still run
  {"exit": 0}                      exit now with this code
After the last step: if DONE was written, wait for stdin to close (the runtime's
acknowledgement) and exit 0 (1 for a failed DONE); otherwise exit 0 at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

MB = 1 << 20


def main() -> None:
    with open(os.environ["FAULT_PLAN"]) as f:
        plan: list[dict[str, Any]] = json.load(f)
    start = json.loads(sys.stdin.buffer.readline())
    if os.environ.get("FAULT_START_LOG"):
        with open(os.environ["FAULT_START_LOG"], "a") as f:
            where = {"_pid": os.getpid(), "_netns": os.readlink("/proc/self/ns/net")}
            f.write(json.dumps({**start, **where}) + "\n")
    offsets = {s: int((c or {}).get("offset", 0)) for s, c in (start.get("state") or {}).items()}
    out = sys.stdout.buffer
    emitted = 0
    done: str | None = None

    def write(obj: Any) -> None:
        out.write(json.dumps(obj).encode() + b"\n")

    def state(stream: str) -> None:
        write({"type": "STATE", "stream": stream, "cursor": {"offset": offsets.get(stream, 0)}})

    for step in plan:
        if "pages" in step:
            spec = step["pages"]
            stream = spec["stream"]
            while offsets.get(stream, 0) < spec["total"]:
                i = offsets.get(stream, 0)
                for n in range(i, min(i + spec["every"], spec["total"])):
                    key = f"{stream}-{n:06d}"
                    write({"type": "RECORD", "stream": stream, "key": key, "data": {"id": key, "n": n},
                           "emitted_at": "2026-11-26T00:00:00Z"})  # fmt: skip
                    emitted += 1
                    offsets[stream] = n + 1
                if spec.get("states", True):
                    state(stream)
                out.flush()
                time.sleep(spec.get("pause", 0))
        elif "state" in step:
            state(step["state"])
        elif "sleep" in step:
            out.flush()
            time.sleep(step["sleep"])
        elif "hang" in step:
            out.flush()
            time.sleep(3600)
        elif "close_stdout" in step:
            out.flush()
            os.close(1)
        elif "grandchild" in step:
            child = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(300)", step["grandchild"]]
            )
            with open(step["grandchild"], "w") as f:
                f.write(str(child.pid))
        elif "stderr_bytes" in step:
            line = b"e" * 999 + b"\n"
            for _ in range(step["stderr_bytes"] // 1000):
                sys.stderr.buffer.write(line)
            sys.stderr.buffer.flush()
        elif "long_line" in step:
            head, tail = b'{"type": "RECORD", "stream": "a", "data": {"pad": "', b'"}}'
            out.write(head)
            left = step["long_line"] - len(head) - len(tail)
            while left > 0:
                out.write(b"x" * min(MB, left))
                left -= MB
            out.write(tail + b"\n")
            out.flush()
        elif "ignore_sigterm" in step:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        elif "signal" in step:
            out.flush()
            os.kill(os.getpid(), step["signal"])
            time.sleep(10)
        elif "env_dump" in step:
            with open(step["env_dump"], "w") as f:
                json.dump({"env": dict(os.environ), "cwd": os.getcwd()}, f)
        elif "touch" in step:
            with open(step["touch"], "w") as f:
                f.write("scratch")
        elif "done" in step:
            done = step["done"]
            write({"type": "DONE", "status": done, "records_emitted": emitted})
            out.flush()
        elif "exit" in step:
            out.flush()
            sys.exit(step["exit"])
    out.flush()
    if done is not None:
        sys.stdin.buffer.read()
        sys.exit(0 if done == "succeeded" else 1)


if __name__ == "__main__":
    main()
