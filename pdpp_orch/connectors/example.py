"""`example`: a deterministic, incremental three-stream connector for first runs and benchmarks.

Streams `notes` and `events` are incremental (cursor: the next offset); `tags` is a small full
snapshot. Knobs (environment, set through the registry's `env`):

- EXAMPLE_RECORDS          records per incremental stream (default 1000)
- EXAMPLE_RECORD_BYTES     approximate size of each record's JSON (default 300)
- EXAMPLE_CHECKPOINT_EVERY records between STATEs (default 250)
- EXAMPLE_PAUSE_MS         pause after each STATE, to make runs observable (default 0)
- EXAMPLE_CURSOR_BYTES     pad each final `notes` cursor with a file_mtimes map of this size
"""

from __future__ import annotations

import functools
import os
import time

from pdpp_orch.connectors.sdk import Connector

INCREMENTAL = ("notes", "events")
TAGS = ["inbox", "work", "family", "travel", "receipts", "archive"]


def _env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# created_at and tags repeat with i: every 840 (the lcm of 12, 28, 24, 60) and every 6 records.
_CREATED = [f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z" for i in range(840)]
_TAG_PAIRS = [[TAGS[i % len(TAGS)], TAGS[(i * 7) % len(TAGS)]] for i in range(len(TAGS))]
_KEY_SLOT = "\x00" * 10  # where each record's key goes in the body (keys are 10 characters)


@functools.cache
def _body_pieces(pad: int) -> list[str]:
    """The body around its key slots: joined by a key, it is the body of that key's record."""
    return (f"{_KEY_SLOT} lorem ipsum dolor sit amet " * (pad // 30 + 1))[: pad + len(_KEY_SLOT)].split(
        _KEY_SLOT
    )


def make_record(stream: str, i: int, size: int) -> tuple[str, dict[str, object]]:
    """Record `i` of `stream`, the same on every run (cheap to make: the benchmark's connector
    should cost what a connector's own work costs, not string formatting)."""
    key = f"{stream[0]}{i:09d}"
    data: dict[str, object] = {
        "id": key,
        "n": i,
        "title": f"{stream} item {i}",
        "created_at": _CREATED[i % 840],
        "tags": _TAG_PAIRS[i % len(TAGS)],
    }
    pad = size - 130 - len(stream)
    if pad > 0:
        if len(key) == len(_KEY_SLOT):
            data["body"] = key.join(_body_pieces(pad))[:pad]
        else:  # beyond 10**9 records
            data["body"] = (f"{key} lorem ipsum dolor sit amet " * (pad // 30 + 1))[:pad]
    return key, data


def main() -> None:
    conn = Connector()
    conn.start()
    total = _env("EXAMPLE_RECORDS", 1000)
    size = _env("EXAMPLE_RECORD_BYTES", 300)
    every = max(1, _env("EXAMPLE_CHECKPOINT_EVERY", 250))
    pause = _env("EXAMPLE_PAUSE_MS", 0) / 1000
    cursor_pad = _env("EXAMPLE_CURSOR_BYTES", 0)
    for stream in conn.streams():
        if stream == "tags":
            for t in TAGS:
                conn.record("tags", t, {"name": t, "color": f"#{(len(t) * 2654435761) % 0xFFFFFF:06x}"})
            conn.state("tags", {"snapshot": len(TAGS)})
            continue
        if stream not in INCREMENTAL:
            continue
        start = int((conn.cursor(stream) or {}).get("offset", 0))
        for i in range(start, total):
            key, data = make_record(stream, i, size)
            conn.record(stream, key, data)
            if (i + 1) % every == 0 and i + 1 < total:
                conn.state(stream, {"offset": i + 1})
                conn.progress(f"{stream}: {i + 1} of {total}", stream=stream, count=i + 1, total=total)
                if pause:
                    time.sleep(pause)
        final: dict[str, object] = {"offset": max(start, total)}
        if cursor_pad and stream == "notes":
            n = cursor_pad // 48 + 1
            final["file_mtimes"] = {
                f"/home/owner/projects/p{j:07d}/session.jsonl": 1.7e9 + j for j in range(n)
            }
        conn.state(stream, final)
    conn.done()


if __name__ == "__main__":
    main()
