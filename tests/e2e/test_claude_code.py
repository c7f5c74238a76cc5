"""The `claude_code` connector and its session-log generator, as real processes (no Temporal, no
PostgreSQL): counts, per-file cursors, incremental runs, scope, malformed lines, Case B's cursor."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from pdpp_orch import protocol
from pdpp_orch.connectors import claude_code_gen as gen
from pdpp_orch.connectors.claude_code import cursor_mtimes, make_cursor
from pdpp_orch.connectors.claude_code_gen import GenSummary, generate, plan_layout
from pdpp_orch.manifest import load_manifest
from pdpp_orch.registry import BUNDLED_REGISTRY

MANIFEST = load_manifest(BUNDLED_REGISTRY.with_name("claude_code.json"))
STREAMS = ["sessions", "messages", "attachments", "memory_notes"]
SMALL: dict[str, Any] = {
    "sessions": 24,
    "messages": 4000,
    "attachments": 2100,
    "memory_notes": 30,
    "projects": 5,
    "seed": 7,
}


@dataclass
class Run:
    messages: list[dict[str, Any]]
    returncode: int
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    state_order: list[str] = field(default_factory=list)
    skips: list[dict[str, Any]] = field(default_factory=list)

    def count(self, stream: str) -> int:
        return len(self.records.get(stream, []))

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.records.values())

    def cursors(self) -> dict[str, Any]:
        return {s: c["cursor"] for s, c in self.states.items()}


def run_connector(
    root: Path, streams: list[str] | None = None, state: dict[str, Any] | None = None, **extra: Any
) -> Run:
    """Spawn the connector, send START, read to DONE, close stdin (the ack) and check the framing."""
    start = {
        "type": "START",
        "run_id": "test",
        "collection_mode": "incremental" if state else "full_refresh",
        "scope": {"streams": [{"name": s} for s in (streams or STREAMS)]},
        "state": state,
        "bindings": {},
        **extra,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdpp_orch.connectors.claude_code"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "CLAUDE_CODE_ROOT": str(root)},
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(orjson.dumps(start) + b"\n")
    proc.stdin.flush()
    run = Run([], -1)
    for line in proc.stdout:  # binary iteration splits on b"\n" only, as the protocol says
        assert b"\\u0000" not in line
        msg = protocol.decode(line)
        assert not isinstance(msg, protocol.LineError), msg
        run.messages.append(msg)
        if msg["type"] == "RECORD":
            spec = MANIFEST.stream(msg["stream"])
            assert spec is not None
            key = protocol.record_key(msg, spec.primary_key)
            assert not isinstance(key, protocol.LineError), key
            run.records.setdefault(msg["stream"], []).append(msg)
        else:
            assert protocol.check_fields(msg) is None, msg
        if msg["type"] == "STATE":
            run.states[msg["stream"]] = msg
            run.state_order.append(msg["stream"])
        elif msg["type"] == "SKIP_RESULT":
            run.skips.append(msg)
        elif msg["type"] == "DONE":
            break
    proc.stdin.close()
    run.returncode = proc.wait(timeout=30)
    assert proc.stdout.read() == b"", "nothing may follow DONE"
    stderr = proc.stderr.read()
    assert run.returncode == 0, stderr.decode(errors="replace")
    done = run.messages[-1]
    assert done == {"type": "DONE", "status": "succeeded", "records_emitted": run.total}
    for stream in run.records:
        assert stream in (streams or STREAMS)
    return run


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> GenSummary:
    """A small tree shared by the read-only tests."""
    return generate(tmp_path_factory.mktemp("cc") / "projects", **SMALL)


@pytest.fixture
def fresh(tmp_path: Path) -> GenSummary:
    """A small tree a test may change."""
    return generate(tmp_path / "projects", **SMALL)


# -- the generator ---------------------------------------------------------------------------


def test_generator_is_exact_and_deterministic(tmp_path: Path, small: GenSummary) -> None:
    again = generate(tmp_path / "again", **SMALL, verify=True)  # verify recounts the blocks
    assert (again.sessions, again.messages, again.attachments, again.memory_notes) == (24, 4000, 2100, 30)
    assert again.records == 24 + 4000 + 2100 + 30
    assert sum(again.messages_by_file.values()) == 4000
    assert sum(again.attachments_by_file.values()) == 2100
    assert again.session_mtimes == small.session_mtimes
    assert again.memory_mtimes == small.memory_mtimes
    for rel in small.session_mtimes:
        assert (tmp_path / "again" / rel).read_bytes() == (small.root / rel).read_bytes()
    # Float mtimes with a sub-second part: what made the real cursor big.
    assert all(m != int(m) for m in again.session_mtimes.values())
    other = generate(tmp_path / "other", **{**SMALL, "seed": 8})
    assert other.session_mtimes != small.session_mtimes


def test_plan_matches_what_generate_writes(small: GenSummary) -> None:
    layout = plan_layout(**SMALL)
    assert layout.session_mtimes() == small.session_mtimes
    assert {s.rel_path: s.messages for s in layout.sessions} == small.messages_by_file


def test_events_have_the_real_claude_code_shape(small: GenSummary) -> None:
    rel = max(small.messages_by_file, key=lambda r: small.messages_by_file[r])
    events = [orjson.loads(x) for x in (small.root / rel).read_bytes().splitlines()]
    kinds = {e["type"] for e in events}
    assert {"user", "assistant"} <= kinds <= {"user", "assistant", "summary"}
    msg = next(e for e in events if e["type"] == "assistant")
    for f in ("uuid", "parentUuid", "sessionId", "timestamp", "cwd", "gitBranch", "version"):
        assert f in msg
    assert {"role", "content", "model", "usage"} <= set(msg["message"])
    assert msg["sessionId"] == Path(rel).stem
    assert rel.split("/")[0] == gen.project_dir_name(msg["cwd"])
    blocks = {
        b["type"]
        for e in events
        if isinstance(e["message"]["content"], list)
        for b in e["message"]["content"]
    }
    assert {"text", "tool_use", "tool_result"} <= blocks


def test_messages_cursor_at_seed_size_is_at_least_50_kb() -> None:
    """Case B: the seed's messages cursor (file paths + float mtimes) was ~50 KB; ours is at least
    that, from the same layout `generate` writes at default sizes."""
    layout = plan_layout()
    assert len(layout.sessions) == 640
    assert sum(s.messages for s in layout.sessions) == 227_249
    assert sum(s.attachments for s in layout.sessions) == 121_874
    assert len(layout.notes) == 800
    mtimes = layout.session_mtimes()
    messages = len(orjson.dumps(make_cursor("messages", mtimes)))
    assert messages >= 50_000
    lengths = [len(p) for p in mtimes]
    assert 80 <= sum(lengths) / len(lengths) <= 110
    # The other streams' cursors are smaller, so a cap between them fails `messages` alone.
    notes = {n.rel_path: gen.st_mtime(n.mtime_ns) for n in layout.notes}
    assert len(orjson.dumps(make_cursor("sessions", mtimes))) < 0.7 * messages
    assert len(orjson.dumps(make_cursor("memory_notes", notes))) < 0.7 * messages


# -- the connector ---------------------------------------------------------------------------


def test_full_run_counts_states_and_cursors(small: GenSummary) -> None:
    run = run_connector(small.root)
    assert run.count("sessions") == small.sessions
    assert run.count("messages") == small.messages
    assert run.count("attachments") == small.attachments
    assert run.count("memory_notes") == small.memory_notes
    assert run.total == small.records
    assert sorted(run.state_order) == sorted(STREAMS)  # exactly one STATE per stream
    assert run.states["messages"]["cursor"] == {"file_mtimes": small.session_mtimes}
    for stream in ("attachments", "sessions"):
        assert set(run.states[stream]["cursor"]) == {"projects"}
        assert cursor_mtimes(run.states[stream]["cursor"]) == small.session_mtimes
    assert cursor_mtimes(run.states["memory_notes"]["cursor"]) == small.memory_mtimes
    # Each stream's STATE follows all of that stream's records.
    position = {id(m): i for i, m in enumerate(run.messages)}
    for stream in STREAMS:
        assert position[id(run.records[stream][-1])] < position[id(run.states[stream])]
    keys = [r["key"] for r in run.records["messages"]]
    assert len(set(keys)) == len(keys)
    att = run.records["attachments"][0]["data"]
    assert att["id"].startswith(att["message_uuid"] + ":")
    assert {a["data"]["kind"] for a in run.records["attachments"]} == {"tool_result", "image"}
    assert all(
        a["data"]["tool_name"] for a in run.records["attachments"] if a["data"]["kind"] == "tool_result"
    )
    sessions = {r["key"]: r["data"] for r in run.records["sessions"]}
    for rel, n in small.messages_by_file.items():
        data = sessions[Path(rel).stem]
        assert data["message_count"] == n and data["path"] == rel
        assert data["attachment_count"] == small.attachments_by_file[rel]
        assert data["first_timestamp"] <= data["last_timestamp"]
    assert not run.skips


def test_incremental_run_with_unchanged_files_emits_nothing_but_states(small: GenSummary) -> None:
    first = run_connector(small.root)
    second = run_connector(small.root, state=first.cursors())
    assert second.total == 0
    assert sorted(second.state_order) == sorted(STREAMS)
    assert second.cursors() == first.cursors()


def test_touching_one_file_re_emits_exactly_its_records(fresh: GenSummary) -> None:
    first = run_connector(fresh.root)
    rel = max(fresh.messages_by_file, key=lambda r: fresh.messages_by_file[r])
    new_mtime_ns = 1_777_000_000_123_456_789
    os.utime(fresh.root / rel, ns=(new_mtime_ns, new_mtime_ns))
    second = run_connector(fresh.root, state=first.cursors())
    assert second.count("messages") == fresh.messages_by_file[rel]
    assert second.count("attachments") == fresh.attachments_by_file[rel]
    assert second.count("sessions") == 1 and second.count("memory_notes") == 0
    assert {r["data"]["session_id"] for r in second.records["messages"]} == {Path(rel).stem}
    cursor = second.states["messages"]["cursor"]["file_mtimes"]
    assert cursor[rel] == gen.st_mtime(new_mtime_ns)
    assert {k: v for k, v in cursor.items() if k != rel} == {
        k: v for k, v in fresh.session_mtimes.items() if k != rel
    }


def test_scope_with_only_messages(small: GenSummary) -> None:
    run = run_connector(small.root, streams=["messages"])
    assert set(run.records) == {"messages"}
    assert run.count("messages") == small.messages
    assert run.state_order == ["messages"]
    assert {m["type"] for m in run.messages} <= {"RECORD", "STATE", "PROGRESS", "DONE"}


def test_a_cursor_for_one_stream_does_not_skip_another(small: GenSummary) -> None:
    """Per-stream cursors: messages up to date, attachments never collected."""
    first = run_connector(small.root, streams=["messages"])
    second = run_connector(small.root, streams=["messages", "attachments"], state=first.cursors())
    assert second.count("messages") == 0
    assert second.count("attachments") == small.attachments


def test_malformed_lines_are_skipped_and_reported_once_per_file(tmp_path: Path) -> None:
    summary = generate(tmp_path / "projects", **{**SMALL, "malformed_lines": 4})
    run = run_connector(summary.root)
    assert run.count("messages") == summary.messages
    assert run.count("attachments") == summary.attachments
    assert len(run.skips) == len(summary.malformed_by_file)
    for skip in run.skips:
        assert skip["stream"] == "messages"
        assert skip["reason"] == "malformed_source_line"
        assert skip["recovery_hint"] == "not_retriable"
        rel = skip["diagnostics"]["file"]
        assert len(skip["diagnostics"]["lines"]) == summary.malformed_by_file[rel]
    # The informational skip does not hold the file back: the next run has nothing to re-read.
    again = run_connector(summary.root, state=run.cursors())
    assert again.total == 0 and not again.skips


def test_hand_written_session_file_edge_cases(tmp_path: Path) -> None:
    """Lone surrogates (JavaScript escapes them), NUL in tool output, U+2028, CRLF, a non-object
    line, an event without a uuid, and types that are not messages."""
    root = tmp_path / "projects"
    project = root / "-home-ana-src-x"
    project.mkdir(parents=True)
    base = {"sessionId": "s1", "cwd": "/home/ana/src/x", "gitBranch": "main", "version": "2.0.14"}

    def ev(kind: str, uid: str | None, content: Any, **extra: Any) -> bytes:
        event: dict[str, Any] = {**base, "type": kind, "message": {"role": kind, "content": content}, **extra}
        if uid:
            event["uuid"] = uid
        event["timestamp"] = f"2026-01-01T00:00:0{len(uid or '')}.000Z"
        return orjson.dumps(event)

    lines = [
        b'{"type":"summary","summary":"edge cases","leafUuid":"u3"}',
        ev("user", "u1", "line\u2028separator is not a line break") + b"\r",
        ev("assistant", "u2", [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}], model="m"),
        ev("user", "u3", [{"type": "tool_result", "tool_use_id": "t1", "content": "bin\x00ary"}]),
        b'{"type":"user","uuid":"u4","message":{"role":"user","content":"cut \\ud83d"},"sessionId":"s1"}',
        b"[1, 2, 3]",
        ev("user", None, "no uuid"),
        b'{"type":"file-history-snapshot","messageId":"x","snapshot":{}}',
        b'{"type":"assistant","uuid":"u5","message":{"role":"assistant","content":"trunc',
    ]
    (project / "s1.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    run = run_connector(root)
    by_key = {r["key"]: r["data"] for r in run.records["messages"]}
    assert set(by_key) == {"u1", "u2", "u3", "u4"}
    assert "\u2028" in by_key["u1"]["text"]
    assert by_key["u4"]["text"] == "cut ?"
    assert by_key["u2"]["tool_uses"] == ["Read"]
    (att,) = run.records["attachments"]
    assert att["key"] == "u3:0"
    assert att["data"]["tool_name"] == "Read" and att["data"]["preview"] == "bin\ufffdary"
    assert att["data"]["size"] == len("bin\x00ary")
    (session,) = run.records["sessions"]
    assert session["data"]["message_count"] == 4 and session["data"]["summary"] == "edge cases"
    (skip,) = run.skips
    assert skip["diagnostics"] == {"file": "-home-ana-src-x/s1.jsonl", "lines": [6, 7, 9], "count": 3}


def test_memory_notes_new_changed_and_deleted(fresh: GenSummary) -> None:
    first = run_connector(fresh.root)
    gone, changed = sorted(fresh.memory_mtimes)[:2]
    (fresh.root / gone).unlink()
    (fresh.root / changed).write_text("# Changed\n")
    project = changed.split("/")[0]
    (fresh.root / project / "CLAUDE.md").write_text("# Project memory\n")
    second = run_connector(fresh.root, state=first.cursors())
    notes = {r["key"]: r for r in second.records["memory_notes"]}
    assert set(notes) == {gone, changed, f"{project}/CLAUDE.md"}
    assert notes[gone]["op"] == "delete"
    assert notes[changed]["data"]["content"] == "# Changed\n"
    assert second.total == 3
    cursor = cursor_mtimes(second.states["memory_notes"]["cursor"])
    assert gone not in cursor and f"{project}/CLAUDE.md" in cursor


def test_unusable_cursor_reads_everything(small: GenSummary) -> None:
    run = run_connector(small.root, streams=["sessions"], state={"sessions": {"file_mtimes": "nope"}})
    assert run.count("sessions") == small.sessions
    flat = {"sessions": {"file_mtimes": small.session_mtimes}}
    assert run_connector(small.root, streams=["sessions"], state=flat).total == 0  # either shape works


def test_missing_root_fails_the_run(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pdpp_orch.connectors.claude_code"],
        input=orjson.dumps({"type": "START", "run_id": "t", "scope": {"streams": []}, "state": None}) + b"\n",
        capture_output=True,
        env={**os.environ, "CLAUDE_CODE_ROOT": str(tmp_path / "absent")},
        timeout=30,
    )
    (done,) = [orjson.loads(x) for x in proc.stdout.splitlines()]
    assert proc.returncode == 1
    assert done["status"] == "failed" and done["records_emitted"] == 0
    assert done["error"]["code"] == "source_root_missing"
    assert protocol.parse_recovery_hint(done["error"]["recovery_hint"]) == ("manual_action_required", None)


def test_recovery_only_run_has_nothing_to_drain(small: GenSummary) -> None:
    run = run_connector(small.root, recovery_only=True, detail_gaps=[])
    assert run.total == 0 and not run.states
