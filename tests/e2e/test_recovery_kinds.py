"""What a recovery run may change, per kind of gap, end to end (real Temporal, real PostgreSQL,
the scripted connector): a checkpoint gap's recovery walks its stream forward from the
committed cursor and is recovered only when it commits; a range recovery's STATE never moves
the stream's committed cursor (DESIGN §2, §4 cases A, B', D)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from temporalio.client import WorkflowHandle

from pdpp_orch.control.recoveries import requeue
from pdpp_orch.models import (
    CheckpointFact,
    GapKind,
    Mode,
    RecoveryClass,
    RecoveryResult,
    RunOutcome,
    RunStatus,
    StreamCommit,
    Trigger,
)
from pdpp_orch.registry import Registry
from pdpp_orch.store import Gap, NewGap, Store
from tests.conftest import CONNECTORS, Harness, outcome_of, until
from workflows.connector_run import ConnectorRunWorkflow
from workflows.recovery import GapRecoveryWorkflow

pytestmark = pytest.mark.slow

# Case A's quirk: the final STATE written with a BigInt literal, which is not JSON.
BIGINT_STATE = '{"type":"STATE","stream":"a","cursor":{"offset":18446744073709551615n}}'
# What a connector that drains served gaps does when told `recovery_only` and served none
# (gmail, slack, claude_code, usaa): nothing.
DRAIN_NOTHING = [{"done": "succeeded"}]


def scripted(h: Harness, steps: list[dict[str, Any]], **extra: Any) -> str:
    drain = h.tmp / "drain-nothing.json"
    drain.write_text(json.dumps(DRAIN_NOTHING))
    return h.scripted(steps, env={"SCRIPT_RECOVERY_PLAN": str(drain)}, **extra)


def replan(h: Harness, name: str, steps: list[dict[str, Any]]) -> None:
    """What the connector does from its next run on (an upstream fixed, a quirk gone)."""
    (h.tmp / f"{name}.plan.json").write_text(json.dumps(steps))


async def forward(h: Harness, name: str) -> RunOutcome:
    """A forward run that starts its recoveries, as `pdpp-orch run` does (the worker runs)."""
    inp = h.run_input(name)
    handle = await h.client.start_workflow(
        ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=h.task_queue
    )
    return await outcome_of(h.store, handle)


async def gap_of(store: Store, connector: str) -> Gap:
    [gap] = await store.gaps.find(connector)
    return gap


async def after_recovery_runs(h: Harness, name: str, n: int) -> list[RunOutcome]:
    """The first `n` recovery runs' outcomes, once the gaps they were served are settled."""

    async def settled() -> list[RunOutcome] | None:
        runs = await h.store.runs.recovery_outcomes(name)
        gaps = await h.store.gaps.find(name)
        return runs if len(runs) >= n and all(g.status != "leased" for g in gaps) else None

    return await until(settled, f"{n} recovery run(s) settled", seconds=60)


async def committed(store: Store, connector: str, stream: str = "a") -> tuple[Any, str]:
    row = await store.pool.fetchrow(
        "SELECT cursor::text AS cursor, run_id FROM stream_state WHERE connector = $1 AND stream = $2",
        connector,
        stream,
    )
    assert row is not None
    return json.loads(row["cursor"]), row["run_id"]


async def test_a_checkpoint_gap_is_recovered_only_by_the_run_that_commits_it(harness: Harness) -> None:
    # Case A's shape: the final STATE of stream `a` is not JSON; the one before it commits.
    quirk = [
        {"records": {"stream": "a", "count": 5}},
        {"state": "a"},
        {"records": {"stream": "a", "count": 5}},
        {"raw": BIGINT_STATE},
        {"done": "succeeded"},
    ]
    name = scripted(harness, quirk)
    async with harness.worker():
        o = await forward(harness, name)
        assert {s.stream: s.checkpoint for s in o.streams} == {"a": "earlier_committed"}
        [hint] = o.retry_hints
        assert hint.scope.stream == "a"
        gap = await gap_of(harness.store, name)
        assert (gap.kind, gap.reason, gap.recovery_class) == ("checkpoint", "invalid_state_line", "transient")
        handle: WorkflowHandle[Any, RecoveryResult] = harness.client.get_workflow_handle(
            o.recovery_workflow_ids[0], result_type=RecoveryResult
        )
        await handle.signal(GapRecoveryWorkflow.run_now)

        # The quirk is still there: the recovery walks `a` forward from its committed cursor
        # (no recovery_only), commits the proven STATE before the broken one, and the gap stays.
        [first] = await after_recovery_runs(harness, name, 1)
        gap = await gap_of(harness.store, name)
        assert (gap.status, gap.attempts, gap.recovered_run_id) == ("pending", 1, None)
        start = harness.starts(name)[-1]
        assert "recovery_only" not in start and start["state"] == {"a": {"offset": 5}}
        assert (first.status, first.reason) == (RunStatus.PARTIALLY_COMPLETED, "connector_protocol_violation")
        assert first.records_durable == 10
        assert await committed(harness.store, name) == ({"offset": 10}, first.run_id)

        # Fixed: the next recovery commits the stream's checkpoint, and only that closes the gap.
        replan(
            harness, name, [{"records": {"stream": "a", "count": 5}}, {"state": "a"}, {"done": "succeeded"}]
        )
        await handle.signal(GapRecoveryWorkflow.run_now)
        result = await handle.result()
    assert (result.runs, result.progress.recovered, result.progress.open) == (2, 1, 0)
    second = (await harness.store.runs.recovery_outcomes(name))[-1]
    assert second.status is RunStatus.SUCCEEDED and second.state_streams_committed == 1
    gap = await gap_of(harness.store, name)
    assert (gap.status, gap.attempts, gap.recovered_run_id) == ("recovered", 2, second.run_id)
    assert await committed(harness.store, name) == ({"offset": 15}, second.run_id)


async def test_a_requeued_oversized_checkpoint_stays_open_until_it_fits(harness: Harness) -> None:
    # Case B': the cursor is over the connector's cap; the owner requeues the gap before
    # raising the cap, so its recovery cannot commit either.
    steps = [
        {"records": {"stream": "a", "count": 3}},
        {"state": "a", "pad_bytes": 4096},
        {"done": "succeeded"},
    ]
    name = scripted(harness, steps, max_state_bytes=1024)
    async with harness.worker():
        o = await forward(harness, name)
        assert (o.reason, o.needs_retry) == ("state_too_large", False)
        gap = await gap_of(harness.store, name)
        assert (gap.kind, gap.recovery_class) == ("checkpoint", "owner_action")
        registry = Registry.load(harness.registry_path)
        wid = await requeue(harness.store, harness.client, registry, harness.task_queue, gap.gap_id)
        [run] = await after_recovery_runs(harness, name, 1)
        gap = await gap_of(harness.store, name)
        assert (gap.status, gap.attempts, gap.recovered_run_id) == ("pending", 1, None)
        assert "recovery_only" not in harness.starts(name)[-1]
        assert (run.status, run.reason, run.records_durable) == (
            RunStatus.PARTIALLY_COMPLETED,
            "state_too_large",
            3,
        )
        assert await harness.store.state.committed_sizes(name) == {}

        # The owner raises the cap and brings the recovery's back-off forward: now it commits.
        toml = harness.registry_path.read_text()
        harness.registry_path.write_text(toml.replace("max_state_bytes = 1024", "max_state_bytes = 65536"))
        handle = harness.client.get_workflow_handle(wid, result_type=RecoveryResult)
        await handle.signal(GapRecoveryWorkflow.run_now)
        result = await handle.result()
    assert (result.runs, result.progress.recovered) == (2, 1)
    second = (await harness.store.runs.recovery_outcomes(name))[-1]
    gap = await gap_of(harness.store, name)
    assert (second.status, gap.status, gap.recovered_run_id) == (
        RunStatus.SUCCEEDED,
        "recovered",
        second.run_id,
    )
    assert (await committed(harness.store, name))[1] == second.run_id


async def test_a_range_recovery_never_moves_the_committed_cursor(harness: Harness) -> None:
    # Case D's shape: the forward run covers up to 2026-01-01 but not 2025-01-01..03-31.
    skip = {
        "type": "SKIP_RESULT",
        "stream": "a",
        "reason": "range_truncated",
        "recovery_hint": "retry_by_runtime",
        "time_range": {"since": "2025-01-01", "until": "2025-03-31"},
    }
    until_2026 = {"type": "STATE", "stream": "a", "cursor": {"until": "2026-01-01"}}
    steps = [
        {"records": {"stream": "a", "count": 3}},
        {"msg": skip},
        {"msg": until_2026},
        {"done": "succeeded"},
    ]
    name = scripted(harness, steps)
    async with harness.worker():
        o = await forward(harness, name)
        assert [h.scope.time_ranges for h in o.retry_hints] != [None]
        # Like the bundled usaa connector, the chunk's run writes the end of its chunk as STATE.
        chunk_end = {"type": "STATE", "stream": "a", "cursor": {"until": "2025-03-31"}}
        replan(
            harness,
            name,
            [{"records": {"stream": "a", "count": 2}}, {"msg": chunk_end}, {"done": "succeeded"}],
        )
        handle = harness.client.get_workflow_handle(o.recovery_workflow_ids[0], result_type=RecoveryResult)
        await handle.signal(GapRecoveryWorkflow.run_now)
        result = await handle.result()
    assert (result.runs, result.progress.recovered) == (1, 1)
    assert await committed(harness.store, name) == ({"until": "2026-01-01"}, o.run_id)
    [run] = await harness.store.runs.recovery_outcomes(name)
    assert run.status is RunStatus.SUCCEEDED and run.records_durable == 2
    assert (run.state_streams_committed, run.checkpoint_commit_status.value) == (0, "disabled")
    assert {s.stream: s.checkpoint for s in run.streams} == {"a": "scoped_recovery"}


async def test_a_range_gap_is_recovered_day_by_day_by_a_reader_of_half_open_ranges(harness: Harness) -> None:
    # The protocol's ranges are half-open (since <= t < until). The forward run did not cover
    # 2025-01-01 up to 2025-01-10 (nine days) and the source takes three days at a time: the
    # chunks must meet at their bounds, or a reader of the protocol's ranges (the reference's
    # connectors, `days` here) loses each chunk's last day, and the gap still closes.
    skip = {
        "type": "SKIP_RESULT",
        "stream": "a",
        "reason": "range_truncated",
        "recovery_hint": "retry_by_runtime",
        "time_range": {"since": "2025-01-01", "until": "2025-01-10"},
        "diagnostics": {"longest_accepted_days": 3},
    }
    name = scripted(harness, [{"msg": skip}, {"done": "succeeded"}], manifest=CONNECTORS / "dated.json")
    async with harness.worker():
        o = await forward(harness, name)
        replan(harness, name, [{"days": {"stream": "a"}}, {"done": "succeeded"}])
        handle = harness.client.get_workflow_handle(o.recovery_workflow_ids[0], result_type=RecoveryResult)
        await handle.signal(GapRecoveryWorkflow.run_now)
        result = await handle.result()
    days = await harness.store.pool.fetch(
        "SELECT data->>'date' AS day FROM records WHERE connector = $1 ORDER BY 1", name
    )
    assert [r["day"] for r in days] == [f"2025-01-0{d}" for d in range(1, 10)]
    chunks = [s["scope"]["streams"][0]["time_range"] for s in harness.starts(name)[1:]]
    assert chunks == [
        {"since": "2025-01-01", "until": "2025-01-04"},
        {"since": "2025-01-04", "until": "2025-01-07"},
        {"since": "2025-01-07", "until": "2025-01-10"},
    ]
    assert (result.runs, result.progress.recovered, result.progress.open) == (3, 1, 0)


async def test_a_recovery_does_not_commit_over_a_checkpoint_committed_since_it_started(
    store: Store,
) -> None:
    # A recovery run (which holds no connector lock) and a forward run of the same stream: the
    # forward run commits while the recovery runs, so the recovery's older walk does not commit.
    connector = "race"
    await store.pool.execute("DELETE FROM stream_state WHERE connector = $1", connector)
    recovery, later = f"{connector}-recovery-1", f"{connector}-forward-2"
    await store.runs.start(recovery, connector, Trigger.RECOVERY, Mode.RECOVERY)
    await store.runs.start(later, connector, Trigger.MANUAL, Mode.FORWARD)
    for run_id, offset in ((recovery, 10), (later, 20)):
        await store.pool.execute(
            "INSERT INTO run_checkpoints (run_id, stream, seq, cursor, cursor_bytes, facts) "
            "VALUES ($1, 'a', 1, $2::jsonb, 13, '{}'::jsonb)",
            run_id,
            json.dumps({"offset": offset}),
        )
    fact = CheckpointFact(stream="a", staged=1, proven_seq=1)
    assert (await store.state.commit(connector, later, fact, 1 << 20)).committed
    refused = await store.state.commit(connector, recovery, fact, 1 << 20, since_start=True)
    assert refused == StreamCommit(stream="a", committed=False, withheld=True, bytes=13, reason="superseded")
    assert await committed(store, connector) == ({"offset": 20}, later)
    # Its own commit, retried, is not refused: the cursor it committed is its own.
    await store.pool.execute("DELETE FROM stream_state WHERE connector = $1", connector)
    assert (await store.state.commit(connector, recovery, fact, 1 << 20, since_start=True)).committed
    assert (await store.state.commit(connector, recovery, fact, 1 << 20, since_start=True)).committed


async def test_a_lease_is_a_walk_or_items_and_a_hint_adopts_what_it_can_recover(store: Store) -> None:
    # A checkpoint gap's recovery walked its stream and found an item and a range it could not
    # get: it takes the item over, not the range; its next lease is the walk alone, then the item.
    connector, found, walk = "mixed", "mixed-forward-1", "mixed-recovery-1"
    await store.pool.execute("DELETE FROM gaps WHERE connector = $1", connector)
    await store.gaps.open(
        connector, found, NewGap("a", GapKind.CHECKPOINT, "a", "x", RecoveryClass.TRANSIENT)
    )
    await store.pool.execute("UPDATE gaps SET hint_id = 'hint_cp' WHERE connector = $1", connector)
    for kind, subject in ((GapKind.ITEM, "k1"), (GapKind.RANGE, '{"since": "2025-01-01"}')):
        await store.gaps.open(connector, walk, NewGap("a", kind, subject, "y", RecoveryClass.TRANSIENT))
    assert await store.hints.adopt(connector, walk, "hint_cp") == 1
    owners = {g.kind: g.hint_id for g in await store.gaps.find(connector)}
    assert owners == {"checkpoint": "hint_cp", "item": "hint_cp", "range": None}
    assert await store.leases.lease(connector, "hint_cp", "l1", 10, 8, 60) == 1
    assert await store.leases.leased_kinds(connector, "l1") == {GapKind.CHECKPOINT}
    await store.leases.settle_lease(connector, "l1", walk, True, 5, 1)  # the walk gives up on it
    assert await store.leases.lease(connector, "hint_cp", "l2", 10, 8, 60) == 1
    assert await store.leases.leased_kinds(connector, "l2") == {GapKind.ITEM}


async def test_a_stream_gap_nobody_retries_closes_when_a_later_run_collects_the_stream(
    harness: Harness,
) -> None:
    # ical with no sources: a whole stream skipped for a reason of the connector's own, which no
    # recovery retries. The source configured, the next forward run collects and commits the
    # stream: the gap is what that run superseded, not open for ever (issue 21: a later run).
    skip = {"msg": {"type": "SKIP_RESULT", "stream": "b", "reason": "no_calendar_sources"}}
    name = scripted(harness, [{"records": {"stream": "a", "count": 2}}, {"state": "a"}, skip, *DRAIN_NOTHING])
    async with harness.worker():
        first = await forward(harness, name)
        assert first.status is RunStatus.PARTIALLY_COMPLETED and not first.retry_hints
        gap = await harness.store.pool.fetchrow(
            "SELECT kind, status FROM gaps WHERE connector = $1 AND stream = 'b'", name
        )
        assert (gap["kind"], gap["status"]) == (GapKind.STREAM.value, "pending")
        replan(harness, name, [{"records": {"stream": "b", "count": 3}}, {"state": "b"}, *DRAIN_NOTHING])
        second = await forward(harness, name)
    assert second.status is RunStatus.SUCCEEDED and second.gaps_open_total == 0
    closed = await harness.store.pool.fetchrow(
        "SELECT status, recovered_run_id FROM gaps WHERE connector = $1 AND stream = 'b'", name
    )
    assert (closed["status"], closed["recovered_run_id"]) == ("recovered", second.run_id)
