"""One session file's lines as `messages` and `attachments` records, and its `sessions` record."""

from __future__ import annotations

from typing import Any, NamedTuple

from pdpp_orch.connectors.claude_code.blocks import size_and_preview
from pdpp_orch.connectors.claude_code.jsonl import clean, events
from pdpp_orch.connectors.sdk import Connector

MAX_LINE_NUMBERS = 100  # line numbers listed in one SKIP_RESULT; the message carries the total
_MESSAGE_TYPES = frozenset(("user", "assistant"))
_ATTACHMENT_TYPES = frozenset(("tool_result", "image"))


class Content(NamedTuple):
    """A message's text parts, the tools it used, and its attachment blocks (with their index)."""

    texts: list[str]
    tools: list[str]
    blocks: list[tuple[int, dict[str, Any]]]


def parse_content(content: Any, tool_names: dict[str, str]) -> Content:
    """Split a message's `content`; each tool_use's id → name goes into `tool_names`, so that a
    later tool_result can name its tool."""
    out = Content([], [], [])
    if isinstance(content, str):
        out.texts.append(content)
    elif isinstance(content, list):
        for i, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text":
                t = block.get("text")
                if isinstance(t, str):
                    out.texts.append(t)
            elif btype == "tool_use":
                tname = block.get("name")
                if isinstance(tname, str):
                    out.tools.append(tname)
                    tid = block.get("id")
                    if isinstance(tid, str):
                        tool_names[tid] = tname
            elif btype in _ATTACHMENT_TYPES:
                out.blocks.append((i, block))
    return out


class SessionFile:
    """Reads one session file and emits its records for the wanted streams."""

    def __init__(self, conn: Connector, rel: str, wanted: set[str]) -> None:
        self.conn = conn
        self.rel = rel
        self.project, _, name = rel.partition("/")
        self.session_id = name.removesuffix(".jsonl")
        self.wanted = wanted
        self.bad: list[int] = []
        self.first_ts: str | None = None
        self.last_ts: str | None = None
        self.count = 0
        self.attachment_count = 0
        self.meta: dict[str, Any] = {}
        self.summary: str | None = None
        self.tool_names: dict[str, str] = {}

    def read(self, data: bytes, skip_stream: str) -> None:
        """Emit the file's records; malformed lines are reported once, on `skip_stream`."""
        for lineno, ev in events(data):
            if not isinstance(ev, dict):
                self.bad.append(lineno)
                continue
            etype = ev.get("type")
            if etype not in _MESSAGE_TYPES:
                if etype == "summary" and isinstance(ev.get("summary"), str):
                    self.summary = ev["summary"]
                continue
            uid = ev.get("uuid")
            msg = ev.get("message")
            if not isinstance(uid, str) or not uid or not isinstance(msg, dict):
                self.bad.append(lineno)
                continue
            self._message(ev, uid, msg)
        if "sessions" in self.wanted:
            self._emit_session()
        if self.bad:
            self._report_bad(skip_stream)

    def _message(self, ev: dict[str, Any], uid: str, msg: dict[str, Any]) -> None:
        ts = ev.get("timestamp")
        if isinstance(ts, str):
            if self.first_ts is None or ts < self.first_ts:
                self.first_ts = ts
            if self.last_ts is None or ts > self.last_ts:
                self.last_ts = ts
        self.count += 1
        if not self.meta:
            self.meta = {
                "cwd": ev.get("cwd"),
                "git_branch": ev.get("gitBranch"),
                "version": ev.get("version"),
            }
        sid = ev.get("sessionId") or self.session_id
        content = parse_content(msg.get("content"), self.tool_names)
        self.attachment_count += len(content.blocks)
        if "messages" in self.wanted:
            self._emit_message(ev, uid, msg, sid, content)
        if "attachments" in self.wanted:
            for i, block in content.blocks:
                self._emit_attachment(ev, uid, sid, i, block)

    def _emit_message(
        self, ev: dict[str, Any], uid: str, msg: dict[str, Any], sid: Any, content: Content
    ) -> None:
        record: dict[str, Any] = {
            "uuid": uid,
            "session_id": sid,
            "project": self.project,
            "parent_uuid": ev.get("parentUuid"),
            "role": msg.get("role") or ev.get("type"),
            "timestamp": ev.get("timestamp"),
            "text": clean("\n\n".join(content.texts)),
            "model": msg.get("model"),
            "usage": msg.get("usage"),
        }
        if content.tools:
            record["tool_uses"] = content.tools
        if content.blocks:
            record["attachment_count"] = len(content.blocks)
        if ev.get("isSidechain"):
            record["is_sidechain"] = True
        self.conn.record("messages", uid, record)

    def _emit_attachment(self, ev: dict[str, Any], uid: str, sid: Any, i: int, block: dict[str, Any]) -> None:
        size, preview, media = size_and_preview(block)
        tool_use_id = block.get("tool_use_id")
        aid = f"{uid}:{i}"
        record = {
            "id": aid,
            "message_uuid": uid,
            "session_id": sid,
            "block_index": i,
            "kind": block["type"],
            "tool_use_id": tool_use_id,
            "tool_name": self.tool_names.get(tool_use_id) if isinstance(tool_use_id, str) else None,
            "is_error": bool(block.get("is_error", False)),
            "size": size,
            "media_type": media,
            "preview": clean(preview) if preview is not None else None,
            "timestamp": ev.get("timestamp"),
        }
        self.conn.record("attachments", aid, record)

    def _emit_session(self) -> None:
        record = {
            "session_id": self.session_id,
            "project": self.project,
            "path": self.rel,
            **self.meta,
            "summary": self.summary,
            "first_timestamp": self.first_ts,
            "last_timestamp": self.last_ts,
            "message_count": self.count,
            "attachment_count": self.attachment_count,
        }
        self.conn.record("sessions", self.session_id, record)

    def _report_bad(self, stream: str) -> None:
        bad, rel = self.bad, self.rel
        self.conn.skip(
            stream,
            "malformed_source_line",
            message=f"{len(bad)} malformed line(s) in {rel} skipped; the file's other lines were read",
            recovery_hint="not_retriable",
            diagnostics={"file": rel, "lines": bad[:MAX_LINE_NUMBERS], "count": len(bad)},
        )
