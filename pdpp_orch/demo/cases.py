"""The five seed cases of the partial-run question: the faults of the real incidents, the
connectors that meet them, and what each outcome must be (DESIGN §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdpp_orch.models import RunOutcome, RunStatus, StreamScope, TimeRange

# The faults of the five incidents, all in one plan (they touch different routes).
DEMO_PLAN: dict[str, Any] = {
    "faults": [
        # Case C: Slack's 500 on one channel, every time (slackdump gave up after its retries).
        {"route": "slack.history", "ids": ["C017NG64T24"], "status": 500, "times": None},
        # Case E: 4,188 conversation fetches answered 429 with a 24 h Retry-After; the next
        # request for each (the recovery's) succeeds.
        {
            "route": "chatgpt.conversation",
            "sample": {"count": 4188, "seed": 7},
            "status": 429,
            "retry_after": 86400,
            "times": 1,
        },
    ],
    # Case D: the CSV export rejects ranges longer than ~3 months, so 5y/2y/1y fail, 90d works.
    "limits": {"bank_max_range_days": 100},
    # Case A: the connector writes its final cursor the way JSON.stringify + BigInt did.
    "quirks": {"gmail_bigint_state": True},
}


@dataclass(frozen=True)
class Case:
    """One seed case: which connector runs, how it is configured, what scope it asks for."""

    key: str
    title: str
    connector: str
    bundled: str
    settings: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    streams: tuple[StreamScope, ...] = ()
    manifest: Path | None = None  # None: the bundled connector's own


# Case E's recovery, shown in the demo's time: 2,000 units per 10 seconds, where a real
# connector would have 2,000 per day.
DEMO_BUDGET_WINDOW = "10s"

# Case D asks for five years through the last day of the simulated bank's history (2026-04-19,
# the incident's day): half-open, as every time_range, so until is the day after it.
FIVE_YEARS = TimeRange(since="2021-04-20", until="2026-04-20")


def cases(work_dir: Path, capped_state_bytes: int = 64 * 1024) -> list[Case]:
    """The cases in the order the demo runs them. B runs twice: with the default cursor cap
    (all four checkpoints commit) and with a cap below the messages cursor (75 KB of file
    paths and mtimes) but above the other three (≤ 44 KB)."""
    claude_root = str(work_dir / "claude-code")
    # What each connector's sandbox lets it see of the demo's files (nothing else of them).
    sessions = {"paths": [claude_root]}
    archive = {"paths": [{"path": str(work_dir / "slack"), "writable": True}]}
    return [
        Case("A", "Gmail: malformed final STATE (BigInt)", "demo_gmail", "gmail"),
        Case("B", "claude-code: 50 KB cursor, default cap", "demo_claude_code", "claude_code",
             settings=sessions, env={"CLAUDE_CODE_ROOT": claude_root}),
        Case("B'", "claude-code: 50 KB cursor over max_state_bytes", "demo_claude_code_capped", "claude_code",
             settings={"max_state_bytes": capped_state_bytes, **sessions},
             env={"CLAUDE_CODE_ROOT": claude_root}),
        Case("C", "Slack: one channel 500s after the dump", "demo_slack", "slack",
             settings=archive, env={"SLACK_ARCHIVE": str(work_dir / "slack" / "archive.sqlite")}),
        Case("D", "USAA: 5-year request served as 90 days", "demo_usaa", "usaa",
             streams=(StreamScope(name="transactions", time_range=FIVE_YEARS),)),
        Case("E", "ChatGPT: 4,188 conversations answered 429", "demo_chatgpt", "chatgpt",
             settings={"budget": {"units": 2000, "window": DEMO_BUDGET_WINDOW}}),
    ]  # fmt: skip


def check(case: Case, o: RunOutcome) -> list[str]:
    """How the outcome departs from the "here" column of DESIGN §4 (empty: as designed)."""
    problems = []
    partial = RunStatus.PARTIALLY_COMPLETED

    def want(cond: bool, what: str) -> None:
        if not cond:
            problems.append(what)

    want(
        o.buffered_records_dropped == 0 and o.records_durable == o.records_emitted - o.records_rejected,
        "every accepted record durable",
    )
    hints = {h.reason: h for h in o.retry_hints}
    if case.key == "A":
        want(
            o.status is partial and o.reason == "connector_protocol_violation", "partial, protocol violation"
        )
        want(
            {s.stream: s.checkpoint for s in o.streams}.get("messages") != "committed",
            "the malformed messages checkpoint not committed",
        )
        want(o.state_streams_committed > 0, "the proven checkpoints committed")
    elif case.key == "B":
        want(
            o.status is RunStatus.SUCCEEDED and o.state_streams_committed == o.state_streams_staged == 4,
            "succeeded with 4 of 4 checkpoints",
        )
    elif case.key == "B'":
        want(o.status is partial and o.reason == "state_too_large", "partial, state_too_large")
        want((o.state_streams_committed, o.state_streams_staged) == (3, 4), "3 of 4 checkpoints")
    elif case.key == "C":
        h = hints.get("upstream_server_error")
        want(o.status is partial and o.needs_retry, "partial, needs retry")
        want(
            h is not None
            and h.scope.stream == "messages"
            and h.gap_count == 1
            and h.scope.include_resources is not None
            and h.scope.include_resources.count == 1,
            "a hint for exactly the failed channel",
        )
    elif case.key == "D":
        h = hints.get("range_truncated")
        want(o.status is partial and o.needs_retry, "partial, needs retry")
        want(h is not None and bool(h.scope.time_ranges), "a hint re-requesting the range in chunks")
    elif case.key == "E":
        h = hints.get("rate_limited")
        n = o.skipped_by_reason.get("rate_limited", 0)
        want(o.status is partial and o.needs_retry and n > 0, "partial, needs retry, rate_limited skips")
        want(h is not None and h.gap_count == n and h.estimated_cost == n, "one hint covering every 429")
    return problems


@dataclass
class CaseResult:
    case: Case
    outcome: RunOutcome
    seconds: float

    @property
    def problems(self) -> list[str]:
        return check(self.case, self.outcome)

    @property
    def as_designed(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "case": self.case.key,
            "title": self.case.title,
            "connector": self.case.connector,
            "seconds": round(self.seconds, 1),
            "as_designed": self.as_designed,
            "problems": self.problems,
            "outcome": self.outcome.model_dump(mode="json"),
        }


def next_retry(o: RunOutcome) -> str:
    """When the earliest retry hint may run, relative to the end of the run."""
    if not o.retry_hints:
        return ""
    first = min(h.not_before for h in o.retry_hints)
    minutes = max(0, round((first - o.finished_at).total_seconds() / 60))
    return f"in {minutes // 60}h{minutes % 60:02d}m"
