"""Retry hints executed: GapRecoveryWorkflow on Temporal's time-skipping server (a 24 h
Retry-After and 24 h budget windows pass in milliseconds), a real PostgreSQL, the bundled
connectors and the simulated upstream counting every request."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from pdpp_orch import demo
from pdpp_orch.budget import Grant
from pdpp_orch.models import (
    RecoveryInput,
    RecoveryResult,
    RunInput,
    RunOutcome,
    RunStatus,
    StreamScope,
    Trigger,
)
from pdpp_orch.registry import Registry
from pdpp_orch.store import Store
from pdpp_orch.upstream.process import UpstreamProcess
from pdpp_orch.worker import build_worker
from tests.connectors import grants
from workflows.connector_run import ConnectorRunWorkflow
from workflows.ids import recovery_workflow_id
from workflows.recovery import GapRecoveryWorkflow

pytestmark = pytest.mark.slow

CHATGPT_429 = {
    "route": "chatgpt.conversation",
    "sample": {"count": 4188, "seed": 7},
    "status": 429,
    "retry_after": 86400,
    "times": 1,  # the next request for that conversation, a day later, succeeds
}


class Recovery:
    """One test's registry, worker and runs on the time-skipping server."""

    def __init__(self, tmp: Path, env: WorkflowEnvironment, store: Store, upstream: UpstreamProcess):
        self.tmp = tmp
        self.client: Client = env.client
        self.env = env
        self.store = store
        self.upstream = upstream
        self.task_queue = f"tq-{uuid.uuid4().hex[:10]}"
        self.registry = tmp / "connectors.toml"
        self.cases: list[demo.Case] = []

    def add(self, bundled: str, **kw: Any) -> demo.Case:
        """A case whose sandboxed connector may write in the test's directory."""
        settings = {"paths": grants(self.registry.parent), **kw.pop("settings", {})}
        case = demo.Case(bundled, bundled, f"{bundled}_{uuid.uuid4().hex[:6]}", bundled, settings, **kw)
        self.cases.append(case)
        demo.write_registry(self.registry, self.cases, self.upstream.url)
        return case

    def worker(self) -> Any:
        path = self.registry
        return build_worker(self.client, self.store, self.task_queue, lambda: Registry.load(path))

    async def forward(self, case: demo.Case, streams: list[StreamScope] | None = None) -> RunOutcome:
        # The test starts the recovery itself: on the time-skipping server only a handle from
        # start_workflow waits reliably for a result while time is skipped.
        inp = RunInput(
            connector=case.connector,
            run_id=f"{case.connector}-{uuid.uuid4().hex[:6]}",
            trigger=Trigger.MANUAL,
            streams=streams or list(case.streams),
            recover=False,
        )
        return await self.client.execute_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=self.task_queue
        )

    async def recover(self, o: RunOutcome) -> RecoveryResult:
        """Execute the run's one retry hint to the end, as the run would have started it."""
        [hint] = o.retry_hints
        inp = RecoveryInput(connector=o.connector, hint=hint, found_run_id=o.run_id)
        return await self.client.execute_workflow(
            GapRecoveryWorkflow.run, inp, id=recovery_workflow_id(hint.hint_id), task_queue=self.task_queue
        )

    def requests(self, route: str) -> dict[str, int]:
        """Requests per id so far on `route` (counters are not reset: that would re-arm faults)."""
        r = self.upstream.counters(route, ids=True)["routes"].get(route, {})
        ids: dict[str, int] = r.get("ids", {})
        return ids

    def since(self, route: str, before: dict[str, int]) -> dict[str, int]:
        """Requests per id on `route` made after `before` was taken."""
        now = self.requests(route)
        return {k: n - before.get(k, 0) for k, n in now.items() if n > before.get(k, 0)}

    async def budget_answers(self, workflow_id: str, activity: str, run_id: str | None = None) -> list[Grant]:
        """What the budget answered `workflow_id`'s `activity` calls, in order, from the history
        of its run `run_id` (default: the latest)."""
        history = await self.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        answers: list[Grant] = []
        wanted = 0
        for e in history.events:
            if e.HasField("activity_task_scheduled_event_attributes"):
                scheduled = e.activity_task_scheduled_event_attributes.activity_type.name
                if scheduled == activity:
                    wanted = e.event_id
            elif e.HasField("activity_task_completed_event_attributes"):
                done = e.activity_task_completed_event_attributes
                if done.scheduled_event_id == wanted:
                    [g] = await self.client.data_converter.decode(done.result.payloads, [Grant])
                    answers.append(g)
        return answers

    async def run_chain(self, workflow_id: str, first_run_id: str | None) -> list[str]:
        """The run ids of `workflow_id` from `first_run_id` on, following continue-as-new."""
        chain, run_id = [], first_run_id
        while run_id:
            chain.append(run_id)
            history = await self.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
            last = history.events[-1]
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        return chain

    async def gaps_by_status(self, connector: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for g in await self.store.gaps.find(connector):
            out[g.status] = out.get(g.status, 0) + 1
        return out


@pytest.fixture
def upstream() -> Iterator[UpstreamProcess]:
    with UpstreamProcess(world="seed", plan={"faults": [CHATGPT_429]}) as up:
        yield up


@pytest.fixture
def rec(tmp_path: Path, time_env: WorkflowEnvironment, store: Store, upstream: UpstreamProcess) -> Recovery:
    return Recovery(tmp_path, time_env, store, upstream)


async def test_case_e_recovers_exactly_the_4188_within_2000_a_day(rec: Recovery) -> None:
    case = rec.add("chatgpt", settings={"budget": {"units": 2000, "window": "24h"}})
    async with rec.worker():
        o = await rec.forward(case)
        assert o.records_durable == 10_596 and o.needs_retry
        limited = set(rec.upstream.fault_ids(0))
        before = rec.requests("chatgpt.conversation")
        lists = rec.upstream.count("chatgpt.list")
        result = await rec.recover(o)
        [charge] = await rec.budget_answers(o.run_id, "charge_budget")
        asked = await rec.budget_answers(recovery_workflow_id(o.retry_hints[0].hint_id), "request_budget")
    assert result.progress.recovered == 4_188 and result.progress.open == 0
    assert result.progress.terminal == 0
    # Three budget windows: 2,000 + 2,000 + 188, none over its 2,000 units.
    runs = await rec.store.runs.recovery_outcomes(case.connector)
    assert all(r.status is RunStatus.SUCCEEDED for r in runs)
    # started_at is workflow time, so the skipped days show: runs of one window are seconds
    # apart, windows a day apart.
    per_window = [runs[0].records_durable]
    for prev, r in itertools.pairwise(runs):
        if r.started_at - prev.started_at > timedelta(hours=12):
            per_window.append(0)
        per_window[-1] += r.records_durable
    assert per_window == [2_000, 2_000, 188]
    # A wait for each window after the first two grants; and one more when the first request
    # fell inside the window the forward run filled with its charge of 14,784 units (one per
    # conversation fetched). Whether it does is a sub-second race: the Retry-After counts from
    # the last 429 (this machine's clock), the window from the charge (the server's clock). So is
    # when the time-skipping server moves its clock (it may jump while an activity waits for a
    # worker), hence the budget's own answers, not the clocks, say which case this run was.
    assert charge.granted == 14_784
    refused_first = asked[0].window_started == charge.window_started
    assert (asked[0].granted == 0) == refused_first
    assert result.budget_waits == 2 + refused_first
    assert sum(g.granted == 0 for g in asked) == result.budget_waits
    # Exactly one request per gap: nothing fetched twice, nothing already durable fetched again.
    fetched = rec.since("chatgpt.conversation", before)
    assert (sum(fetched.values()), len(fetched), max(fetched.values())) == (4_188, 4_188, 1)
    assert set(fetched) == limited
    assert rec.upstream.count("chatgpt.list") == lists
    assert await rec.gaps_by_status(case.connector) == {"recovered": 4_188}
    n = await rec.store.pool.fetchval("SELECT count(*) FROM records WHERE connector = $1", case.connector)
    assert n == 14_784
    assert await rec.store.gaps.open_by_stream(case.connector) == {}


async def test_case_c_recovers_the_failed_channel_alone_after_ten_minutes(
    rec: Recovery, tmp_path: Path
) -> None:
    # The channel fails twice (the connector's three attempts within the first run), then heals.
    rec.upstream.set_plan(
        {"faults": [{"route": "slack.history", "ids": ["C017NG64T24"], "status": 500, "times": 3}]}
    )
    case = rec.add("slack", env={"SLACK_ARCHIVE": str(tmp_path / "archive.sqlite")})
    async with rec.worker():
        o = await rec.forward(case)
        assert o.status is RunStatus.PARTIALLY_COMPLETED and o.needs_retry
        [hint] = o.retry_hints
        before = rec.requests("slack.history")
        result = await rec.recover(o)
    assert (result.progress.recovered, result.progress.open, result.runs) == (1, 0, 1)
    ids = rec.since("slack.history", before)
    assert set(ids) == {"C017NG64T24"}, "the other 3,239 channels are not fetched again"
    [outcome] = await rec.store.runs.recovery_outcomes(case.connector)
    assert outcome.status is RunStatus.SUCCEEDED and outcome.records_durable == 137
    # The run honoured the hint's ten minutes (on the time-skipping clock).
    assert outcome.started_at >= hint.not_before


async def test_case_d_recovers_the_uncovered_range_in_accepted_chunks(rec: Recovery) -> None:
    rec.upstream.set_plan({"faults": [], "limits": {"bank_max_range_days": 100}})
    case = rec.add("usaa", streams=(StreamScope(name="transactions", time_range=demo.FIVE_YEARS),))
    async with rec.worker():
        o = await rec.forward(case)
        [hint] = o.retry_hints
        chunks = hint.scope.time_ranges or []
        by_status = dict(rec.upstream.counters("bank.export")["routes"]["bank.export"]["by_status"])
        result = await rec.recover(o)
    assert result.runs == len(chunks) == 20 and result.progress.recovered == 1
    # One export request per chunk: every chunk fits the source's limit the first time.
    after = rec.upstream.counters("bank.export")["routes"]["bank.export"]["by_status"]
    assert {k: n - by_status.get(k, 0) for k, n in after.items() if n != by_status.get(k, 0)} == {"200": 20}
    runs = await rec.store.runs.recovery_outcomes(case.connector)
    assert all(r.status == "succeeded" for r in runs)
    durable = await rec.store.pool.fetchval(
        "SELECT count(*) FROM records WHERE connector = $1", case.connector
    )
    assert durable == o.records_durable + sum(r.records_durable for r in runs)
    # Every day of the five years, the chunks' bounds too: they meet (half-open), none is lost.
    days = await rec.store.pool.fetchrow(
        "SELECT min(data->>'date') AS first, max(data->>'date') AS last,"
        " count(DISTINCT data->>'date') AS n FROM records WHERE connector = $1",
        case.connector,
    )
    assert (days["first"], days["last"], days["n"]) == ("2021-04-20", "2026-04-19", 1826)
    # The chunks' runs wrote the end of their chunk as STATE; the stream's cursor is still the
    # forward run's: the next forward run goes on from 2026-04-19, not from 2021.
    row = await rec.store.pool.fetchrow(
        "SELECT cursor::text AS cursor, run_id FROM stream_state WHERE connector = $1", case.connector
    )
    assert row is not None and (json.loads(row["cursor"]), row["run_id"]) == (
        {"until": "2026-04-20"},
        o.run_id,
    )


async def test_vanished_items_go_terminal_after_max_recovery_attempts(rec: Recovery) -> None:
    # 40 conversations are rate-limited in the forward run, then gone (404) for good.
    plan = {
        "faults": [
            {**CHATGPT_429, "sample": {"count": 40, "seed": 3}},
            {"route": "chatgpt.conversation", "sample": {"count": 40, "seed": 3}, "status": 404},
        ]
    }
    rec.upstream.set_plan(plan)
    case = rec.add("chatgpt")
    async with rec.worker():
        o = await rec.forward(case)
        result = await rec.recover(o)
    assert (result.progress.terminal, result.progress.recovered, result.progress.open) == (40, 0, 0)
    gaps = await rec.store.gaps.find(case.connector)
    assert {(g.attempts, g.terminal_reason) for g in gaps} == {(5, "permanent:not_found")}
    assert result.runs == 5


async def test_a_never_progressing_item_is_quarantined_after_8_and_can_be_requeued(rec: Recovery) -> None:
    # Always 429 with a short-enough-to-log but never-ending limit: no attempt makes progress.
    rec.upstream.set_plan({"faults": [{**CHATGPT_429, "sample": {"count": 3, "seed": 5}, "times": None}]})
    case = rec.add("chatgpt")
    async with rec.worker():
        o = await rec.forward(case)
        result = await rec.recover(o)
    assert (result.progress.terminal, result.runs) == (3, 8)
    gaps = await rec.store.gaps.find(case.connector)
    assert {(g.status, g.attempts, g.terminal_reason) for g in gaps} == {("terminal", 8, "quarantined")}
    again = await rec.store.hints.requeue(gaps[0].gap_id, "hint_rq_by_hand")
    assert again is not None
    [g] = [x for x in await rec.store.gaps.find(case.connector) if x.gap_id == gaps[0].gap_id]
    assert (g.status, g.attempts, g.terminal_reason) == ("pending", 0, None)


async def test_owner_action_gaps_get_no_hint_and_are_never_retried(rec: Recovery) -> None:
    # A 401 from the upstream is the owner's to fix (credentials): no retry hint, no recovery.
    rec.upstream.set_plan(
        {"faults": [{"route": "chatgpt.conversation", "sample": {"count": 5, "seed": 1}, "status": 401}]}
    )
    case = rec.add("chatgpt")
    async with rec.worker():
        o = await rec.forward(case)
    assert o.status is RunStatus.PARTIALLY_COMPLETED
    assert not o.needs_retry and o.retry_hints == []
    gaps = await rec.store.gaps.find(case.connector)
    assert len(gaps) == 5 and {g.status for g in gaps} == {"pending"}
    assert {(g.reason, g.recovery_class) for g in gaps} == {("credentials_rejected", "owner_action")}


async def test_two_recoveries_of_one_connector_share_its_budget(rec: Recovery) -> None:
    # Two kinds of miss in one run, hence two hints and two recoveries running at once.
    rec.upstream.set_plan(
        {
            "faults": [
                {**CHATGPT_429, "sample": {"count": 150, "seed": 11}},
                # 4 answers of 503 exhaust the connector's own retries; the 5th request succeeds.
                {
                    "route": "chatgpt.conversation",
                    "sample": {"count": 150, "seed": 12},
                    "status": 503,
                    "times": 4,
                },
            ]
        }
    )
    case = rec.add("chatgpt", settings={"budget": {"units": 100, "window": "24h"}})
    async with rec.worker():
        o = await rec.forward(case)
        assert sorted(h.reason for h in o.retry_hints) == ["rate_limited", "upstream_server_error"]
        handles = [
            await rec.client.start_workflow(
                GapRecoveryWorkflow.run,
                RecoveryInput(connector=o.connector, hint=h, found_run_id=o.run_id, batch_size=60),
                id=recovery_workflow_id(h.hint_id),
                task_queue=rec.task_queue,
            )
            for h in o.retry_hints
        ]
        results = [await h.result() for h in handles]
    assert sum(r.progress.recovered for r in results) == len(await rec.store.gaps.find(case.connector))
    assert all(r.progress.open == 0 for r in results)
    # Per budget window (workflow time), both recoveries together never got more than 100.
    runs = await rec.store.runs.recovery_outcomes(case.connector)
    runs.sort(key=lambda r: r.started_at)
    windows = [[runs[0]]]
    for prev, r in itertools.pairwise(runs):
        if r.started_at - prev.started_at > timedelta(hours=12):
            windows.append([])
        windows[-1].append(r)
    assert len(windows) >= 3
    assert all(sum(r.records_durable for r in w) <= 100 for w in windows)
    assert sum(r.records_durable for r in runs) == sum(r.progress.recovered for r in results)


async def test_a_recovery_continued_as_new_carries_its_counts_and_fetches_each_gap_once(
    rec: Recovery,
) -> None:
    rec.upstream.set_plan({"faults": [{**CHATGPT_429, "sample": {"count": 150, "seed": 5}}]})
    case = rec.add("chatgpt", settings={"budget": {"units": 100, "window": "24h"}})
    async with rec.worker():
        o = await rec.forward(case)
        [hint] = o.retry_hints
        limited = set(rec.upstream.fault_ids(0))
        before = rec.requests("chatgpt.conversation")
        wid = recovery_workflow_id(hint.hint_id)
        handle = await rec.client.start_workflow(
            GapRecoveryWorkflow.run,
            # Two passes per run: 150 gaps at 40 a run and 100 units a day need seven or eight.
            RecoveryInput(
                connector=o.connector,
                hint=hint,
                found_run_id=o.run_id,
                batch_size=40,
                continue_as_new_after=2,
            ),
            id=wid,
            task_queue=rec.task_queue,
        )
        result = await handle.result()
        chain = await rec.run_chain(wid, handle.first_execution_run_id)
        asked = [g for run_id in chain for g in await rec.budget_answers(wid, "request_budget", run_id)]
    assert len(chain) >= 3
    assert (result.progress.recovered, result.progress.open, result.progress.terminal) == (150, 0, 0)
    # The counters went on across the chain: every run and every refusal of every link counted.
    assert result.runs == result.rounds == len(await rec.store.runs.recovery_outcomes(case.connector))
    assert result.runs == sum(g.granted > 0 for g in asked)
    assert result.budget_waits == sum(g.granted == 0 for g in asked) >= 1
    assert len(asked) == result.runs + result.budget_waits
    assert len({g.request_id for g in asked}) == len(asked)  # no link asked with a used id
    fetched = rec.since("chatgpt.conversation", before)
    assert set(fetched) == limited and max(fetched.values()) == 1
    assert await rec.gaps_by_status(case.connector) == {"recovered": 150}


async def test_case_e_served_in_small_gap_pages_still_fetches_each_gap_once(
    rec: Recovery, tmp_path: Path
) -> None:
    # The chatgpt connector drains its gaps as the reference's does: START's page, then
    # DETAIL_GAPS_PAGE_REQUESTs (here of 16 KiB, about 70 gaps) until an empty page.
    starts = tmp_path / "starts.jsonl"
    case = rec.add(
        "chatgpt",
        settings={"budget": {"units": 2000, "window": "24h"}},
        env={"CHATGPT_PAGE_MAX_BYTES": "16384", "PDPP_START_LOG": str(starts)},
    )
    async with rec.worker():
        o = await rec.forward(case)
        limited = set(rec.upstream.fault_ids(0))
        before = rec.requests("chatgpt.conversation")
        result = await rec.recover(o)
    assert (result.progress.recovered, result.progress.open, result.progress.terminal) == (4_188, 0, 0)
    recoveries = [json.loads(x) for x in starts.read_text().splitlines()][1:]
    served_in_start = [len(s["detail_gaps"]) for s in recoveries]
    runs = await rec.store.runs.recovery_outcomes(case.connector)
    assert len(recoveries) == len(runs) and all(n <= 500 for n in served_in_start)
    # Leases of 1,000: START served 500 of each, pages the other 500; every gap was fetched
    # exactly once (1.00 requests per gap).
    assert served_in_start == [500, 500, 500, 500, 188]
    fetched = rec.since("chatgpt.conversation", before)
    assert (sum(fetched.values()), len(fetched), max(fetched.values())) == (4_188, 4_188, 1)
    assert set(fetched) == limited
    assert await rec.gaps_by_status(case.connector) == {"recovered": 4_188}
