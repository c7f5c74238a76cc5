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
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

DEFAULT_SESSIONS = 640
DEFAULT_MESSAGES = 227_249
DEFAULT_ATTACHMENTS = 121_874
DEFAULT_MEMORY_NOTES = 800
DEFAULT_PROJECTS = 40
DEFAULT_SEED = 20260420

# 2025-03-01T00:00:00Z .. 2026-04-19T00:00:00Z: the span the seed incident's logs covered.
_T0_MS = 1_740_787_200_000
_T1_MS = 1_776_556_800_000

_HOME = "/home/ana"
_ORGS = ["pdp-connect", "ana-codes", "acme-data", "openlab", "nightjar-io", "fieldnotes"]
_REPOS = [
    "pdpp-orchestrator",
    "pdpp-reference-implementation",
    "polyfill-connectors",
    "dotfiles",
    "household-ledger",
    "thesis-latex",
    "garden-sensor-firmware",
    "recipe-scraper",
    "blog",
    "infra-terraform-modules",
    "chatgpt-export-tools",
    "slack-archive-viewer",
    "usaa-csv-importer",
    "photo-dedupe",
    "mail-rules",
    "budget-dashboard",
    "kitchen-display",
    "bike-telemetry",
]
_BRANCHES = ["main", "main", "main", "dev", "feat/cursor-compaction", "fix/413-state-body", "wip"]
_MODELS = [
    "claude-sonnet-4-20250514",
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
    "claude-haiku-4-5-20251001",
]
_VERSIONS = ["1.0.83", "1.0.98", "1.0.113", "2.0.14", "2.0.31"]
_TOOLS = ["Bash", "Read", "Edit", "Grep", "Glob", "Write", "TodoWrite", "WebFetch", "Task"]
_TOPICS = [
    "testing",
    "deploy",
    "style",
    "architecture",
    "debugging",
    "dependencies",
    "release",
    "database",
    "api-conventions",
    "ci",
    "performance",
    "security",
    "onboarding",
    "glossary",
]
_WORDS = (
    "the a of to and in is for that with on as it be are this by run cursor state record stream "
    "connector runtime commit flush buffer session message token file path mtime json line error "
    "retry backoff gap skip worker workflow activity postgres temporal schema manifest test fixture "
    "assert import def class return async await yield lambda None True False self config env "
    "deploy build ruff mypy pytest commit branch merge rebase diff patch hunk review approve "
    "café naïve façade résumé 日本語 테스트 données größe 🙂 ✅ →"
).split()


@dataclass(frozen=True)
class SessionPlan:
    """One session file: where it goes, how many events and attachments, its times."""

    index: int
    project: int
    rel_path: str
    session_id: str
    messages: int
    attachments: int
    start_ms: int
    step_ms: int
    mtime_ns: int


@dataclass(frozen=True)
class NotePlan:
    """One memory note file."""

    project: int
    rel_path: str
    mtime_ns: int


@dataclass(frozen=True)
class Layout:
    """Everything about the generated tree that does not depend on file contents."""

    project_paths: list[str]
    project_dirs: list[str]
    sessions: list[SessionPlan]
    notes: list[NotePlan]
    seed: int

    def session_mtimes(self) -> dict[str, float]:
        """`relative path -> st_mtime` as a connector will read it after generation."""
        return {s.rel_path: st_mtime(s.mtime_ns) for s in self.sessions}


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


def st_mtime(ns: int) -> float:
    """The float `os.stat().st_mtime` for a nanosecond mtime: CPython computes `s + ns * 1e-9`,
    which is not always `ns / 1e9`."""
    return ns // 1_000_000_000 + (ns % 1_000_000_000) * 1e-9


def project_dir_name(path: str) -> str:
    """Claude Code's directory name for a project path."""
    return re.sub(r"[^A-Za-z0-9]", "-", path)


def _split(total: int, weights: list[int]) -> list[int]:
    """`total` split over `weights` exactly (largest remainder, integer arithmetic)."""
    if total == 0 or not weights:
        return [0] * len(weights)
    s = sum(weights)
    if s <= 0:
        raise ValueError("cannot split a positive total over zero weights")
    base = [total * w // s for w in weights]
    rest = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % s), i))
    for i in rest[: total - sum(base)]:
        base[i] += 1
    return base


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def plan_layout(
    *,
    sessions: int = DEFAULT_SESSIONS,
    messages: int = DEFAULT_MESSAGES,
    attachments: int = DEFAULT_ATTACHMENTS,
    memory_notes: int = DEFAULT_MEMORY_NOTES,
    projects: int = DEFAULT_PROJECTS,
    seed: int = DEFAULT_SEED,
) -> Layout:
    """The deterministic file layout, counts and mtimes, without writing anything."""
    if min(sessions, messages, attachments, memory_notes) < 0 or projects < 1:
        raise ValueError("counts must be non-negative and projects at least 1")
    if messages and not sessions:
        raise ValueError("messages need at least one session")
    if attachments and not messages:
        raise ValueError("attachments need at least one message")
    rng = random.Random(f"layout:{seed}")
    paths: list[str] = []
    dirs: list[str] = []
    for p in range(projects):
        repo = _REPOS[p % len(_REPOS)]
        org = _ORGS[(p * 7 + p // len(_REPOS)) % len(_ORGS)]
        kind = rng.random()
        if kind < 0.6:
            path = f"{_HOME}/src/github.com/{org}/{repo}"
        elif kind < 0.85:
            path = f"{_HOME}/work/{org}/{repo}/.worktrees/{rng.choice(_BRANCHES).replace('/', '-')}"
        else:
            path = f"{_HOME}/Documents/projects/{repo}-{org}"
        name = project_dir_name(path)
        while name in dirs:  # two projects may draw the same path: keep directory names unique
            path += f"-{len(dirs)}"
            name = project_dir_name(path)
        paths.append(path)
        dirs.append(name)

    # Heavy-tailed sizes, like real use: a few projects and sessions hold most of the history.
    if sessions >= projects:
        per_project = [
            1 + n for n in _split(sessions - projects, [int(rng.paretovariate(1.2) * 1000) for _ in dirs])
        ]
    else:
        per_project = [1 if p < sessions else 0 for p in range(projects)]
    owners = [p for p, n in enumerate(per_project) for _ in range(n)]
    msg_counts = _split(messages, [int(rng.lognormvariate(0, 1.0) * 1000) + 1 for _ in owners])
    att_counts = _split(attachments, [m * rng.randint(600, 1400) for m in msg_counts])

    plans: list[SessionPlan] = []
    for i, p in enumerate(owners):
        m = msg_counts[i]
        step = rng.randint(2_000, 90_000)
        start = rng.randint(_T0_MS, max(_T0_MS, _T1_MS - (m + 1) * step))
        end = start + max(m, 1) * step
        sid = _uuid(rng)
        mtime_ns = end * 1_000_000 + rng.randint(1, 2_000_000_000)
        plans.append(
            SessionPlan(i, p, f"{dirs[p]}/{sid}.jsonl", sid, m, att_counts[i], start, step, mtime_ns)
        )

    notes: list[NotePlan] = []
    per_project_notes = _split(memory_notes, [int(rng.paretovariate(1.5) * 1000) for _ in dirs])
    for p, k in enumerate(per_project_notes):
        for j in range(k):
            if j == 0:
                name = "MEMORY.md"
            elif j <= len(_TOPICS):
                name = f"{_TOPICS[j - 1]}.md"
            else:
                name = f"{_TOPICS[j % len(_TOPICS)]}-{j}.md"
            mtime_ns = rng.randint(_T0_MS, _T1_MS) * 1_000_000 + rng.randint(1, 999_999)
            notes.append(NotePlan(p, f"{dirs[p]}/memory/{name}", mtime_ns))
    return Layout(paths, dirs, plans, notes, seed)


class _Corpus:
    """Text drawn by slicing one pre-built string: far cheaper than joining words per event."""

    def __init__(self, rng: random.Random, size: int = 1 << 20):
        words = rng.choices(_WORDS, k=size // 5)
        for i in range(0, len(words), 97):
            words[i] += "\n"
        for i in range(0, len(words), 4099):
            words[i] += "\u2028"  # a real line-splitting trap: not a line break in JSONL
        self.text = " ".join(words)
        self.n = len(self.text)

    def take(self, rng: random.Random, lo: int, hi: int) -> str:
        length = rng.randint(lo, hi)
        at = rng.randrange(0, self.n - length)
        return self.text[at : at + length]


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _tool_input(rng: random.Random, name: str, cwd: str, corpus: _Corpus) -> dict[str, Any]:
    if name == "Bash":
        return {
            "command": rng.choice(["pytest -q", "git status", "ruff check .", "ls -la src"]),
            "description": corpus.take(rng, 10, 40),
        }
    if name in ("Read", "Write", "Edit"):
        path = f"{cwd}/src/{rng.choice(_WORDS)}_{rng.randint(1, 99)}.py"
        if name == "Read":
            return {"file_path": path}
        if name == "Write":
            return {"file_path": path, "content": corpus.take(rng, 40, 300)}
        return {
            "file_path": path,
            "old_string": corpus.take(rng, 10, 60),
            "new_string": corpus.take(rng, 10, 60),
        }
    if name in ("Grep", "Glob"):
        return {"pattern": rng.choice(_WORDS), "path": cwd}
    if name == "TodoWrite":
        return {"todos": [{"content": corpus.take(rng, 10, 50), "status": "pending"}]}
    if name == "WebFetch":
        return {"url": f"https://example.org/{rng.choice(_WORDS)}", "prompt": corpus.take(rng, 10, 60)}
    return {"description": corpus.take(rng, 10, 40), "prompt": corpus.take(rng, 40, 200)}


def _image_block(rng: random.Random) -> dict[str, Any]:
    raw = rng.randbytes(rng.randint(300, 3000))
    return {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": rng.choice(["image/png", "image/jpeg"]),
            "data": base64.b64encode(raw).decode(),
        },
    }


def _session_lines(plan: SessionPlan, layout: Layout, corpus: _Corpus) -> list[bytes]:
    """The lines of one session file, in order."""
    rng = random.Random(f"session:{layout.seed}:{plan.index}")
    cwd = layout.project_paths[plan.project]
    branch = rng.choice(_BRANCHES)
    version = rng.choice(_VERSIONS)
    model = rng.choice(_MODELS)
    m = plan.messages
    # Attachment blocks ride on user messages; the first user message is a prompt, the rest are
    # tool results answering the assistant message before them (or, sometimes, pasted images).
    users = (m + 1) // 2
    blocks = [0] * users
    if plan.attachments:
        slots = range(1, users) if users >= 2 else range(1)
        for s in rng.choices(slots, k=plan.attachments):
            blocks[s] += 1
    images = [s == 0 or rng.random() < 0.03 for s in range(users)]

    lines: list[bytes] = []
    if rng.random() < 0.4:
        lines.append(
            orjson.dumps({"type": "summary", "summary": corpus.take(rng, 20, 70), "leafUuid": _uuid(rng)})
        )
    base = {
        "isSidechain": False,
        "userType": "external",
        "cwd": cwd,
        "sessionId": plan.session_id,
        "version": version,
        "gitBranch": branch,
    }
    parent: str | None = None
    pending: list[tuple[str, str]] = []  # (tool_use_id, tool name) awaiting their results
    for j in range(m):
        ts = _iso(plan.start_ms + j * plan.step_ms + rng.randrange(plan.step_ms // 2))
        u = _uuid(rng)
        if j % 2 == 0:
            k = blocks[j // 2]
            content: Any
            if k and not images[j // 2] and pending:
                content = []
                for tool_id, _name in pending:
                    body: Any = corpus.take(rng, 60, rng.choice((300, 800, 2500)))
                    if rng.random() < 0.1:
                        body = [{"type": "text", "text": body}]
                    block: dict[str, Any] = {"tool_use_id": tool_id, "type": "tool_result", "content": body}
                    if rng.random() < 0.04:
                        block["is_error"] = True
                    content.append(block)
                pending = []
            elif k:
                content = [{"type": "text", "text": corpus.take(rng, 20, 400)}]
                content += [_image_block(rng) for _ in range(k)]
            else:
                content = corpus.take(rng, 20, 600)
            event: dict[str, Any] = {
                "parentUuid": parent,
                **base,
                "type": "user",
                "message": {"role": "user", "content": content},
                "uuid": u,
                "timestamp": ts,
            }
        else:
            nxt = (j + 1) // 2
            k = blocks[nxt] if nxt < users and j + 1 < m and not images[nxt] else 0
            content = [{"type": "text", "text": corpus.take(rng, 20, 700)}]
            for _ in range(k):
                name = rng.choice(_TOOLS)
                tool_id = f"toolu_01{rng.getrandbits(96):024x}"
                content.append(
                    {
                        "type": "tool_use",
                        "id": tool_id,
                        "name": name,
                        "input": _tool_input(rng, name, cwd, corpus),
                    }
                )
                pending.append((tool_id, name))
            message = {
                "id": f"msg_01{rng.getrandbits(96):024x}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": "tool_use" if k else "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": rng.randint(3, 40),
                    "cache_creation_input_tokens": rng.randint(0, 9000),
                    "cache_read_input_tokens": rng.randint(0, 90000),
                    "output_tokens": rng.randint(5, 2000),
                    "service_tier": "standard",
                },
            }
            event = {
                "parentUuid": parent,
                **base,
                "message": message,
                "requestId": f"req_011{rng.getrandbits(80):020x}",
                "type": "assistant",
                "uuid": u,
                "timestamp": ts,
            }
        lines.append(orjson.dumps(event))
        parent = u
    return lines


def _count_attachments(lines: list[bytes]) -> int:
    n = 0
    for line in lines:
        ev = orjson.loads(line)
        if ev.get("type") == "user" and isinstance(ev["message"]["content"], list):
            n += sum(1 for b in ev["message"]["content"] if b.get("type") in ("tool_result", "image"))
    return n


def _note_text(rng: random.Random, corpus: _Corpus, title: str) -> str:
    bullets = "\n".join(
        f"- {corpus.take(rng, 20, 160).replace(chr(10), ' ')}" for _ in range(rng.randint(2, 12))
    )
    return f"# {title}\n\n{bullets}\n"


def generate(
    out_dir: Path,
    *,
    sessions: int = DEFAULT_SESSIONS,
    messages: int = DEFAULT_MESSAGES,
    attachments: int = DEFAULT_ATTACHMENTS,
    memory_notes: int = DEFAULT_MEMORY_NOTES,
    projects: int = DEFAULT_PROJECTS,
    seed: int = DEFAULT_SEED,
    malformed_lines: int = 0,
    verify: bool = False,
) -> GenSummary:
    """Write the tree under `out_dir` (created if missing) and return exact counts and per-file maps.

    The same arguments always give the same bytes and mtimes. `verify` re-parses every file to
    check the attachment count (slow; for tests of the generator itself).
    """
    began = time.perf_counter()
    layout = plan_layout(
        sessions=sessions,
        messages=messages,
        attachments=attachments,
        memory_notes=memory_notes,
        projects=projects,
        seed=seed,
    )
    corpus = _Corpus(random.Random(f"corpus:{seed}"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for d in layout.project_dirs:
        (out_dir / d).mkdir(exist_ok=True)
    summary = GenSummary(out_dir, projects, sessions, 0, 0, 0, 0, 0, 0.0)

    bad_rng = random.Random(f"malformed:{seed}")
    with_messages = [s.index for s in layout.sessions if s.messages]
    if malformed_lines and not with_messages:
        raise ValueError("malformed lines need at least one session with messages")
    bad_files: dict[int, int] = {}
    for _ in range(malformed_lines):
        i = bad_rng.choice(with_messages)
        bad_files[i] = bad_files.get(i, 0) + 1

    for plan in layout.sessions:
        lines = _session_lines(plan, layout, corpus)
        if verify:
            assert _count_attachments(lines) == plan.attachments, plan.rel_path
        for _ in range(bad_files.get(plan.index, 0)):
            victim = lines[bad_rng.randrange(len(lines))]
            # A line cut short, as a crash mid-write leaves it (possibly mid UTF-8 sequence).
            lines.insert(bad_rng.randrange(len(lines) + 1), victim[: max(1, len(victim) // 2)])
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
        if plan.index in bad_files:
            summary.malformed_by_file[plan.rel_path] = bad_files[plan.index]
            summary.malformed_lines += bad_files[plan.index]

    note_rng = random.Random(f"notes:{seed}")
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
    summary.seconds = time.perf_counter() - began
    return summary


def main(argv: list[str] | None = None) -> None:
    """CLI: generate a tree and print its counts as JSON."""
    ap = argparse.ArgumentParser(
        prog="python -m pdpp_orch.connectors.claude_code_gen", description=__doc__.split("\n")[0]
    )
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--sessions", type=int, default=DEFAULT_SESSIONS)
    ap.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    ap.add_argument("--attachments", type=int, default=DEFAULT_ATTACHMENTS)
    ap.add_argument("--memory-notes", type=int, default=DEFAULT_MEMORY_NOTES)
    ap.add_argument("--projects", type=int, default=DEFAULT_PROJECTS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--malformed-lines", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        summary = generate(
            args.out_dir,
            sessions=args.sessions,
            messages=args.messages,
            attachments=args.attachments,
            memory_notes=args.memory_notes,
            projects=args.projects,
            seed=args.seed,
            malformed_lines=args.malformed_lines,
        )
    except ValueError as e:
        ap.error(str(e))
    sys.stdout.buffer.write(orjson.dumps(summary.counts(), option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
