"""The per-file cursors: `relative path -> st_mtime`, flat for `messages`, grouped by project
for the other streams (see the package docstring for why)."""

from __future__ import annotations

from typing import Any


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
    """The cursor of `stream` for `relative path -> mtime` (see the package docstring)."""
    if stream == "messages":
        return {"file_mtimes": mtimes}
    projects: dict[str, dict[str, float]] = {}
    for rel, mtime in mtimes.items():
        project, _, name = rel.partition("/")
        projects.setdefault(project, {})[name] = mtime
    return {"projects": projects}
