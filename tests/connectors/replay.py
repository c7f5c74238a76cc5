"""A connector that replays a file byte for byte, for fuzzing the runtime's line reader.

REPLAY_FILE      the bytes to write to stdout, unchanged (need not be JSON, need not end in \\n)
REPLAY_EXIT      exit code (default 0)
REPLAY_AWAIT_EOF "1": after writing, wait for the runtime to close stdin (its acknowledgement of
                 DONE) before exiting; anything else: exit as soon as the bytes are written,
                 because a runtime that saw no DONE never closes stdin and waits for the exit.
"""

from __future__ import annotations

import os
import select
import sys

# Only a guard against a hung test: the runtime closes stdin as soon as it reads DONE.
AWAIT_EOF_MAX_S = 20.0


def main() -> None:
    sys.stdin.buffer.readline()  # START
    with open(os.environ["REPLAY_FILE"], "rb") as f:
        data = f.read()
    out = sys.stdout.buffer
    out.write(data)
    out.flush()
    # EOF now: an unterminated last line (a DONE without its newline) is only read at EOF.
    os.close(out.fileno())
    if os.environ.get("REPLAY_AWAIT_EOF") == "1":
        fd = sys.stdin.fileno()
        while select.select([fd], [], [], AWAIT_EOF_MAX_S)[0] and os.read(fd, 65536):
            pass
    sys.exit(int(os.environ.get("REPLAY_EXIT", "0")))


if __name__ == "__main__":
    main()
