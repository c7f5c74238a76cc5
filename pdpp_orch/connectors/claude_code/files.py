"""Where Claude Code keeps its session logs and memory notes, and which files are there."""

from __future__ import annotations

import os
from pathlib import Path


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
