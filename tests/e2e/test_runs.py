"""End to end through Temporal and PostgreSQL: what a run stores and what it says about itself."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from temporalio.client import WorkflowExecutionStatus

from pdpp_orch.models import CommitStatus, Mode, RunStatus, Trigger
from tests.conftest import CONNECTORS, Harness, outcome_of


async def records(h: Harness, connector: str, stream: str | None = None) -> list[dict[str, Any]]:
    rows = await h.store.pool.fetch(
        "SELECT stream, key, data::text AS data, deleted FROM records "
        "WHERE connector = $1 AND ($2::text IS NULL OR stream = $2) ORDER BY stream, key",
        connector,
        stream,
    )
    return [dict(r) for r in rows]


async def committed(h: Harness, connector: str) -> dict[str, Any]:
    rows = await h.store.pool.fetch(
        "SELECT stream, cursor::text AS cursor FROM stream_state WHERE connector = $1", connector
    )
    return {r["stream"]: json.loads(r["cursor"]) for r in rows}


def three_streams(n: int = 40) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for s in ("a", "b", "c"):
        steps += [{"records": {"stream": s, "count": n}}, {"state": s}]
    return [*steps, {"done": "succeeded"}]


async def test_clean_three_stream_run_succeeds_and_next_run_is_incremental(harness: Harness) -> None:
    name = harness.scripted(three_streams(40))
    o = await harness.run(name)
    assert o.status is RunStatus.SUCCEEDED and o.reason is None and not o.needs_retry
    assert (o.records_emitted, o.records_durable, o.records_rejected) == (120, 120, 0)
    assert (o.state_streams_staged, o.state_streams_committed) == (3, 3)
    assert o.checkpoint_commit_status is CommitStatus.COMMITTED
    assert [s.stream for s in o.streams] == ["a", "b", "c"]
    assert all(s.collected == 40 and s.checkpoint == "committed" for s in o.streams)
    assert len(await records(harness, name)) == 120
    assert await committed(harness, name) == {s: {"offset": 40} for s in "abc"}

    run = await harness.store.runs.get(o.run_id)
    assert run is not None and run.status == "succeeded" and run.records_durable == 120
    events = [e.event_type for e in await harness.store.runs.spine_events(o.run_id)]
    assert events[0] == "run.started" and events[-1] == "run.completed"
    assert "batch_ingested" in events

    # The next run starts from the committed cursors (the script then emits 40 more each).
    again = await harness.run(name)
    assert harness.starts(name)[1]["state"] == {s: {"offset": 40} for s in "abc"}
    assert harness.starts(name)[1]["collection_mode"] == "incremental"
    assert again.status is RunStatus.SUCCEEDED
    assert len(await records(harness, name)) == 240


async def test_malformed_state_keeps_every_record_and_earlier_checkpoints(harness: Harness) -> None:
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 30}},
            {"state": "a"},
            {"records": {"stream": "b", "count": 25}},
            {"state": "b"},
            {"records": {"stream": "a", "count": 20}},
            # Case A: a BigInt literal makes the final STATE invalid JSON.
            {"raw": '{"type": "STATE", "stream": "a", "cursor": {"highest_modseq": 18446744073709551615n}}'},
            {"records": {"stream": "c", "count": 10}},
            {"state": "c"},
            {"done": "succeeded"},
        ]
    )
    o = await harness.run(name)
    assert o.status is RunStatus.PARTIALLY_COMPLETED
    assert o.reason == "connector_protocol_violation"
    assert (o.records_emitted, o.records_durable, o.buffered_records_dropped) == (85, 85, 0)
    assert len(await records(harness, name)) == 85
    # a's first and b's STATE were proven before the violation and commit; a's final STATE
    # is the violation and c's came after it, so neither counts as committed.
    assert await committed(harness, name) == {"a": {"offset": 30}, "b": {"offset": 25}}
    assert (o.state_streams_staged, o.state_streams_committed) == (3, 1)
    assert o.checkpoint_commit_status is CommitStatus.PARTIALLY_COMMITTED
    by_stream = {s.stream: s.checkpoint for s in o.streams}
    assert by_stream == {"a": "earlier_committed", "b": "committed", "c": "after_protocol_violation"}
    # Each lost checkpoint is a gap with a bounded retry of that stream from its committed cursor.
    gaps = {g.stream: g for g in await harness.store.gaps.find(name)}
    assert {s: (g.kind, g.reason) for s, g in gaps.items()} == {
        "a": ("checkpoint", "invalid_state_line"),
        "c": ("checkpoint", "after_protocol_violation"),
    }
    assert o.needs_retry and o.gaps_opened == 2
    assert sorted((h.scope.stream, h.max_attempts) for h in o.retry_hints) == [("a", 8), ("c", 8)]
    q = await harness.store.runs.quarantined(o.run_id)
    assert [(r.line_no, r.kind) for r in q] == [(78, "invalid_json")]
    assert "18446744073709551615n" in q[0].excerpt


async def test_records_postgresql_refuses_are_found_at_flush_and_lose_nothing_else(harness: Harness) -> None:
    """U+0000 in a record's data or key is valid JSON that PostgreSQL cannot store. The parser
    does not look for it (that would cost more than parsing); the flush finds it, keeps every
    other record of its batch, and the checkpoint after it is not committed."""
    bad = [
        {
            "type": "RECORD",
            "stream": "b",
            "key": "nul",
            "data": {"id": "nul", "text": "a\u0000b"},
            "emitted_at": "x",
        },
        {"type": "RECORD", "stream": "b", "key": "k\u0000", "data": {"id": "k\u0000"}, "emitted_at": "x"},
    ]
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 30}},
            {"state": "a"},
            {"records": {"stream": "b", "count": 10}},
            *({"msg": m} for m in bad),
            {"records": {"stream": "b", "count": 5}},
            {"state": "b"},
            {"records": {"stream": "a", "count": 5}},
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )
    o = await harness.run(name)
    assert o.status is RunStatus.PARTIALLY_COMPLETED
    assert o.reason == "connector_protocol_violation"
    assert (o.records_emitted, o.records_durable, o.records_rejected) == (52, 50, 2)
    rows = await records(harness, name)
    assert len(rows) == 50 and not {"nul", "k\x00"} & {r["key"] for r in rows}
    assert sum(r["stream"] == "b" for r in rows) == 15
    # a's first STATE came before the refused records; b's and a's second came after them.
    assert await committed(harness, name) == {"a": {"offset": 30}}
    by_stream = {s.stream: s.checkpoint for s in o.streams}
    assert by_stream == {"a": "earlier_committed", "b": "after_protocol_violation"}
    q = await harness.store.runs.quarantined(o.run_id)
    assert [(r.line_no, r.kind) for r in q] == [(42, "schema_invalid"), (43, "schema_invalid")]
    assert {"data contains" in r.detail or "key contains" in r.detail for r in q} == {True}


async def test_a_record_postgresql_refuses_is_quarantined_as_its_line(harness: Harness) -> None:
    """Issue 17: a refused record's quarantine row has the size and excerpt of the line the
    connector wrote (as every other quarantined line has), not those of its data alone."""
    head = '{"type": "RECORD", "stream": "a", "emitted_at": "x", '
    key_line = head + '"key": "k\\u0000", "data": {"id": "k\\u0000", "n": 1}}'
    data_line = head + '"key": "d", "data": {"id": "d", "text": "x\\u0000"}}'
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 3}},
            {"raw": key_line},
            {"raw": data_line},
            {"done": "succeeded"},
        ]
    )
    o = await harness.run(name)
    assert (o.records_durable, o.records_rejected) == (3, 2)
    q = await harness.store.runs.quarantined(o.run_id)
    assert [(r.line_no, r.kind) for r in q] == [(4, "schema_invalid"), (5, "schema_invalid")]
    assert [(r.line_bytes, r.excerpt) for r in q] == [
        (len(key_line), key_line),
        (len(data_line), data_line),
    ]
    assert "key contains" in q[0].detail and "data contains" in q[1].detail


async def test_bad_records_in_a_batch_are_quarantined_at_their_lines_and_the_rest_is_durable(
    harness: Harness,
) -> None:
    """Issue 16: data is passed on as the bytes it came as, and PostgreSQL's jsonb is the judge
    of what it cannot store. In one batch (new keys and updates of stored ones): data that is
    not JSON (found on reading), a key that disagrees with its data, U+0000 (found when the batch
    is written, without asking PostgreSQL) and numbers PostgreSQL's numeric cannot hold (found
    by PostgreSQL, each row on its own) are each quarantined at their line; every other record
    of the batch is durable, and the checkpoint after the first refused line does not commit. So is
    a key too long for the primary key's index (PostgreSQL refused the whole batch before)."""

    def line(key: str, data: str, **extra: Any) -> dict[str, Any]:
        msg = {"type": "RECORD", "stream": "a", "key": key, "emitted_at": "x", **extra}
        return {"raw": json.dumps(msg)[:-1] + f', "data": {data}}}'}

    numbers = [f"r{i}" for i in range(0, 40, 7)]
    long_key = secrets.token_hex(1600)  # incompressible: its index entry exceeds a third of a page
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 3}},
            {"state": "a"},  # flushes: the keys above are stored, the batch below is upserted
            line("a-000001", '{"id": "a-000001", "text": "updated"}'),  # line 5
            line("not-json", '{"id": "not-json", "v": tru}'),  # 6: not JSON
            line("mismatch", '{"id": "other"}'),  # 7: the key disagrees with its data
            line("nul", '{"id": "nul", "text": "a\\u0000b"}'),  # 8: U+0000
            *(
                line(k, f'{{"id": "{k}", "n": {"1e1000000" if k in numbers else 7}, "exact": 1e400}}')
                for k in (f"r{i}" for i in range(40))
            ),  # 9..48
            line("a-000002", '{"id": "a-000002", "text": "updated too"}'),  # 49
            line(long_key, f'{{"id": "{long_key}"}}'),  # 50: too long for the primary key's index
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )
    o = await harness.run(name)
    refused = [9 + int(k[1:]) for k in numbers]
    assert (o.records_emitted, o.records_rejected) == (3 + 46, 4 + len(numbers))
    assert o.records_durable == 3 + 46 - 4 - len(numbers)
    q = await harness.store.runs.quarantined(o.run_id)
    assert [(r.line_no, r.kind) for r in q] == [
        (6, "invalid_json"),
        (7, "key_mismatch"),
        (8, "schema_invalid"),
        *((n, "schema_invalid") for n in refused),
        (50, "schema_invalid"),
    ]
    assert "data contains \\u0000" in q[2].detail and "numeric" in q[3].detail
    assert "index row" in q[-1].detail
    assert all(r.excerpt.startswith('{"type": "RECORD"') for r in q)
    assert all(len(r.excerpt) == min(r.line_bytes, 2048) for r in q)
    rows = {r["key"]: json.loads(r["data"]) for r in await records(harness, name)}
    assert sorted(rows) == sorted(
        ["a-000000", "a-000001", "a-000002", *(f"r{i}" for i in range(40) if f"r{i}" not in numbers)]
    )
    assert rows["a-000001"]["text"] == "updated" and rows["a-000002"]["text"] == "updated too"
    assert rows["r1"]["exact"] == 10**400  # kept exactly: PostgreSQL's numeric, not a double
    assert await committed(harness, name) == {"a": {"offset": 3}}


async def test_a_refused_record_among_updates_and_deletes_leaves_them_applied(harness: Harness) -> None:
    """The refusal path rebuilds its batch from the COPY data: a tombstone stays a tombstone
    (its key, no data) and an update lands, through the upsert that keys already stored take."""

    def record(key: str, text: str, **extra: Any) -> dict[str, Any]:
        return {
            "msg": {
                "type": "RECORD",
                "stream": "a",
                "key": key,
                "data": {"id": key, "text": text},
                "emitted_at": "x",
                **extra,
            }
        }

    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 3}},
            {"state": "a"},  # flushes: the keys below exist, so their batch is upserted
            record("a-000001", "updated"),
            record("a-000000", "gone", op="delete"),
            record("x", "a\u0000b"),
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )
    o = await harness.run(name)
    assert (o.records_emitted, o.records_durable, o.records_rejected) == (6, 5, 1)
    rows = {r["key"]: r for r in await records(harness, name)}
    assert sorted(rows) == ["a-000000", "a-000001", "a-000002"]
    assert rows["a-000000"]["deleted"] and json.loads(rows["a-000000"]["data"]) is None
    assert not rows["a-000001"]["deleted"] and json.loads(rows["a-000001"]["data"])["text"] == "updated"
    assert json.loads(rows["a-000002"]["data"])["text"] == "item 2 of a"
    assert await committed(harness, name) == {"a": {"offset": 3}}
    q = await harness.store.runs.quarantined(o.run_id)
    assert [(r.line_no, r.kind) for r in q] == [(7, "schema_invalid")]


async def test_checkpoints_arriving_during_a_write_share_the_next_transaction(harness: Harness) -> None:
    """Group commit: a connector that checkpoints every 10 records does not cost a transaction
    per checkpoint. A STATE closes its batch at once only while nothing is being written;
    otherwise it goes with the next write, in the same transaction as the records before it."""
    steps: list[dict[str, Any]] = []
    for _ in range(500):
        steps += [{"records": {"stream": "a", "count": 10}}, {"state": "a"}]
    name = harness.scripted([*steps, {"done": "succeeded"}])
    o = await harness.run(name)
    assert o.status is RunStatus.SUCCEEDED
    assert (o.records_emitted, o.records_durable) == (5000, 5000)
    assert await committed(harness, name) == {"a": {"offset": 5000}}
    writes = [e for e in await harness.store.runs.spine_events(o.run_id) if e.event_type == "batch_ingested"]
    assert sum(e.payload["records"] for e in writes) == 5000
    assert len(writes) < 250, f"{len(writes)} transactions for 500 checkpoints"


async def test_exit_without_done_keeps_records_and_is_not_succeeded(harness: Harness) -> None:
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 15}},
            {"state": "a"},
            {"records": {"stream": "b", "count": 7}},
            {"exit": 0},
        ]
    )
    o = await harness.run(name)
    assert o.status is RunStatus.PARTIALLY_COMPLETED
    assert o.reason == "connector_exit_without_done"
    assert o.records_durable == 22 and len(await records(harness, name)) == 22
    assert await committed(harness, name) == {"a": {"offset": 15}}


async def test_exit_without_done_and_nothing_durable_is_failed(harness: Harness) -> None:
    name = harness.scripted([{"exit": 2}])
    o = await harness.run(name)
    assert o.status is RunStatus.FAILED and o.reason == "connector_exit_without_done"
    assert o.checkpoint_commit_status is CommitStatus.DISABLED


async def test_done_failed_flushes_the_buffered_tail(harness: Harness) -> None:
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 12}},
            {"state": "a"},
            {"records": {"stream": "a", "count": 887}},
            {"done": "failed", "error": {"message": "upstream went away", "retryable": True}},
        ]
    )
    o = await harness.run(name)
    assert o.records_durable == 899 and o.buffered_records_dropped == 0
    assert len(await records(harness, name)) == 899
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "connector_reported_failed"
    assert await committed(harness, name) == {"a": {"offset": 12}}


async def test_records_emitted_mismatch_is_a_violation(harness: Harness) -> None:
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 10}},
            {"state": "a"},
            {"done": "succeeded", "records_emitted": 11},
        ]
    )
    o = await harness.run(name)
    assert o.status is RunStatus.PARTIALLY_COMPLETED
    assert o.reason == "connector_protocol_violation"
    assert o.records_durable == 10
    row = await harness.store.runs.get(o.run_id)
    assert row is not None
    facts = await harness.store.pool.fetchval("SELECT facts::text FROM runs WHERE run_id = $1", o.run_id)
    assert "records_emitted_mismatch" in facts


async def test_out_of_scope_stream_is_rejected_and_quarantined(harness: Harness) -> None:
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 5}},
            {"records": {"stream": "b", "count": 3}},
            {"msg": {"type": "RECORD", "stream": "zz", "key": "1", "data": {"id": "1"}, "emitted_at": "x"}},
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )
    o = await harness.run(name, streams=["a"])
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "connector_protocol_violation"
    assert (o.records_emitted, o.records_durable, o.records_rejected) == (9, 5, 4)
    assert {r["stream"] for r in await records(harness, name)} == {"a"}
    kinds = [r.kind for r in await harness.store.runs.quarantined(o.run_id)]
    assert kinds == ["out_of_scope_stream"] * 3 + ["unknown_stream"]
    assert harness.starts(name)[0]["scope"] == {"streams": [{"name": "a"}]}


async def test_key_mismatch_and_garbage_lines_are_classified(harness: Harness) -> None:
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 3}},
            {
                "msg": {
                    "type": "RECORD",
                    "stream": "a",
                    "key": "wrong",
                    "data": {"id": "right"},
                    "emitted_at": "x",
                }
            },
            {"raw": "[1, 2]"},
            {"msg": {"type": "HELLO"}},
            {"raw": '{"type": "STATE", "stream": "a", "cursor": [1]}'},  # (without a cursor it is a null one)
            {"records": {"stream": "a", "count": 2}},
            {"done": "succeeded"},
        ]
    )
    o = await harness.run(name)
    assert o.records_durable == 5 and o.records_rejected == 1
    kinds = [r.kind for r in await harness.store.runs.quarantined(o.run_id)]
    assert kinds == ["key_mismatch", "not_an_object", "unknown_type", "schema_invalid"]
    assert o.status is RunStatus.PARTIALLY_COMPLETED


async def test_64_mib_cursor_commits_and_one_over_the_limit_does_not(harness: Harness) -> None:
    big = 64 * 1024 * 1024
    steps = [
        {"records": {"stream": "a", "count": 5}},
        {"state": "a", "pad_bytes": big - 64},  # the whole cursor is just under 64 MiB
        {"records": {"stream": "b", "count": 5}},
        {"state": "b"},
        {"records": {"stream": "c", "count": 5}},
        {"state": "c"},
        {"done": "succeeded"},
    ]
    ok = harness.scripted(steps)
    o = await harness.run(ok)
    assert o.status is RunStatus.SUCCEEDED and o.state_streams_committed == 3
    size = await harness.store.pool.fetchval(
        "SELECT cursor_bytes FROM stream_state WHERE connector = $1 AND stream = 'a'", ok
    )
    assert big - 64 < size <= big

    limited = harness.scripted(steps, max_state_bytes=1024 * 1024)
    o = await harness.run(limited)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "state_too_large"
    assert (o.state_streams_staged, o.state_streams_committed) == (3, 2)
    assert {s.stream: s.checkpoint for s in o.streams} == {
        "a": "state_too_large",
        "b": "committed",
        "c": "committed",
    }
    assert set(await committed(harness, limited)) == {"b", "c"}
    # The next run's START carries the committed cursors: only `a` starts over.
    await harness.run(limited)
    assert harness.starts(limited)[1]["state"] == {"b": {"offset": 5}, "c": {"offset": 5}}


async def test_skips_and_gaps_are_counted_and_remembered(harness: Harness) -> None:
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 4}},
            {
                "msg": {
                    "type": "SKIP_RESULT",
                    "stream": "a",
                    "reason": "rate_limited",
                    "recovery_hint": "retry_by_runtime",
                    "resource_ids": ["x1", "x2", "x3"],
                    "retry_after_seconds": 600,
                }
            },
            {
                "msg": {
                    "type": "SKIP_RESULT",
                    "stream": "b",
                    "reason": "pdf_template_unknown",
                    "recovery_hint": "retry_on_connector_upgrade",
                }
            },
            {
                "msg": {
                    "type": "SKIP_RESULT",
                    "stream": "c",
                    "reason": "not_in_export",
                    "recovery_hint": "not_retriable",
                }
            },
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )
    o = await harness.run(name)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.needs_retry
    assert o.skipped_by_reason == {"not_in_export": 1, "pdf_template_unknown": 1, "rate_limited": 3}
    assert o.gaps_opened == 4 and o.gaps_open_total == 4
    gaps = await harness.store.gaps.find(name)
    assert sorted((g.stream, g.recovery_class) for g in gaps) == [
        ("a", "provider_pressure"),
        ("a", "provider_pressure"),
        ("a", "provider_pressure"),
        ("b", "connector_defect"),
    ]
    events = await harness.store.runs.spine_events(o.run_id)
    skipped = [e.payload for e in events if e.event_type == "stream_skipped"]
    assert {(s["stream"], s["reason"], s["count"]) for s in skipped} == {
        ("a", "rate_limited", 3),
        ("b", "pdf_template_unknown", 1),
        ("c", "not_in_export", 1),
    }
    # The same misses found again are the same gaps, not new ones.
    await harness.run(name)
    assert len(await harness.store.gaps.find(name)) == 4


async def test_only_informational_skips_still_succeed(harness: Harness) -> None:
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 2}},
            {
                "msg": {
                    "type": "SKIP_RESULT",
                    "stream": "a",
                    "reason": "archived_elsewhere",
                    "recovery_hint": "not_retriable",
                }
            },
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )
    o = await harness.run(name)
    assert o.status is RunStatus.SUCCEEDED and o.skipped_by_reason == {"archived_elsewhere": 1}


async def test_cancel_ends_the_connector_keeps_records_and_commits_nothing(harness: Harness) -> None:
    name = harness.scripted(
        [{"records": {"stream": "a", "count": 50}}, {"state": "a"}, {"sleep": 60}, {"done": "succeeded"}]
    )
    inp = harness.run_input(name, heartbeat_timeout_seconds=2.0)  # cancels arrive with heartbeats
    async with harness.worker():
        handle = await harness.client.start_workflow(
            "ConnectorRunWorkflow", inp, id=inp.run_id, task_queue=harness.task_queue
        )
        for _ in range(200):
            durable = await harness.store.pool.fetchval(
                "SELECT records_durable FROM runs WHERE run_id = $1", inp.run_id
            )
            if durable == 50:
                break
            await asyncio.sleep(0.05)
        await handle.cancel()
        o = await outcome_of(harness.store, handle)
        # Temporal says the same: the workflow ended Canceled (the outcome is in `runs`).
        assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED
    assert o.status is RunStatus.CANCELLED and o.reason == "cancelled" and not o.needs_retry
    assert o.records_durable == 50 and o.buffered_records_dropped == 0
    assert len(await records(harness, name)) == 50
    assert await committed(harness, name) == {}
    assert o.state_streams_committed == 0


def detail_plan(coverage: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = [
        {"msg": {"type": "RECORD", "stream": "messages", "key": k, "data": {"id": k}, "emitted_at": "x"}}
        for k in ("m1", "m2")
    ]
    gap = {
        "type": "DETAIL_GAP",
        "stream": "messages",
        "record_key": "m3",
        "reason": "rate_limited",
        "detail_locator": {"conversation_id": "m3"},
        "retry_after_seconds": 86400,
    }
    return [
        {"records": {"stream": "conversations", "count": 3}},
        *msgs,
        {"msg": gap},
        {
            "msg": {
                "type": "DETAIL_COVERAGE",
                "reference_only": True,
                "stream": "messages",
                "state_stream": "conversations",
                **coverage,
            }
        },
        {"state": "conversations"},
        {"done": "succeeded"},
    ]


async def test_detail_gaps_backing_the_coverage_prove_the_parent_checkpoint(harness: Harness) -> None:
    manifest = CONNECTORS / "convmsg.json"
    name = harness.scripted(
        detail_plan({"required_keys": ["m1", "m2", "m3"], "hydrated_keys": ["m1", "m2"], "gap_keys": ["m3"]}),
        manifest=manifest,
    )
    o = await harness.run(name)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.needs_retry and o.reason == "records_skipped"
    assert o.skipped_by_reason == {"rate_limited": 1} and o.records_durable == 5
    assert await committed(harness, name) == {"conversations": {"offset": 3}}
    assert {s.stream: s.coverage for s in o.streams}["messages"] == "partial"
    [gap] = await harness.store.gaps.find(name)
    assert (gap.stream, gap.kind, gap.recovery_class) == ("messages", "item", "provider_pressure")
    assert gap.not_before is not None

    # Coverage that names a key neither hydrated nor backed by a gap leaves the parent unproven.
    short = harness.scripted(
        detail_plan(
            {"required_keys": ["m1", "m2", "m3", "m4"], "hydrated_keys": ["m1", "m2"], "gap_keys": ["m3"]}
        ),
        manifest=manifest,
    )
    o = await harness.run(short)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.records_durable == 5
    assert await committed(harness, short) == {}
    assert {s.stream: s.checkpoint for s in o.streams}["conversations"] == "coverage_unaccounted"


async def test_delete_is_a_tombstone_that_keeps_the_key_and_when_not_the_data(harness: Harness) -> None:
    """DESIGN §14: the owner's data is gone with its delete; the key and when stay, so that a
    reader of the store knows the record was deleted (and the next run does not bring it back
    unasked)."""
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 2}},
            {"state": "a"},  # flushes: the delete below updates a stored row
            {
                "msg": {
                    "type": "RECORD",
                    "stream": "a",
                    "key": "a-000000",
                    "data": {"id": "a-000000"},
                    "op": "delete",
                    "emitted_at": "x",
                }
            },
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )
    o = await harness.run(name)
    assert o.status is RunStatus.SUCCEEDED and o.records_durable == 3
    rows = {r["key"]: r for r in await records(harness, name)}
    assert rows["a-000000"]["deleted"] and json.loads(rows["a-000000"]["data"]) is None
    assert not rows["a-000001"]["deleted"]
    when = await harness.store.pool.fetchrow(
        "SELECT updated_at, last_run_id FROM records WHERE connector = $1 AND key = 'a-000000'", name
    )
    assert when["updated_at"] is not None and when["last_run_id"] == o.run_id  # when, and by which run


async def test_a_tombstone_in_the_batch_of_a_newer_version_keeps_no_data(harness: Harness) -> None:
    """A delete that follows an update of its key in the same batch keeps none of it: not the
    update's data, not the version stored before, nor the delete's own (DESIGN §14)."""

    def record(key: str, text: str, **extra: Any) -> dict[str, Any]:
        return {
            "msg": {
                "type": "RECORD",
                "stream": "a",
                "key": key,
                "data": {"id": key, "text": text},
                "emitted_at": "x",
                **extra,
            }
        }

    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 2}},
            {"state": "a"},  # flushes: a-000000 is stored, so the next batch is upserted
            record("a-000000", "newer"),
            record("a-000000", "the delete's own", op="delete"),
            record("fresh", "first"),  # a key no batch wrote before
            record("fresh", "the delete's own", op="delete"),
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )
    o = await harness.run(name)
    assert o.status is RunStatus.SUCCEEDED and o.records_durable == 6
    rows = {r["key"]: r for r in await records(harness, name)}
    assert rows["a-000000"]["deleted"] and json.loads(rows["a-000000"]["data"]) is None
    assert rows["fresh"]["deleted"] and json.loads(rows["fresh"]["data"]) is None
    assert not rows["a-000001"]["deleted"]


async def test_pdpp_strict_commits_nothing_on_failure_unless_certified(harness: Harness) -> None:
    failing = [
        {"records": {"stream": "a", "count": 3}},
        {"state": "a"},
        {"records": {"stream": "b", "count": 3}},
        {"state": "b"},
    ]
    plain = harness.scripted(
        [*failing, {"done": "failed", "error": {"message": "boom"}}], checkpoint_policy="pdpp_strict"
    )
    o = await harness.run(plain)
    assert o.records_durable == 6 and o.state_streams_committed == 0
    assert {s.checkpoint for s in o.streams} == {"pdpp_strict_run_failed"}

    certified = harness.scripted(
        [
            *failing,
            {
                "msg": {
                    "type": "SKIP_RESULT",
                    "stream": "b",
                    "reason": "stream_collection_failed",
                    "recovery_hint": "retry_by_runtime",
                }
            },
            {"done": "failed", "error": {"message": "b failed", "code": "stream_collection_failed"}},
        ],
        checkpoint_policy="pdpp_strict",
    )
    o = await harness.run(certified)
    assert await committed(harness, certified) == {"a": {"offset": 3}}
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.needs_retry

    # The default policy commits what is proven even when the run fails.
    proven = harness.scripted([*failing, {"done": "failed", "error": {"message": "boom"}}])
    await harness.run(proven)
    assert await committed(harness, proven) == {"a": {"offset": 3}, "b": {"offset": 3}}


async def test_a_superseded_collect_attempt_cannot_write(harness: Harness) -> None:
    import uuid

    import pytest

    from pdpp_orch.store import Flush, StaleAttemptError

    store = harness.store
    run_id = f"fence-{uuid.uuid4().hex[:8]}"
    await store.runs.start(run_id, "fence", Trigger.MANUAL, Mode.FORWARD)

    def batch(key: str) -> Flush:
        f = Flush(accepted=1, bytes=10)
        data = b'{"id": "' + key.encode() + b'"}'
        f.records[("a", key)] = (data, 0, 1, b'{"type": "RECORD", "data": ' + data + b"}")
        return f

    await store.runs.begin_attempt(run_id, 1)
    await store.records.flush("fence", run_id, 1, batch("k1"), {})
    # Attempt 2 starts (attempt 1's heartbeat timed out, but its process lives on).
    await store.runs.begin_attempt(run_id, 2)
    with pytest.raises(StaleAttemptError, match=r"attempt 1 .* superseded by attempt 2"):
        await store.records.flush("fence", run_id, 1, batch("k2"), {})
    await store.records.flush("fence", run_id, 2, batch("k3"), {})
    keys = await store.pool.fetch(
        "SELECT key FROM records WHERE connector = 'fence' AND last_run_id = $1", run_id
    )
    assert sorted(r["key"] for r in keys) == ["k1", "k3"]


async def test_records_the_reference_accepts_are_accepted_with_its_meaning(harness: Harness) -> None:
    """The reference's record rules (issue 14): a key with fewer parts than the primary key (its
    spotify `top_artists`: primary key [id, time_range], key String(data.id)), a primary-key
    field missing from data, a delete without data; each stored under the key as sent."""
    manifest = harness.tmp / "spotify.json"
    manifest.write_text(
        json.dumps(
            {
                "connector_key": "spotify_like",
                "streams": [
                    {"name": "top_artists", "primary_key": ["id", "time_range"]},
                    {"name": "a", "primary_key": ["id"]},
                ],
            }
        )
    )

    def record(stream: str, key: Any, data: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        msg = {"type": "RECORD", "stream": stream, "key": key, "emitted_at": "2026-11-26T00:00:00Z"}
        return {"msg": {**msg, **({"data": data} if data is not None else {}), **extra}}

    name = harness.scripted(
        [
            record("top_artists", "ar1", {"id": "ar1", "time_range": "short_term", "rank": 1}),
            record("top_artists", "ar1", {"id": "ar1", "time_range": "long_term", "rank": 7}),
            record("top_artists", ["ar2", "medium_term"], {"id": "ar2", "time_range": "medium_term"}),
            record("top_artists", ["ar3"], {"id": "ar3", "time_range": "long_term"}),
            record("a", "no-id", {"text": "data without its primary-key field"}),
            record("a", "gone", {"id": "gone", "text": "the last data"}),
            {"state": "a"},  # flushes: the delete below finds the row stored
            record("a", "gone", op="delete"),
            record("a", "never-seen", op="delete"),
            record("a", "no-data"),  # not a delete: refused
            record("top_artists", ["ar2", "short_term"], {"id": "ar2", "time_range": "medium_term"}),
            {"state": "a"},
            {"done": "succeeded"},
        ],
        manifest=manifest,
    )
    o = await harness.run(name)
    assert (o.records_emitted, o.records_durable, o.records_rejected) == (10, 8, 2)
    kinds = [(q.line_no, q.kind) for q in await harness.store.runs.quarantined(o.run_id)]
    assert kinds == [(10, "schema_invalid"), (11, "key_mismatch")]
    rows = {(r["stream"], r["key"]): r for r in await records(harness, name)}
    assert sorted(rows) == [
        ("a", "gone"),
        ("a", "no-id"),
        ("top_artists", '["ar2","medium_term"]'),
        ("top_artists", '["ar3"]'),
        ("top_artists", "ar1"),
    ]
    # The three windows of one artist collapse onto the key the connector sent, as there.
    assert json.loads(rows[("top_artists", "ar1")]["data"])["rank"] == 7
    gone = rows[("a", "gone")]
    assert gone["deleted"] and json.loads(gone["data"]) is None
    # A delete of a key never stored stores nothing, as in the reference.
    assert ("a", "never-seen") not in rows
