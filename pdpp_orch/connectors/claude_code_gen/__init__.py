"""A deterministic generator of Claude Code session logs in the real on-disk format (seed Case B).

    python -m pdpp_orch.connectors.claude_code_gen OUT_DIR [--sessions N] [--messages M]
        [--attachments A] [--memory-notes K] [--projects P] [--seed S] [--malformed-lines L]

OUT_DIR plays the part of `~/.claude/projects`:

    OUT_DIR/<project-dir>/<session-uuid>.jsonl     one JSON event per line
    OUT_DIR/<project-dir>/memory/MEMORY.md         memory notes (MEMORY.md first, then topics)
    OUT_DIR/<project-dir>/memory/<topic>.md

`<project-dir>` is the project's absolute path with every character other than a letter or digit
replaced by `-`, as Claude Code names it (`/home/ana/src/github.com/x` → `-home-ana-src-github-com-x`).

Counts are exact: `messages` is the number of `user`/`assistant` events over all files (`summary`
lines are extra), `attachments` the number of top-level `tool_result` and `image` content blocks in
user messages, `memory_notes` the number of `.md` files. `malformed_lines` adds that many truncated
lines (as a crash mid-write leaves them) on top of the counted events. The defaults are the sizes
of the seed incident: 640 + 227,249 + 121,874 + 800 = 350,563 records.

Every file's mtime is set with nanosecond precision (os.utime), so the float `st_mtime` a
connector reads has a sub-second part, like the cursors that grew to ~50 KB in Case B.

Modules: `layout` (what goes where, decided before writing), `session` (a session file's
lines), `corpus` and `vocab` (what the text is made of), `tree` (`generate`), `__main__` (the
command line).
"""

from __future__ import annotations

from pdpp_orch.connectors.claude_code_gen.layout import (
    DEFAULT_ATTACHMENTS,
    DEFAULT_MEMORY_NOTES,
    DEFAULT_MESSAGES,
    DEFAULT_PROJECTS,
    DEFAULT_SEED,
    DEFAULT_SESSIONS,
    Layout,
    NotePlan,
    SessionPlan,
    plan_layout,
    project_dir_name,
    st_mtime,
)
from pdpp_orch.connectors.claude_code_gen.tree import GenSummary, Sizes, generate

__all__ = [
    "DEFAULT_ATTACHMENTS",
    "DEFAULT_MEMORY_NOTES",
    "DEFAULT_MESSAGES",
    "DEFAULT_PROJECTS",
    "DEFAULT_SEED",
    "DEFAULT_SESSIONS",
    "GenSummary",
    "Layout",
    "NotePlan",
    "SessionPlan",
    "Sizes",
    "generate",
    "plan_layout",
    "project_dir_name",
    "st_mtime",
]
