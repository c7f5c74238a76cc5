"""One collection's walk over the session files and memory notes, and the cursors it leaves."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pdpp_orch.connectors.claude_code.cursor import cursor_mtimes, make_cursor
from pdpp_orch.connectors.claude_code.files import memory_files, session_files
from pdpp_orch.connectors.claude_code.jsonl import clean
from pdpp_orch.connectors.claude_code.session import SessionFile
from pdpp_orch.connectors.sdk import Connector

SESSION_STREAMS = ("messages", "attachments", "sessions")
ALL_STREAMS = (*SESSION_STREAMS, "memory_notes")
PROGRESS_EVERY_FILES = 64


def _note_record(rel: str, raw: bytes, mtime: float) -> dict[str, Any]:
    project, _, _ = rel.partition("/")
    return {
        "path": rel,
        "project": project,
        "content": clean(raw.decode("utf-8", "replace")),
        "size": len(raw),
        "modified_at": datetime.fromtimestamp(mtime, UTC).isoformat(),
    }


class Reader:
    """Reads session files and memory notes and emits the in-scope streams' records."""

    def __init__(self, conn: Connector, root: Path, scope: set[str], incremental: bool):
        self.conn = conn
        self.root = root
        self.scope = scope
        self.prev = {s: cursor_mtimes(conn.cursor(s)) if incremental else {} for s in ALL_STREAMS}
        self.next: dict[str, dict[str, float]] = {s: {} for s in ALL_STREAMS}

    def run(self) -> None:
        """Emit every in-scope stream's records, then its STATE."""
        session_streams = [s for s in SESSION_STREAMS if s in self.scope]
        if session_streams:
            self.read_sessions(session_streams)
        for s in session_streams:
            self.conn.state(s, make_cursor(s, self.next[s]))
        if "memory_notes" in self.scope:
            self.read_memory()
            self.conn.state("memory_notes", make_cursor("memory_notes", self.next["memory_notes"]))

    def read_sessions(self, streams: list[str]) -> None:
        """Read the session files new or changed for any of `streams` since their cursors."""
        files = session_files(self.root)
        first = streams[0]
        for n, (rel, path) in enumerate(files, 1):
            mtime = self._mtime(rel, path, streams)
            if mtime is None:
                continue
            wanted = [s for s in streams if self.prev[s].get(rel) != mtime]
            if wanted:
                data = self._bytes(rel, path, streams)
                if data is None:
                    continue
                SessionFile(self.conn, rel, set(wanted)).read(data, first)
            for s in streams:
                self.next[s][rel] = mtime
            if n % PROGRESS_EVERY_FILES == 0:
                self.conn.progress(
                    f"session files: {n} of {len(files)}", stream=first, count=n, total=len(files)
                )

    def read_memory(self) -> None:
        """Emit the notes new or changed since the cursor, and a delete for each one removed."""
        prev = self.prev["memory_notes"]
        cur = self.next["memory_notes"]
        for rel, path in memory_files(self.root):
            mtime = self._mtime(rel, path, ["memory_notes"])
            if mtime is None:
                continue
            if prev.get(rel) != mtime:
                raw = self._bytes(rel, path, ["memory_notes"])
                if raw is None:
                    continue
                self.conn.record("memory_notes", rel, _note_record(rel, raw, mtime))
            cur[rel] = mtime
        # The owner deleting a note is a change to their data: say so, as the cursor remembers it.
        for rel in sorted(set(prev) - set(cur)):
            if not (self.root / rel).exists():
                self.conn.record("memory_notes", rel, {"path": rel}, delete=True)

    def _mtime(self, rel: str, path: Path, streams: list[str]) -> float | None:
        # Taken before reading: a write during the read shows on the next run.
        try:
            return os.stat(path).st_mtime
        except FileNotFoundError:
            return None  # removed since listing: Claude Code's own retention cleanup, not a deletion
        except OSError as e:
            self._unreadable(rel, e, streams)
            return None

    def _bytes(self, rel: str, path: Path, streams: list[str]) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError as e:
            self._unreadable(rel, e, streams)
            return None

    def _unreadable(self, rel: str, err: OSError, streams: list[str]) -> None:
        self.conn.skip(
            streams[0],
            "source_file_unreadable",
            message=f"could not read {rel}: {err.strerror or err}",
            recovery_hint="retry_by_runtime",
            diagnostics={"file": rel},
        )
        for s in streams:  # the old entry, if any, keeps the file due for the next run
            if rel in self.prev[s]:
                self.next[s][rel] = self.prev[s][rel]
