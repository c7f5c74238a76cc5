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

Cursors are per file (`cursor`): a file whose float `st_mtime` equals the cursor's is not read again for
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

Modules: `files` (the layout read), `cursor`, `jsonl` (parsing lines), `session` (one session
file's records), `blocks` (attachment sizes and previews), `reader` (a collection's walk),
`collect` (`main`, START to DONE).
"""

from __future__ import annotations

from pdpp_orch.connectors.claude_code.collect import main
from pdpp_orch.connectors.claude_code.cursor import cursor_mtimes, make_cursor
from pdpp_orch.connectors.claude_code.files import memory_files, root_dir, session_files
from pdpp_orch.connectors.claude_code.reader import ALL_STREAMS, SESSION_STREAMS

__all__ = [
    "ALL_STREAMS",
    "SESSION_STREAMS",
    "cursor_mtimes",
    "main",
    "make_cursor",
    "memory_files",
    "root_dir",
    "session_files",
]
