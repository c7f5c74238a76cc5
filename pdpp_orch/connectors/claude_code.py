"""`claude_code`: Claude Code's local session logs and memory notes as four PDPP streams.

The root is `$CLAUDE_CODE_ROOT`, else `~/.claude/projects`. Layout read:

    <root>/<project-dir>/<session-uuid>.jsonl   one JSON event per line (user/assistant/summary/...)
    <root>/<project-dir>/CLAUDE.md              a memory note, if present
    <root>/<project-dir>/memory/**/*.md         memory notes

Streams (all paths are relative to the root, `/`-separated):

- `sessions`      one record per session file (key `session_id`, the file's uuid stem)
- `messages`      one per `user`/`assistant` event (key `uuid`)
- `attachments`   one per top-level `tool_result` or `image` block of a message
                  (key `id` = `<message uuid>:<block index>`)
- `memory_notes`  one per note file (key `path`); a note gone since the last run is a delete

Cursors are per file: a file whose float `st_mtime` equals the cursor's is not read again for
that stream; new or changed files are re-read whole (keys make re-emission idempotent).
`messages` keeps the flat shape of the seed incident, `{"file_mtimes": {"<relative path>":
<mtime>}}` (~75 KB at the seed sizes, the cursor that hit a 100 KB body limit in Case B); the
other streams group by project, `{"projects": {"<project-dir>": {"<file>": <mtime>}}}`, which does
not repeat the project directory and is smaller (~44 KB, ~30 KB for memory_notes), so a cursor
cap can fail `messages` alone as in Case B. Either shape is accepted on input.

A line that is not a JSON object, or a message event without a uuid, is skipped; each file with
such lines gets one informational SKIP_RESULT (`malformed_source_line`, `not_retriable`). A file
that cannot be read gets a SKIP_RESULT (`source_file_unreadable`, retried by the runtime) and
keeps its old cursor entry, so the next run tries it again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from pdpp_orch.connectors.sdk import Connector

SESSION_STREAMS = ("messages", "attachments", "sessions")
ALL_STREAMS = (*SESSION_STREAMS, "memory_notes")
PREVIEW_CHARS = 256
MAX_LINE_NUMBERS = 100  # line numbers listed in one SKIP_RESULT; the message carries the total
PROGRESS_EVERY_FILES = 64
_MESSAGE_TYPES = frozenset(("user", "assistant"))
_ATTACHMENT_TYPES = frozenset(("tool_result", "image"))


def root_dir() -> Path:
    """The directory holding Claude Code's per-project session folders."""
    env = os.environ.get("CLAUDE_CODE_ROOT")
    return Path(env).expanduser() if env else Path.home() / ".claude" / "projects"


def session_files(root: Path) -> list[tuple[str, Path]]:
    """`(relative path, absolute path)` of every `<project>/<session>.jsonl`, sorted."""
    out: list[tuple[str, Path]] = []
    for project in _subdirs(root):
        try:
            entries = list(os.scandir(project))
        except OSError:
            continue
        for e in entries:
            if e.name.endswith(".jsonl") and e.is_file():
                out.append((f"{project.name}/{e.name}", Path(e.path)))
    out.sort()
    return out


def memory_files(root: Path) -> list[tuple[str, Path]]:
    """`(relative path, absolute path)` of every memory note, sorted."""
    out: list[tuple[str, Path]] = []
    for project in _subdirs(root):
        claude_md = project / "CLAUDE.md"
        if claude_md.is_file():
            out.append((f"{project.name}/CLAUDE.md", claude_md))
        memory = project / "memory"
        if memory.is_dir():
            for p in memory.rglob("*.md"):
                if p.is_file():
                    out.append((p.relative_to(root).as_posix(), p))
    out.sort()
    return out


def _subdirs(root: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(root) if e.is_dir())
    except OSError:
        return []


def cursor_mtimes(cursor: Any) -> dict[str, float]:
    """`relative path -> mtime` from a cursor of either shape; anything unusable reads as empty
    (the files are read again, which is safe because records are keyed)."""
    if not isinstance(cursor, dict):
        return {}
    flat: dict[str, Any] = {}
    raw = cursor.get("file_mtimes")
    if isinstance(raw, dict):
        flat.update(raw)
    projects = cursor.get("projects")
    if isinstance(projects, dict):
        for project, files in projects.items():
            if isinstance(files, dict):
                flat.update({f"{project}/{name}": v for name, v in files.items()})
    return {k: float(v) for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def make_cursor(stream: str, mtimes: dict[str, float]) -> dict[str, Any]:
    """The cursor of `stream` for `relative path -> mtime` (see the module docstring)."""
    if stream == "messages":
        return {"file_mtimes": mtimes}
    projects: dict[str, dict[str, float]] = {}
    for rel, mtime in mtimes.items():
        project, _, name = rel.partition("/")
        projects.setdefault(project, {})[name] = mtime
    return {"projects": projects}


def _loads(line: bytes) -> Any:
    """Parse one line; None if it is not JSON.

    orjson rejects lone UTF-16 surrogates, which JavaScript writes as escapes (a tool output cut
    mid-pair), and integers beyond 64 bits; the stdlib accepts both, and a surrogate becomes `?`.
    """
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    try:
        value = json.loads(line)
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)  # NaN/Infinity are not JSON
    except (ValueError, RecursionError):
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.loads(text.encode("utf-8", "replace"))
    return value


def _clean(text: str) -> str:
    # PostgreSQL jsonb cannot store U+0000, and tool output from binary files contains it.
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _block_size_and_preview(block: dict[str, Any]) -> tuple[int, str | None, str | None]:
    """Byte size, text preview and media type of a tool_result or image block."""
    if block.get("type") == "image":
        return _image_size(block), None, _media_type(block)
    content = block.get("content")
    if isinstance(content, str):
        return len(content.encode("utf-8", "replace")), content[:PREVIEW_CHARS], None
    size = 0
    preview: str | None = None
    media: str | None = None
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                size += len(part["text"].encode("utf-8", "replace"))
                if preview is None:
                    preview = part["text"][:PREVIEW_CHARS]
            elif part.get("type") == "image":
                size += _image_size(part)
                media = media or _media_type(part)
    return size, preview, media


def _image_size(block: dict[str, Any]) -> int:
    source = block.get("source")
    data = source.get("data") if isinstance(source, dict) else None
    if not isinstance(data, str):
        return 0
    return len(data) * 3 // 4 - data[-2:].count("=")  # decoded base64 size, without decoding


def _media_type(block: dict[str, Any]) -> str | None:
    source = block.get("source")
    media = source.get("media_type") if isinstance(source, dict) else None
    return media if isinstance(media, str) else None


class _Reader:
    """Reads session files and memory notes and emits the in-scope streams' records."""

    def __init__(self, conn: Connector, root: Path, scope: set[str], incremental: bool):
        self.conn = conn
        self.root = root
        self.scope = scope
        self.prev = {s: cursor_mtimes(conn.cursor(s)) if incremental else {} for s in ALL_STREAMS}
        self.next: dict[str, dict[str, float]] = {s: {} for s in ALL_STREAMS}

    def run(self) -> None:
        session_streams = [s for s in SESSION_STREAMS if s in self.scope]
        if session_streams:
            self.read_sessions(session_streams)
        for s in session_streams:
            self.conn.state(s, make_cursor(s, self.next[s]))
        if "memory_notes" in self.scope:
            self.read_memory()
            self.conn.state("memory_notes", make_cursor("memory_notes", self.next["memory_notes"]))

    def read_sessions(self, streams: list[str]) -> None:
        files = session_files(self.root)
        first = streams[0]
        for n, (rel, path) in enumerate(files, 1):
            try:
                mtime = os.stat(path).st_mtime  # before reading: a write during the read shows next run
            except FileNotFoundError:
                continue  # removed since listing: Claude Code's own retention cleanup, not a deletion
            except OSError as e:
                self._unreadable(first, rel, e, streams)
                continue
            wanted = [s for s in streams if self.prev[s].get(rel) != mtime]
            if wanted:
                try:
                    data = path.read_bytes()
                except OSError as e:
                    self._unreadable(first, rel, e, streams)
                    continue
                self.read_session(rel, data, set(wanted), first)
            for s in streams:
                self.next[s][rel] = mtime
            if n % PROGRESS_EVERY_FILES == 0:
                self.conn.progress(
                    f"session files: {n} of {len(files)}", stream=first, count=n, total=len(files)
                )

    def read_session(self, rel: str, data: bytes, wanted: set[str], skip_stream: str) -> None:
        """Emit one session file's records for the `wanted` streams."""
        conn = self.conn
        want_messages = "messages" in wanted
        want_attachments = "attachments" in wanted
        project, _, name = rel.partition("/")
        session_id = name.removesuffix(".jsonl")
        bad: list[int] = []
        first_ts: str | None = None
        last_ts: str | None = None
        count = 0
        attachment_count = 0
        meta: dict[str, Any] = {}
        summary: str | None = None
        tool_names: dict[str, str] = {}
        for lineno, line in enumerate(data.split(b"\n"), 1):
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line or line.isspace():
                continue
            ev = _loads(line)
            if not isinstance(ev, dict):
                bad.append(lineno)
                continue
            etype = ev.get("type")
            if etype not in _MESSAGE_TYPES:
                if etype == "summary" and isinstance(ev.get("summary"), str):
                    summary = ev["summary"]
                continue
            uid = ev.get("uuid")
            msg = ev.get("message")
            if not isinstance(uid, str) or not uid or not isinstance(msg, dict):
                bad.append(lineno)
                continue
            ts = ev.get("timestamp")
            if isinstance(ts, str):
                if first_ts is None or ts < first_ts:
                    first_ts = ts
                if last_ts is None or ts > last_ts:
                    last_ts = ts
            count += 1
            if not meta:
                meta = {"cwd": ev.get("cwd"), "git_branch": ev.get("gitBranch"), "version": ev.get("version")}
            sid = ev.get("sessionId") or session_id
            content = msg.get("content")
            texts: list[str] = []
            tools: list[str] = []
            blocks: list[tuple[int, dict[str, Any]]] = []
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                for i, block in enumerate(content):
                    if not isinstance(block, dict):
                        continue
                    btype = block.get("type")
                    if btype == "text":
                        t = block.get("text")
                        if isinstance(t, str):
                            texts.append(t)
                    elif btype == "tool_use":
                        tname = block.get("name")
                        if isinstance(tname, str):
                            tools.append(tname)
                            tid = block.get("id")
                            if isinstance(tid, str):
                                tool_names[tid] = tname
                    elif btype in _ATTACHMENT_TYPES:
                        blocks.append((i, block))
            attachment_count += len(blocks)
            if want_messages:
                record: dict[str, Any] = {
                    "uuid": uid,
                    "session_id": sid,
                    "project": project,
                    "parent_uuid": ev.get("parentUuid"),
                    "role": msg.get("role") or etype,
                    "timestamp": ts,
                    "text": _clean("\n\n".join(texts)),
                    "model": msg.get("model"),
                    "usage": msg.get("usage"),
                }
                if tools:
                    record["tool_uses"] = tools
                if blocks:
                    record["attachment_count"] = len(blocks)
                if ev.get("isSidechain"):
                    record["is_sidechain"] = True
                conn.record("messages", uid, record)
            if want_attachments:
                for i, block in blocks:
                    size, preview, media = _block_size_and_preview(block)
                    tool_use_id = block.get("tool_use_id")
                    aid = f"{uid}:{i}"
                    conn.record(
                        "attachments",
                        aid,
                        {
                            "id": aid,
                            "message_uuid": uid,
                            "session_id": sid,
                            "block_index": i,
                            "kind": block["type"],
                            "tool_use_id": tool_use_id,
                            "tool_name": tool_names.get(tool_use_id)
                            if isinstance(tool_use_id, str)
                            else None,
                            "is_error": bool(block.get("is_error", False)),
                            "size": size,
                            "media_type": media,
                            "preview": _clean(preview) if preview is not None else None,
                            "timestamp": ts,
                        },
                    )
        if "sessions" in wanted:
            conn.record(
                "sessions",
                session_id,
                {
                    "session_id": session_id,
                    "project": project,
                    "path": rel,
                    **meta,
                    "summary": summary,
                    "first_timestamp": first_ts,
                    "last_timestamp": last_ts,
                    "message_count": count,
                    "attachment_count": attachment_count,
                },
            )
        if bad:
            conn.skip(
                skip_stream,
                "malformed_source_line",
                message=f"{len(bad)} malformed line(s) in {rel} skipped; the file's other lines were read",
                recovery_hint="not_retriable",
                diagnostics={"file": rel, "lines": bad[:MAX_LINE_NUMBERS], "count": len(bad)},
            )

    def read_memory(self) -> None:
        prev = self.prev["memory_notes"]
        cur = self.next["memory_notes"]
        for rel, path in memory_files(self.root):
            try:
                mtime = os.stat(path).st_mtime
            except FileNotFoundError:
                continue
            except OSError as e:
                self._unreadable("memory_notes", rel, e, ["memory_notes"])
                continue
            if prev.get(rel) != mtime:
                try:
                    raw = path.read_bytes()
                except OSError as e:
                    self._unreadable("memory_notes", rel, e, ["memory_notes"])
                    continue
                project, _, _ = rel.partition("/")
                self.conn.record(
                    "memory_notes",
                    rel,
                    {
                        "path": rel,
                        "project": project,
                        "content": _clean(raw.decode("utf-8", "replace")),
                        "size": len(raw),
                        "modified_at": datetime.fromtimestamp(mtime, UTC).isoformat(),
                    },
                )
            cur[rel] = mtime
        # The owner deleting a note is a change to their data: say so, as the cursor remembers it.
        for rel in sorted(set(prev) - set(cur)):
            if not (self.root / rel).exists():
                self.conn.record("memory_notes", rel, {"path": rel}, delete=True)

    def _unreadable(self, stream: str, rel: str, err: OSError, streams: list[str]) -> None:
        self.conn.skip(
            stream,
            "source_file_unreadable",
            message=f"could not read {rel}: {err.strerror or err}",
            recovery_hint="retry_by_runtime",
            diagnostics={"file": rel},
        )
        for s in streams:  # the old entry, if any, keeps the file due for the next run
            if rel in self.prev[s]:
                self.next[s][rel] = self.prev[s][rel]


def _iter_scope(conn: Connector) -> Iterator[str]:
    names = conn.streams()
    yield from (s for s in ALL_STREAMS if s in names) if names else ALL_STREAMS


def main() -> None:
    """Run one collection: read START, emit records and one STATE per in-scope stream, DONE."""
    conn = Connector()
    start = conn.start()
    if start.get("recovery_only"):
        conn.done()  # no detail gaps are ever opened, so there is nothing to drain
    root = root_dir()
    if not root.is_dir():
        # Zero records from a missing directory would read as "nothing new"; it is a setup problem.
        conn.done(
            "failed",
            error={
                "message": f"Claude Code projects directory {root} does not exist (set CLAUDE_CODE_ROOT)",
                "retryable": False,
                "code": "source_root_missing",
                "recovery_hint": "manual_action_required",
            },
        )
    incremental = start.get("collection_mode") != "full_refresh"
    _Reader(conn, root, set(_iter_scope(conn)), incremental).run()
    conn.done()


if __name__ == "__main__":
    main()
