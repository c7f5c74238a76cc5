"""The lines of one generated session file: user and assistant events in Claude Code's format."""

from __future__ import annotations

import base64
import random
import time
from typing import Any

import orjson

from pdpp_orch.connectors.claude_code_gen.corpus import Corpus
from pdpp_orch.connectors.claude_code_gen.layout import Layout, SessionPlan, random_uuid
from pdpp_orch.connectors.claude_code_gen.vocab import BRANCHES, MODELS, TOOLS, VERSIONS, WORDS


def session_lines(plan: SessionPlan, layout: Layout, corpus: Corpus) -> list[bytes]:
    """The lines of one session file, in order."""
    return _Session(plan, layout, corpus).lines()


class _Session:
    """One session's events, every value drawn in a fixed order from the session's own generator
    (so the same seed always gives the same bytes)."""

    def __init__(self, plan: SessionPlan, layout: Layout, corpus: Corpus) -> None:
        self.plan = plan
        self.corpus = corpus
        self.rng = rng = random.Random(f"session:{layout.seed}:{plan.index}")
        self.cwd = layout.project_paths[plan.project]
        branch = rng.choice(BRANCHES)
        version = rng.choice(VERSIONS)
        self.model = rng.choice(MODELS)
        self.users = (plan.messages + 1) // 2
        self.blocks, self.images = self._attachment_slots()
        self.base = {
            "isSidechain": False,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": plan.session_id,
            "version": version,
            "gitBranch": branch,
        }
        self.pending: list[tuple[str, str]] = []  # (tool_use_id, tool name) awaiting their results

    def _attachment_slots(self) -> tuple[list[int], list[bool]]:
        """Attachment blocks per user message, and which user messages carry images.

        Attachment blocks ride on user messages; the first user message is a prompt, the rest are
        tool results answering the assistant message before them (or, sometimes, pasted images).
        """
        rng, users = self.rng, self.users
        blocks = [0] * users
        if self.plan.attachments:
            slots = range(1, users) if users >= 2 else range(1)
            for s in rng.choices(slots, k=self.plan.attachments):
                blocks[s] += 1
        images = [s == 0 or rng.random() < 0.03 for s in range(users)]
        return blocks, images

    def lines(self) -> list[bytes]:
        """An optional summary line, then alternating user and assistant events."""
        rng, plan = self.rng, self.plan
        lines: list[bytes] = []
        if rng.random() < 0.4:
            lines.append(
                orjson.dumps(
                    {
                        "type": "summary",
                        "summary": self.corpus.take(rng, 20, 70),
                        "leafUuid": random_uuid(rng),
                    }
                )
            )
        parent: str | None = None
        for j in range(plan.messages):
            ts = _iso(plan.start_ms + j * plan.step_ms + rng.randrange(plan.step_ms // 2))
            u = random_uuid(rng)
            middle = self._user(j) if j % 2 == 0 else self._assistant(j)
            lines.append(
                orjson.dumps({"parentUuid": parent, **self.base, **middle, "uuid": u, "timestamp": ts})
            )
            parent = u
        return lines

    def _user(self, j: int) -> dict[str, Any]:
        """A user event's own fields: tool results, a prompt with images, or a plain prompt."""
        rng, corpus = self.rng, self.corpus
        k = self.blocks[j // 2]
        content: Any
        if k and not self.images[j // 2] and self.pending:
            content = self._tool_results()
        elif k:
            content = [{"type": "text", "text": corpus.take(rng, 20, 400)}]
            content += [_image_block(rng) for _ in range(k)]
        else:
            content = corpus.take(rng, 20, 600)
        return {"type": "user", "message": {"role": "user", "content": content}}

    def _tool_results(self) -> list[dict[str, Any]]:
        """One tool_result block per pending tool_use."""
        rng, corpus = self.rng, self.corpus
        content: list[dict[str, Any]] = []
        for tool_id, _name in self.pending:
            body: Any = corpus.take(rng, 60, rng.choice((300, 800, 2500)))
            if rng.random() < 0.1:
                body = [{"type": "text", "text": body}]
            block: dict[str, Any] = {"tool_use_id": tool_id, "type": "tool_result", "content": body}
            if rng.random() < 0.04:
                block["is_error"] = True
            content.append(block)
        self.pending = []
        return content

    def _assistant(self, j: int) -> dict[str, Any]:
        """An assistant event's own fields: text, and the tool_uses the next user event answers."""
        rng = self.rng
        nxt = (j + 1) // 2
        k = (
            self.blocks[nxt]
            if nxt < self.users and j + 1 < self.plan.messages and not self.images[nxt]
            else 0
        )
        content: list[dict[str, Any]] = [{"type": "text", "text": self.corpus.take(rng, 20, 700)}]
        content += [self._tool_use() for _ in range(k)]
        message = {
            "id": f"msg_01{rng.getrandbits(96):024x}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
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
        return {"message": message, "requestId": f"req_011{rng.getrandbits(80):020x}", "type": "assistant"}

    def _tool_use(self) -> dict[str, Any]:
        rng = self.rng
        name = rng.choice(TOOLS)
        tool_id = f"toolu_01{rng.getrandbits(96):024x}"
        self.pending.append((tool_id, name))
        return {
            "type": "tool_use",
            "id": tool_id,
            "name": name,
            "input": _tool_input(rng, name, self.cwd, self.corpus),
        }


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _tool_input(rng: random.Random, name: str, cwd: str, corpus: Corpus) -> dict[str, Any]:
    """Plausible arguments of a call to tool `name`."""
    if name == "Bash":
        return {
            "command": rng.choice(["pytest -q", "git status", "ruff check .", "ls -la src"]),
            "description": corpus.take(rng, 10, 40),
        }
    if name in ("Read", "Write", "Edit"):
        path = f"{cwd}/src/{rng.choice(WORDS)}_{rng.randint(1, 99)}.py"
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
        return {"pattern": rng.choice(WORDS), "path": cwd}
    if name == "TodoWrite":
        return {"todos": [{"content": corpus.take(rng, 10, 50), "status": "pending"}]}
    if name == "WebFetch":
        return {"url": f"https://example.org/{rng.choice(WORDS)}", "prompt": corpus.take(rng, 10, 60)}
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


def count_attachments(lines: list[bytes]) -> int:
    """The top-level tool_result and image blocks of the user events in `lines` (a check)."""
    n = 0
    for line in lines:
        ev = orjson.loads(line)
        if ev.get("type") == "user" and isinstance(ev["message"]["content"], list):
            n += sum(1 for b in ev["message"]["content"] if b.get("type") in ("tool_result", "image"))
    return n
