"""Tests of this connector as the orchestrator sees it: START in, protocol lines out, each line
one the orchestrator accepts (checked with its own decoder). Run them with `pytest` in this
directory; they need no stack. Written by `pdpp-orch connectors new`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pdpp_orch import protocol

HERE = Path(__file__).parent
STREAM = "items"
Message = dict[str, Any]


def command() -> list[str]:
    """How the registry runs it: whichever connector file is next to this test."""
    if (HERE / "connector.py").exists():
        return [sys.executable, str(HERE / "connector.py")]
    if (HERE / "connector.sh").exists():
        return ["bash", str(HERE / "connector.sh")]
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH")
    return [node, str(HERE / "connector.mjs")]


def start(state: Any = None, detail_gaps: list[Message] | None = None, **scope: Any) -> Message:
    """START as the worker sends it (docs/protocol.md has a real one)."""
    msg: Message = {
        "type": "START",
        "run_id": "test-run",
        "collection_mode": "incremental" if state else "full_refresh",
        "scope": {"streams": [{"name": STREAM, **scope}]},
        "state": state,
        "bindings": {"browser": {}, "filesystem": {}, "interactive": {}, "network": {}},
        "detail_gaps": detail_gaps or [],
    }
    if detail_gaps:
        msg["recovery_only"] = True
    return msg


def converse(first: Message, items: Path, pages: list[list[Message]] | None = None) -> list[Message]:
    """Run the connector on `items` with START `first`, answer its page requests with `pages`
    (then with an empty page), close stdin after DONE as the runtime does; return its messages,
    each checked by the orchestrator's decoder."""
    pages = list(pages or [])
    proc = subprocess.Popen(
        command(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "ITEMS_FILE": str(items), "CHECKPOINT_EVERY": "2"},
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(compact(first))
    proc.stdin.flush()
    messages = []
    for line in proc.stdout:
        msg = protocol.decode(line.rstrip("\n").encode())
        assert isinstance(msg, dict), f"not a message: {line!r} ({msg})"
        problem = None if msg["type"] == "RECORD" else protocol.check_fields(msg)
        assert problem is None, f"{line!r}: {problem}"
        messages.append(msg)
        if msg["type"] == "DETAIL_GAPS_PAGE_REQUEST":
            page = pages.pop(0) if pages else []
            answer = {"type": "DETAIL_GAPS_PAGE_RESPONSE", "reference_only": True}
            answer |= {"request_id": msg["request_id"], "detail_gaps": page}
            proc.stdin.write(compact(answer))
            proc.stdin.flush()
        if msg["type"] == "DONE":
            proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    assert messages[-1]["type"] == "DONE" and messages[-1]["status"] == "succeeded"
    assert messages[-1]["records_emitted"] == len(of(messages, "RECORD"))
    return messages


def compact(msg: Message) -> str:
    """A line as the worker writes it: compact JSON."""
    return json.dumps(msg, separators=(",", ":")) + "\n"


def of(messages: list[Message], kind: str) -> list[Message]:
    return [m for m in messages if m["type"] == kind]


@pytest.fixture
def items(tmp_path: Path) -> Path:
    path = tmp_path / "items.jsonl"
    shutil.copy(HERE / "items.jsonl", path)
    return path


def test_a_first_run_collects_everything_and_skips_what_is_archived(items: Path) -> None:
    lines = [json.loads(x) for x in items.read_text().splitlines() if x.strip()]
    messages = converse(start(), items)
    kept = [str(i["id"]) for i in lines if not i.get("archived")]
    assert sorted(r["key"] for r in of(messages, "RECORD")) == sorted(kept)
    [skip] = of(messages, "SKIP_RESULT")
    assert skip["reason"] == "archived"
    last = max(lines, key=lambda i: (i["updated_at"], str(i["id"])))
    assert of(messages, "STATE")[-1]["cursor"] == {"updated_at": last["updated_at"], "id": str(last["id"])}


def test_the_next_run_collects_only_what_changed_since_the_cursor(items: Path) -> None:
    cursor = of(converse(start(), items), "STATE")[-1]["cursor"]
    assert of(converse(start({STREAM: cursor}), items), "RECORD") == []
    with items.open("a") as f:
        f.write(json.dumps({"id": "new1", "updated_at": "2999-01-01T00:00:00Z", "title": "new"}) + "\n")
    again = converse(start({STREAM: cursor}), items)
    assert [r["key"] for r in of(again, "RECORD")] == ["new1"]


def test_an_unavailable_item_is_a_gap_that_a_recovery_run_fetches(items: Path) -> None:
    with items.open("a") as f:
        f.write(json.dumps({"id": "late", "updated_at": "2999-01-01T00:00:00Z", "unavailable": True}) + "\n")
    [gap] = of(converse(start(), items), "DETAIL_GAP")
    assert (gap["record_key"], gap["retryable"]) == ("late", True)
    # What a recovery run receives: the gap, served by the runtime with its ids.
    served = {
        "gap_id": "g1",
        "lease_id": "l1",
        "stream": STREAM,
        "record_key": "late",
        "detail_locator": gap["detail_locator"],
        "status": "pending",
        "reference_only": True,
    }
    still = converse(start(detail_gaps=[served]), items)
    assert [m["gap_id"] for m in of(still, "DETAIL_GAP_ATTEMPTED")] == ["g1"]
    items.write_text(items.read_text().replace('"unavailable": true', '"unavailable": false'))
    second = {**served, "gap_id": "g2", "record_key": "n1", "detail_locator": {"id": "n1"}}
    back = converse(start(detail_gaps=[served]), items, pages=[[second]])
    assert [r["key"] for r in of(back, "RECORD")] == ["late", "n1"]
    assert [m["gap_id"] for m in of(back, "DETAIL_GAP_RECOVERED")] == ["g1", "g2"]
    assert of(back, "STATE") == []  # a recovery does not move the cursor
    assert len(of(back, "DETAIL_GAPS_PAGE_REQUEST")) == 2  # the second page was empty
