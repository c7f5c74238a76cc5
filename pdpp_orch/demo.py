"""The five seed cases of the partial-run question, end to end (`pdpp-orch demo`).

Each case runs a bundled connector against the simulated upstream with the fault that caused
the real incident, through the real workflow, worker, Temporal and PostgreSQL. The numbers
are the incidents' own (`seed` world); tests may pass a smaller world.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client

from pdpp_orch.models import RunInput, RunOutcome, RunStatus, StreamScope, TimeRange, Trigger
from pdpp_orch.registry import bundled_entries
from pdpp_orch.store import Store

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


# Case E's recovery, shown in the demo's time: 2,000 units per 10 seconds, where a real
# connector would have 2,000 per day.
DEMO_BUDGET_WINDOW = "10s"

# Case D asks for five years ending where the simulated bank's history ends (the incident's day).
FIVE_YEARS = TimeRange(since="2021-04-20", until="2026-04-19")


def cases(work_dir: Path, capped_state_bytes: int = 64 * 1024) -> list[Case]:
    """The cases in the order the demo runs them. B runs twice: with the default cursor cap
    (all four checkpoints commit) and with a cap below the messages cursor (75 KB of file
    paths and mtimes) but above the other three (≤ 44 KB)."""
    claude_root = str(work_dir / "claude-code")
    return [
        Case("A", "Gmail: malformed final STATE (BigInt)", "demo_gmail", "gmail"),
        Case("B", "claude-code: 50 KB cursor, default cap", "demo_claude_code", "claude_code",
             env={"CLAUDE_CODE_ROOT": claude_root}),
        Case("B'", "claude-code: 50 KB cursor over max_state_bytes", "demo_claude_code_capped", "claude_code",
             settings={"max_state_bytes": capped_state_bytes}, env={"CLAUDE_CODE_ROOT": claude_root}),
        Case("C", "Slack: one channel 500s after the dump", "demo_slack", "slack",
             env={"SLACK_ARCHIVE": str(work_dir / "slack-archive.sqlite")}),
        Case("D", "USAA: 5-year request served as 90 days", "demo_usaa", "usaa",
             streams=(StreamScope(name="transactions", time_range=FIVE_YEARS),)),
        Case("E", "ChatGPT: 4,188 conversations answered 429", "demo_chatgpt", "chatgpt",
             settings={"budget": {"units": 2000, "window": DEMO_BUDGET_WINDOW}}),
    ]  # fmt: skip


def toml_value(value: Any) -> str:
    """A TOML value: tables inline, scalars and lists as JSON writes them (TOML-compatible)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_registry(path: Path, selected: list[Case], upstream_url: str) -> Path:
    """A registry with one entry per case: the bundled connector's command and manifest, the
    case's settings, and the simulated upstream's address."""
    bundled = bundled_entries()
    blocks = []
    for case in selected:
        entry = bundled[case.bundled]
        env = {**entry.env, "PDPP_UPSTREAM_URL": upstream_url, **case.env}
        lines = [
            f"[connectors.{case.connector}]",
            f"command = {json.dumps(entry.command)}",
            f"manifest = {json.dumps(str(entry.manifest))}",
            "env = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items()) + " }",
        ]
        lines += [f"{k} = {toml_value(v)}" for k, v in case.settings.items()]
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


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


def prepare_inputs(work_dir: Path, selected: list[Case], log: Callable[[str], None]) -> None:
    """Generate Case B's session files once (they are kept between demos) and remove Case C's
    Slack archive, so the dump happens as it did in the incident."""
    from pdpp_orch.connectors.claude_code_gen import generate

    if any(c.bundled == "claude_code" for c in selected):
        root = work_dir / "claude-code"
        marker = work_dir / "claude-code.json"
        if not marker.exists():
            log(f"generating claude-code session files in {root} …")
            summary = generate(root)  # the incident's sizes: 350,563 records in 640 sessions
            marker.write_text(json.dumps(summary.counts()))
    for c in selected:
        archive = c.env.get("SLACK_ARCHIVE")
        if archive:
            Path(archive).unlink(missing_ok=True)


async def reset_connectors(store: Store, names: list[str]) -> None:
    """Forget what earlier demos left for these connectors, so every demo starts from scratch."""
    for name in names:
        await store.forget_connector(name)


async def run_cases(
    client: Client,
    task_queue: str,
    selected: list[Case],
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Run each case's connector once through ConnectorRunWorkflow, one after the other."""
    from workflows.connector_run import ConnectorRunWorkflow

    results = []
    for case in selected:
        run_id = f"{case.connector}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        inp = RunInput(
            connector=case.connector, run_id=run_id, trigger=Trigger.MANUAL, streams=list(case.streams)
        )
        started = time.monotonic()
        outcome = await client.execute_workflow(
            ConnectorRunWorkflow.run,
            inp,
            id=run_id,
            task_queue=task_queue,
            static_summary=f"demo case {case.key} · {case.title}",
        )
        result = CaseResult(case, outcome, time.monotonic() - started)
        if on_result:
            on_result(result)
        results.append(result)
    return results


def next_retry(o: RunOutcome) -> str:
    """When the earliest retry hint may run, relative to the end of the run."""
    if not o.retry_hints:
        return ""
    first = min(h.not_before for h in o.retry_hints)
    minutes = max(0, round((first - o.finished_at).total_seconds() / 60))
    return f"in {minutes // 60}h{minutes % 60:02d}m"


@dataclass
class RecoveryShown:
    """What Case E's recovery did, measured: per budget window, and upstream requests per gap."""

    recovered: int
    open: int
    runs: int
    per_window: list[int]
    requests: int

    @property
    def requests_per_gap(self) -> float:
        return self.requests / self.recovered if self.recovered else 0.0

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "requests_per_gap": round(self.requests_per_gap, 4)}


async def show_recovery(
    client: Client, store: Store, requests: Callable[[], dict[str, int]], result: CaseResult
) -> RecoveryShown:
    """Bring Case E's recovery forward (as `pdpp-orch recover demo_chatgpt --now` would; the
    budget still rules) and wait for it, counting the upstream requests it makes."""
    from activities.budget import budget_status
    from workflows.recovery import GapRecoveryWorkflow

    [wid] = result.outcome.recovery_workflow_ids
    before = requests()
    handle = client.get_workflow_handle_for(GapRecoveryWorkflow.run, wid)
    await handle.signal(GapRecoveryWorkflow.run_now)
    done = await handle.result()
    after = requests()
    runs = [
        RunOutcome.model_validate_json(r["outcome"]) for r in await store.recovery_runs(result.case.connector)
    ]
    budget = await budget_status(client, result.case.connector)
    windows: dict[int, int] = {}
    if budget is not None:
        for r in runs:  # a run draws on the window its grant came from, the one it started in
            k = math.floor((r.started_at - budget.window_started).total_seconds() / budget.window_seconds)
            windows[k] = windows.get(k, 0) + r.records_durable
    per_window = [windows[k] for k in sorted(windows)]
    return RecoveryShown(
        recovered=done.progress.recovered,
        open=done.progress.open,
        runs=done.runs,
        per_window=per_window,
        requests=sum(n - before.get(k, 0) for k, n in after.items()),
    )


async def cancel_waiting_recoveries(client: Client, results: list[CaseResult]) -> int:
    """The demo's worker stops with the demo: cancel the recoveries still waiting for their
    not_before (A, C, D), rather than leave them running with nobody to execute them."""
    from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

    n = 0
    for r in results:
        for wid in r.outcome.recovery_workflow_ids:
            handle = client.get_workflow_handle(wid)
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.cancel()
                # Let the (still running) demo worker process the cancellation before it stops.
                with contextlib.suppress(WorkflowFailureError):
                    await asyncio.wait_for(handle.result(), timeout=30)
                n += 1
    return n
