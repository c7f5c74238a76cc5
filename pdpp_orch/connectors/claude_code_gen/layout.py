"""Where the generated files go, how many events each holds, and their mtimes: all decided
before anything is written, from the seed alone."""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass

from pdpp_orch.connectors.claude_code_gen.vocab import BRANCHES, HOME, ORGS, REPOS, TOPICS

DEFAULT_SESSIONS = 640
DEFAULT_MESSAGES = 227_249
DEFAULT_ATTACHMENTS = 121_874
DEFAULT_MEMORY_NOTES = 800
DEFAULT_PROJECTS = 40
DEFAULT_SEED = 20260420

# 2025-03-01T00:00:00Z .. 2026-04-19T00:00:00Z: the span the seed incident's logs covered.
T0_MS = 1_740_787_200_000
T1_MS = 1_776_556_800_000


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


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID string drawn from `rng`."""
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
    # One generator, drawn from in this order: projects, then sessions, then notes.
    rng = random.Random(f"layout:{seed}")
    paths, dirs = _projects(rng, projects)
    plans = _sessions(rng, dirs, sessions, messages, attachments)
    notes = _notes(rng, dirs, memory_notes)
    return Layout(paths, dirs, plans, notes, seed)


def _projects(rng: random.Random, projects: int) -> tuple[list[str], list[str]]:
    """Project paths and their (unique) directory names."""
    paths: list[str] = []
    dirs: list[str] = []
    for p in range(projects):
        repo = REPOS[p % len(REPOS)]
        org = ORGS[(p * 7 + p // len(REPOS)) % len(ORGS)]
        kind = rng.random()
        if kind < 0.6:
            path = f"{HOME}/src/github.com/{org}/{repo}"
        elif kind < 0.85:
            path = f"{HOME}/work/{org}/{repo}/.worktrees/{rng.choice(BRANCHES).replace('/', '-')}"
        else:
            path = f"{HOME}/Documents/projects/{repo}-{org}"
        name = project_dir_name(path)
        while name in dirs:  # two projects may draw the same path: keep directory names unique
            path += f"-{len(dirs)}"
            name = project_dir_name(path)
        paths.append(path)
        dirs.append(name)
    return paths, dirs


def _sessions(
    rng: random.Random, dirs: list[str], sessions: int, messages: int, attachments: int
) -> list[SessionPlan]:
    """Session files over the projects, with their event and attachment counts and times."""
    projects = len(dirs)
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
        start = rng.randint(T0_MS, max(T0_MS, T1_MS - (m + 1) * step))
        end = start + max(m, 1) * step
        sid = random_uuid(rng)
        mtime_ns = end * 1_000_000 + rng.randint(1, 2_000_000_000)
        plans.append(
            SessionPlan(i, p, f"{dirs[p]}/{sid}.jsonl", sid, m, att_counts[i], start, step, mtime_ns)
        )
    return plans


def _notes(rng: random.Random, dirs: list[str], memory_notes: int) -> list[NotePlan]:
    """Memory notes over the projects: MEMORY.md first, then topic files."""
    notes: list[NotePlan] = []
    per_project_notes = _split(memory_notes, [int(rng.paretovariate(1.5) * 1000) for _ in dirs])
    for p, k in enumerate(per_project_notes):
        for j in range(k):
            if j == 0:
                name = "MEMORY.md"
            elif j <= len(TOPICS):
                name = f"{TOPICS[j - 1]}.md"
            else:
                name = f"{TOPICS[j % len(TOPICS)]}-{j}.md"
            mtime_ns = rng.randint(T0_MS, T1_MS) * 1_000_000 + rng.randint(1, 999_999)
            notes.append(NotePlan(p, f"{dirs[p]}/memory/{name}", mtime_ns))
    return notes
