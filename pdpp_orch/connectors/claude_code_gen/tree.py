"""`generate`: the planned tree written to disk, every file with its planned mtime."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

from pdpp_orch.connectors.claude_code_gen.corpus import Corpus
from pdpp_orch.connectors.claude_code_gen.layout import Layout, SessionPlan, plan_layout
from pdpp_orch.connectors.claude_code_gen.session import count_attachments, session_lines


class Sizes(TypedDict, total=False):
    """`plan_layout`'s arguments (each defaults to the seed incident's size)."""

    sessions: int
    messages: int
    attachments: int
    memory_notes: int
    projects: int
    seed: int


@dataclass
class GenSummary:
    """What `generate` wrote; counts are exact, per-file maps are keyed by path relative to root."""

    root: Path
    projects: int
    sessions: int
    messages: int
    attachments: int
    memory_notes: int
    malformed_lines: int
    bytes_written: int
    seconds: float
    session_mtimes: dict[str, float] = field(default_factory=dict)
    memory_mtimes: dict[str, float] = field(default_factory=dict)
    messages_by_file: dict[str, int] = field(default_factory=dict)
    attachments_by_file: dict[str, int] = field(default_factory=dict)
    malformed_by_file: dict[str, int] = field(default_factory=dict)

    @property
    def records(self) -> int:
        """Records a full run of the connector emits over its four streams."""
        return self.sessions + self.messages + self.attachments + self.memory_notes

    def counts(self) -> dict[str, Any]:
        """The summary without the per-file maps (what the CLI prints)."""
        return {
            "root": str(self.root),
            "projects": self.projects,
            "sessions": self.sessions,
            "messages": self.messages,
            "attachments": self.attachments,
            "memory_notes": self.memory_notes,
            "records": self.records,
            "malformed_lines": self.malformed_lines,
            "bytes_written": self.bytes_written,
            "seconds": round(self.seconds, 3),
        }


def generate(
    out_dir: Path, *, malformed_lines: int = 0, verify: bool = False, **sizes: Unpack[Sizes]
) -> GenSummary:
    """Write the tree under `out_dir` (created if missing) and return exact counts and per-file maps.

    `sizes` are `plan_layout`'s. The same arguments always give the same bytes and mtimes.
    `verify` re-parses every file to check the attachment count (slow; for tests of the generator
    itself).
    """
    began = time.perf_counter()
    layout = plan_layout(**sizes)
    corpus = Corpus(random.Random(f"corpus:{layout.seed}"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for d in layout.project_dirs:
        (out_dir / d).mkdir(exist_ok=True)
    summary = GenSummary(out_dir, len(layout.project_dirs), len(layout.sessions), 0, 0, 0, 0, 0, 0.0)
    bad_rng = random.Random(f"malformed:{layout.seed}")
    bad_files = _malformed_per_file(bad_rng, layout, malformed_lines)
    for plan in layout.sessions:
        lines = session_lines(plan, layout, corpus)
        if verify:
            assert count_attachments(lines) == plan.attachments, plan.rel_path
        for _ in range(bad_files.get(plan.index, 0)):
            victim = lines[bad_rng.randrange(len(lines))]
            # A line cut short, as a crash mid-write leaves it (possibly mid UTF-8 sequence).
            lines.insert(bad_rng.randrange(len(lines) + 1), victim[: max(1, len(victim) // 2)])
        _write_session(out_dir, plan, lines, bad_files.get(plan.index), summary)
    _write_notes(out_dir, layout, corpus, summary)
    summary.seconds = time.perf_counter() - began
    return summary


def _malformed_per_file(rng: random.Random, layout: Layout, malformed_lines: int) -> dict[int, int]:
    """How many truncated lines each session (by index) gets."""
    with_messages = [s.index for s in layout.sessions if s.messages]
    if malformed_lines and not with_messages:
        raise ValueError("malformed lines need at least one session with messages")
    bad_files: dict[int, int] = {}
    for _ in range(malformed_lines):
        i = rng.choice(with_messages)
        bad_files[i] = bad_files.get(i, 0) + 1
    return bad_files


def _write_session(
    out_dir: Path, plan: SessionPlan, lines: list[bytes], malformed: int | None, summary: GenSummary
) -> None:
    data = b"\n".join(lines) + b"\n" if lines else b""
    path = out_dir / plan.rel_path
    with open(path, "wb", buffering=1 << 20) as f:
        f.write(data)
    os.utime(path, ns=(plan.mtime_ns, plan.mtime_ns))
    summary.bytes_written += len(data)
    summary.messages += plan.messages
    summary.attachments += plan.attachments
    summary.session_mtimes[plan.rel_path] = os.stat(path).st_mtime
    summary.messages_by_file[plan.rel_path] = plan.messages
    summary.attachments_by_file[plan.rel_path] = plan.attachments
    if malformed is not None:
        summary.malformed_by_file[plan.rel_path] = malformed
        summary.malformed_lines += malformed


def _write_notes(out_dir: Path, layout: Layout, corpus: Corpus, summary: GenSummary) -> None:
    note_rng = random.Random(f"notes:{layout.seed}")
    for note in layout.notes:
        path = out_dir / note.rel_path
        path.parent.mkdir(exist_ok=True)
        title = path.stem.replace("-", " ").title()
        data = _note_text(note_rng, corpus, title).encode()
        path.write_bytes(data)
        os.utime(path, ns=(note.mtime_ns, note.mtime_ns))
        summary.bytes_written += len(data)
        summary.memory_notes += 1
        summary.memory_mtimes[note.rel_path] = os.stat(path).st_mtime


def _note_text(rng: random.Random, corpus: Corpus, title: str) -> str:
    bullets = "\n".join(
        f"- {corpus.take(rng, 20, 160).replace(chr(10), ' ')}" for _ in range(rng.randint(2, 12))
    )
    return f"# {title}\n\n{bullets}\n"
