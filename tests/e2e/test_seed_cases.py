"""The five seed cases end to end: bundled connector → simulated upstream with the incident's
fault → worker → Temporal → PostgreSQL, asserting the "here" column of DESIGN §4.

Every case runs at the incidents' own numbers (the `seed` world of the simulated upstream and
the claude-code generator's defaults).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from pdpp_orch import demo
from pdpp_orch.connectors.claude_code_gen import GenSummary, generate
from pdpp_orch.models import RecoveryClass, RunOutcome, RunStatus, StreamScope
from pdpp_orch.registry import Registry
from pdpp_orch.store import Store
from pdpp_orch.upstream.process import UpstreamProcess
from pdpp_orch.worker import build_worker
from tests.conftest import history_text
from tests.connectors import grants

pytestmark = pytest.mark.slow

SLACK_FAILING = "C017NG64T24"


class Cases:
    """Runs demo cases (bundled connectors under a unique name) on one test's task queue."""

    def __init__(self, tmp: Path, client: Client, store: Store, upstream_url: str):
        self.tmp = tmp
        self.client = client
        self.store = store
        self.url = upstream_url
        self.task_queue = f"tq-{uuid.uuid4().hex[:10]}"
        self.registry = tmp / "connectors.toml"
        self.cases: list[demo.Case] = []

    def add(self, key: str, bundled: str, reads: tuple[Path, ...] = (), **kw: Any) -> demo.Case:
        """A case whose sandboxed connector writes in the test's directory and reads `reads`."""
        settings = {"paths": grants(self.tmp, *reads), **kw.pop("settings", {})}
        case = demo.Case(key, key, f"{bundled}_{uuid.uuid4().hex[:6]}", bundled, settings, **kw)
        self.cases.append(case)
        demo.write_registry(self.registry, self.cases, self.url)
        return case

    async def run(self, case: demo.Case) -> RunOutcome:
        path = self.registry
        worker = build_worker(self.client, self.store, self.task_queue, lambda: Registry.load(path))
        async with worker:
            [result] = await demo.run_cases(self.client, self.task_queue, [case])
        return result.outcome

    def starts(self, case: demo.Case) -> list[dict[str, Any]]:
        log = Path(case.env["PDPP_START_LOG"])
        return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def upstream_seed() -> Iterator[UpstreamProcess]:
    with UpstreamProcess(world="seed", plan=demo.DEMO_PLAN) as up:
        yield up


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> GenSummary:
    """Case B's 640 session files: 350,563 records, a 75 KB messages cursor."""
    return generate(tmp_path_factory.mktemp("claude") / "projects")


@pytest.fixture
async def seed_cases(
    tmp_path: Path, client: Client, store: Store, upstream_seed: UpstreamProcess
) -> AsyncIterator[Cases]:
    yield Cases(tmp_path, client, store, upstream_seed.url)


async def committed_state(store: Store, connector: str) -> dict[str, Any]:
    rows = await store.pool.fetch(
        "SELECT stream, cursor::text AS cursor FROM stream_state WHERE connector = $1", connector
    )
    return {r["stream"]: r["cursor"] for r in rows}


async def record_count(store: Store, connector: str) -> int:
    n: int = await store.pool.fetchval("SELECT count(*) FROM records WHERE connector = $1", connector)
    return n


async def test_case_a_malformed_final_state_keeps_every_record(seed_cases: Cases) -> None:
    case = seed_cases.add("A", "gmail")
    o = await seed_cases.run(case)
    assert (o.records_emitted, o.records_durable, o.buffered_records_dropped) == (50_396, 50_396, 0)
    assert await record_count(seed_cases.store, case.connector) == 50_396
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "connector_protocol_violation"
    checkpoints = {s.stream: s.checkpoint for s in o.streams}
    assert checkpoints == {"labels": "committed", "threads": "committed", "messages": "earlier_committed"}
    # The last proven messages cursor (one page before the end) is what the next run resumes from.
    state = await committed_state(seed_cases.store, case.connector)
    assert json.loads(state["messages"])["highest_modseq"] < 2**53
    [gap] = [g for g in await seed_cases.store.gaps.find(case.connector)]
    assert (gap.stream, gap.kind, gap.reason) == ("messages", "checkpoint", "invalid_state_line")
    [q] = await seed_cases.store.runs.quarantined(o.run_id)
    assert q.kind == "invalid_json" and "18446744073709551615n" in q.excerpt
    assert o.needs_retry and [h.scope.stream for h in o.retry_hints] == ["messages"]


async def test_case_a_without_the_quirk_commits_the_64_bit_cursor_exactly(
    seed_cases: Cases, upstream_seed: UpstreamProcess
) -> None:
    upstream_seed.set_plan({"faults": []})
    case = seed_cases.add("A", "gmail")
    o = await seed_cases.run(case)
    assert o.status is RunStatus.SUCCEEDED and o.records_durable == 50_396
    state = await committed_state(seed_cases.store, case.connector)
    assert '"highest_modseq": 18446744073709551615' in state["messages"]


async def test_case_b_large_cursor_commits_by_default_and_fails_alone_over_the_cap(
    seed_cases: Cases, sessions: GenSummary, tmp_path: Path
) -> None:
    root = str(sessions.root)
    case = seed_cases.add("B", "claude_code", (sessions.root,), env={"CLAUDE_CODE_ROOT": root})
    o = await seed_cases.run(case)
    assert o.status is RunStatus.SUCCEEDED and o.records_durable == sessions.records
    assert (o.state_streams_staged, o.state_streams_committed) == (4, 4)
    state = await committed_state(seed_cases.store, case.connector)
    assert len(state["messages"]) >= 50_000

    starts = tmp_path / "capped.starts.jsonl"
    capped = seed_cases.add(
        "B'",
        "claude_code",
        (sessions.root,),
        env={"CLAUDE_CODE_ROOT": root, "PDPP_START_LOG": str(starts)},
        settings={"max_state_bytes": 64 * 1024},
    )
    o = await seed_cases.run(capped)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "state_too_large"
    assert (o.state_streams_staged, o.state_streams_committed) == (4, 3)
    assert o.records_durable == sessions.records
    assert {s.stream: s.checkpoint for s in o.streams}["messages"] == "state_too_large"
    # Raising the cap is the owner's call: a gap, but no automatic retry.
    [gap] = await seed_cases.store.gaps.find(capped.connector)
    assert (gap.kind, gap.recovery_class) == ("checkpoint", RecoveryClass.OWNER_ACTION.value)
    assert not o.needs_retry

    # The next run resumes only the messages stream: the other three start from their cursors.
    again = await seed_cases.run(capped)
    second = seed_cases.starts(capped)[-1]
    assert sorted(second["state"]) == ["attachments", "memory_notes", "sessions"]
    collected = {s.stream: s.collected for s in again.streams}
    assert collected == {"attachments": 0, "memory_notes": 0, "messages": sessions.messages, "sessions": 0}


async def test_case_c_failed_channel_is_a_gap_and_the_archive_is_durable(
    seed_cases: Cases, upstream_seed: UpstreamProcess, tmp_path: Path
) -> None:
    starts = tmp_path / "slack.starts.jsonl"
    case = seed_cases.add(
        "C", "slack", env={"SLACK_ARCHIVE": str(tmp_path / "archive.sqlite"), "PDPP_START_LOG": str(starts)}
    )
    o = await seed_cases.run(case)
    # 1,460 users, 3,240 channels and the 574,274 messages of every channel but the failed one.
    assert o.records_durable == 578_974 == await record_count(seed_cases.store, case.connector)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.needs_retry
    assert o.reason == "connector_reported_failed"
    [gap] = await seed_cases.store.gaps.find(case.connector)
    assert (gap.stream, gap.kind, gap.subject) == ("messages", "item", SLACK_FAILING)
    [hint] = o.retry_hints
    assert hint.scope.stream == "messages" and hint.gap_count == 1
    assert hint.scope.include_resources is not None and hint.scope.include_resources.count == 1
    assert await seed_cases.store.hints.hint_subjects(case.connector, hint.hint_id) == [SLACK_FAILING]
    wait = hint.not_before - o.finished_at
    assert timedelta(minutes=9) < wait <= timedelta(minutes=10), wait

    # The rest proceeds without it: the next run excludes the channel and does not touch it.
    upstream_seed.reset()
    again = await seed_cases.run(case)
    scope = {st["name"]: st for st in seed_cases.starts(case)[-1]["scope"]["streams"]}
    assert scope["messages"]["exclude_resources"] == [SLACK_FAILING]
    ids = upstream_seed.counters("slack.history", ids=True)["routes"]["slack.history"].get("ids", {})
    assert SLACK_FAILING not in ids and len(ids) == 3_239
    assert again.status is RunStatus.SUCCEEDED and again.gaps_open_total == 1


async def test_case_d_shortened_range_is_a_gap_retried_in_accepted_chunks(seed_cases: Cases) -> None:
    requested = demo.FIVE_YEARS
    case = seed_cases.add("D", "usaa", streams=(StreamScope(name="transactions", time_range=requested),))
    o = await seed_cases.run(case)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.needs_retry and o.records_durable > 0
    assert o.skipped_by_reason == {"range_truncated": 1}
    [gap] = await seed_cases.store.gaps.find(case.connector)
    assert gap.kind == "range"
    [hint] = o.retry_hints
    chunks = hint.scope.time_ranges
    assert chunks is not None and hint.estimated_cost == len(chunks)
    # The chunks tile the uncovered span exactly (half-open, each until the next one's since),
    # none longer than the 90 days the bank took: [2021-04-20, 2026-01-20) in 20.
    uncovered = json.loads(gap.subject)
    assert uncovered == {"since": "2021-04-20", "until": "2026-01-20"}
    assert chunks[0].since == requested.since and chunks[-1].until == uncovered["until"]
    days = [(date.fromisoformat(c.until or "") - date.fromisoformat(c.since or "")).days for c in chunks]
    assert max(days) <= 90 and sum(days) == 1736 and len(chunks) == 20
    assert all(a.until == b.since for a, b in itertools.pairwise(chunks))


async def test_case_e_rate_limited_conversations_are_gaps_with_one_24h_hint(
    seed_cases: Cases, upstream_seed: UpstreamProcess, client: Client
) -> None:
    case = seed_cases.add("E", "chatgpt")
    o = await seed_cases.run(case)
    assert upstream_seed.count("chatgpt.conversation") == 14_784
    assert (o.records_durable, o.skipped_by_reason) == (10_596, {"rate_limited": 4_188})
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.needs_retry
    [hint] = o.retry_hints
    assert (hint.gap_count, hint.estimated_cost, hint.reason) == (4_188, 4_188, "rate_limited")
    assert hint.recovery_class is RecoveryClass.PROVIDER_PRESSURE
    wait = hint.not_before - o.finished_at
    assert timedelta(hours=23, minutes=58) < wait <= timedelta(hours=24), wait
    limited = set(upstream_seed.fault_ids(1))
    gaps = await seed_cases.store.gaps.find(case.connector)
    assert {g.subject for g in gaps} == limited and len(limited) == 4_188
    assert set(await seed_cases.store.hints.hint_subjects(case.connector, hint.hint_id)) == limited
    # The ids live in the gap ledger, not in Temporal history.
    text = history_text(await client.get_workflow_handle(o.run_id).fetch_history())
    assert "4,188" in text  # decoded payloads are searched: the outcome's details name the count
    assert not any(i in text for i in limited)

    # The seed's original connector (one SKIP_RESULT per 429) leads to the same gaps and hint.
    upstream_seed.reset()  # re-arms the plan's 429s (each fires once per conversation)
    skip = seed_cases.add("E", "chatgpt", env={"CHATGPT_GAP_STYLE": "skip_result"})
    o2 = await seed_cases.run(skip)
    [hint2] = o2.retry_hints
    assert {g.subject for g in await seed_cases.store.gaps.find(skip.connector)} == limited
    assert (o2.status, o2.records_durable, o2.skipped_by_reason) == (
        o.status,
        10_596,
        {"rate_limited": 4_188},
    )
    same = ("reason", "recovery_class", "gap_count", "estimated_cost", "attempt", "max_attempts", "scope")
    assert {k: getattr(hint2, k) for k in same if k != "scope"} == {
        k: getattr(hint, k) for k in same if k != "scope"
    }
    assert hint2.scope.include_resources and hint.scope.include_resources
    assert hint2.scope.include_resources.count == hint.scope.include_resources.count


# -- the reference's own manifests for our bundled connectors, where their streams agree ---------

REFERENCE_MANIFESTS = Path(__file__).parents[1] / "data" / "pdpp_ri_manifests"


async def test_case_c_with_the_reference_slack_manifest(
    seed_cases: Cases, upstream_seed: UpstreamProcess, tmp_path: Path
) -> None:
    # The reference's slack.json (14 streams; "append" semantics; network and filesystem
    # required) for the three streams ours collects, messages keyed by its `id`.
    streams = tuple(StreamScope(name=s) for s in ("users", "channels", "messages"))
    case = seed_cases.add(
        "C",
        "slack",
        env={"SLACK_ARCHIVE": str(tmp_path / "archive.sqlite"), "SLACK_MESSAGE_KEY": "id"},
        manifest=REFERENCE_MANIFESTS / "slack.json",
        streams=streams,
    )
    o = await seed_cases.run(case)
    assert demo.check(case, o) == []
    assert o.records_durable == 578_974 == await record_count(seed_cases.store, case.connector)
    assert (o.records_rejected, o.reason) == (0, "connector_reported_failed")
    [gap] = await seed_cases.store.gaps.find(case.connector)
    assert (gap.stream, gap.kind, gap.subject) == ("messages", "item", SLACK_FAILING)
    key = await seed_cases.store.pool.fetchval(
        "SELECT key FROM records WHERE connector = $1 AND stream = 'messages' LIMIT 1", case.connector
    )
    assert ":" in key  # "<channel>:<ts>", the reference's message id


async def test_case_d_with_the_reference_usaa_manifest(seed_cases: Cases) -> None:
    # The reference's usaa.json: transactions is a list+detail lane of its own
    # (parent_detail_accounting, no parent); browser and network bindings required.
    case = seed_cases.add(
        "D",
        "usaa",
        manifest=REFERENCE_MANIFESTS / "usaa.json",
        streams=(StreamScope(name="transactions", time_range=demo.FIVE_YEARS),),
    )
    o = await seed_cases.run(case)
    assert demo.check(case, o) == []
    assert o.skipped_by_reason == {"range_truncated": 1} and o.records_durable > 0
    assert (o.state_streams_staged, o.state_streams_committed) == (1, 1)
    [gap] = await seed_cases.store.gaps.find(case.connector)
    assert gap.kind == "range"
