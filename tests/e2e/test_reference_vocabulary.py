"""The reference's vocabulary, end to end (issue 22): its reason codes, runtime continuations,
DONE.error.recovery_hint, record admission, a recovery's other streams, the connector's
environment and a cancel after the end. The connectors are scripted to say each message as the
reference's SDK says it (tests/connectors/scripted.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from activities.environment import connector_home
from pdpp_orch import advice
from pdpp_orch.models import Mode, RunInput, RunOutcome, RunStatus, StreamScope, TimeRange, Trigger
from tests.conftest import CONNECTORS, Harness, history_text, outcome_of
from tests.e2e.test_runs import committed, records
from tests.helpers import cli
from workflows.connector_run import ConnectorRunWorkflow

DONE = {"done": "succeeded"}
NOW = datetime(2026, 12, 4, tzinfo=UTC)


async def run(h: Harness, inp: RunInput) -> RunOutcome:
    """Run `inp` to its outcome (harness.run, for an input of one's own)."""
    async with h.worker():
        handle = await h.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=h.task_queue
        )
        return await outcome_of(h.store, handle)


def skip(stream: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"msg": {"type": "SKIP_RESULT", "stream": stream, "reason": reason, "message": reason, **extra}}


def record(key: str, emitted_at: str | None = "2026-12-04T00:00:00Z", **data: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "RECORD", "stream": "a", "key": key, "data": {"id": key, **data}}
    if emitted_at is not None:
        msg["emitted_at"] = emitted_at
    return {"msg": msg}


async def test_the_reference_reason_codes_are_classed_as_the_reference_classes_them(harness: Harness) -> None:
    # Informational skips and the SDK's shape report, no `[reasons]` mapping: a clean run.
    quiet = harness.scripted(
        [
            {"records": {"stream": "a", "count": 2}},
            skip("a", "shape_check_unmodeled_value", diagnostics={"retained": True}),
            skip("b", "not_available_in_mode"),
            skip("c", "user_disabled"),
            DONE,
        ]
    )
    o = await harness.run(quiet)
    assert o.status is RunStatus.SUCCEEDED and o.reason is None and not o.needs_retry
    assert o.skipped_by_reason == {"not_available_in_mode": 1, "user_disabled": 1}
    assert o.reported_by_reason == {"shape_check_unmodeled_value": 1} and o.gaps_opened == 0
    # A transient code is retried by the runtime with back-off; an owner's is the owner's.
    loud = harness.scripted([skip("a", "temporary_unavailable"), skip("b", "auth_failure"), DONE])
    o = await harness.run(loud, recover=False)
    assert o.status is RunStatus.FAILED and o.needs_retry
    assert [(h.reason, h.recovery_class) for h in o.retry_hints] == [("temporary_unavailable", "transient")]
    gaps = {g.reason: g.recovery_class for g in await harness.store.gaps.find(loud)}
    assert gaps == {"temporary_unavailable": "transient", "auth_failure": "owner_action"}


CONTINUATION = {
    "boundary": "626146523",
    "considered": 1000,
    "covered": 1000,
    "owner": "runtime",
    "remaining": True,
    "slice_start": 1,
    "slice_end": 1000,
}


def backfill_page(continuation: dict[str, Any]) -> list[dict[str, Any]]:
    """Gmail's historical backfill: a bounded page, its continuation, the cursor that carries it."""
    return [
        {"records": {"stream": "a", "count": 3}},
        skip(
            "a",
            "historical_backfill_pending",
            continuation=continuation,
            recovery_hint={"action": "retry_by_runtime", "retryable": True},
        ),
        {"state": "a"},
        DONE,
    ]


async def test_a_runtime_continuation_is_planned_work(harness: Harness, pg_url: str) -> None:
    name = harness.scripted(backfill_page(CONTINUATION))
    o = await harness.run(name, ["a"])
    assert o.status is RunStatus.SUCCEEDED and not o.needs_retry and o.reason is None
    assert (o.gaps_opened, o.skipped_by_reason, o.recovery_workflow_ids) == (0, {}, [])
    assert [(s.stream, s.continues, s.coverage) for s in o.streams] == [("a", True, "complete")]
    assert await harness.store.gaps.find(name) == []
    line = "historical backfill continues next run: a 1..1000 of 626146523 done (1,000 of 1,000)"
    assert advice.next_steps(o, NOW) == [line]
    # What it says is the connector's: PostgreSQL has it, Temporal history only the flag.
    handle = harness.client.get_workflow_handle(o.run_id)
    assert "626146523" not in history_text(await handle.fetch_history())
    code, out, _ = await cli(harness, pg_url, "status", o.run_id)
    assert code == 0 and line in " ".join(out.split())
    # The next forward run continues it: its START carries the cursor the page committed.
    await harness.run(name, ["a"])
    assert harness.starts(name)[1]["state"] == {"a": {"offset": 3}}
    assert await committed(harness, name) == {"a": {"offset": 6}}

    invalid = harness.scripted(backfill_page({**CONTINUATION, "owner": "connector"}))
    o = await harness.run(invalid, ["a"])
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "connector_protocol_violation"
    assert [q.kind for q in await harness.store.runs.quarantined(o.run_id)] == ["invalid_continuation"]


def failing(error: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"done": "failed", "error": {"message": "the session expired", "retryable": False, **error}}]


async def test_done_error_recovery_hint_opens_a_gap_of_its_class(harness: Harness) -> None:
    owner = harness.scripted(failing({"code": "session_expired", "recovery_hint": "refresh_credentials"}))
    o = await harness.run(owner)
    assert o.status is RunStatus.FAILED and not o.needs_retry and o.recovery_action == "refresh_credentials"
    [gap] = await harness.store.gaps.find(owner)
    assert (gap.kind, gap.reason, gap.recovery_class, gap.status) == (
        "run",
        "session_expired",
        "owner_action",
        "pending",
    )
    assert "fresh credentials" in advice.next_steps(o, NOW)[0]
    # Once the owner fixed it, the next run that goes to its end closes the gap.
    (harness.tmp / f"{owner}.plan.json").write_text(json.dumps([DONE]))
    assert (await harness.run(owner)).status is RunStatus.SUCCEEDED
    assert [g.status for g in await harness.store.gaps.find(owner)] == ["recovered"]

    retry = harness.scripted(failing({"recovery_hint": {"action": "retry_by_runtime"}}))
    o = await harness.run(retry, recover=False)
    assert o.needs_retry and [(h.reason, h.recovery_class) for h in o.retry_hints] == [
        ("connector_reported_failed", "transient")
    ]
    bad = harness.scripted(failing({"recovery_hint": {"action": "reboot"}}))
    o = await harness.run(bad)
    assert o.reason == "connector_protocol_violation" and o.recovery_action is None
    assert [q.kind for q in await harness.store.runs.quarantined(o.run_id)] == ["invalid_recovery_hint"]


async def test_records_and_messages_are_admitted_as_the_reference_admits_them(harness: Harness) -> None:
    log = harness.tmp / "responses.jsonl"
    name = harness.scripted(
        [
            record("in", date="2026-01-15T10:00:00Z"),
            record("before", date="2025-12-31T23:00:00Z"),  # outside the time range
            record("undated"),  # no consent time field: refused
            record("", date="2026-01-15"),  # empty key
            record("no-time", emitted_at=None, date="2026-01-15"),
            {"msg": {"type": "PROGRESS", "message": "reading", "count": -1}},
            {"msg": {"type": "PROGRESS", "message": "pacing", "provider_budget": {"object": "x"}}},
            {"msg": {"type": "INTERACTION", "request_id": "r1", "kind": "captcha", "message": "solve"}},
            {"await_response": True},  # answered at once (refused), not left waiting
            skip("a", "not_available_in_mode", diagnostics=["any", "json"]),  # accepted, as there
            {"msg": {"type": "RECORD", "stream": "a", "key": "ghost", "op": "delete", "emitted_at": "x"}},
            DONE,
        ],
        manifest=CONNECTORS / "dated.json",
        env={"SCRIPT_RESPONSE_LOG": str(log)},
    )
    inp = harness.run_input(name)
    inp.streams = [StreamScope(name="a", time_range=TimeRange(since="2026-01-01", until="2026-01-31"))]
    o = await run(harness, inp)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "connector_protocol_violation"
    kinds = [q.kind for q in await harness.store.runs.quarantined(o.run_id)]
    assert kinds == ["out_of_time_range", "out_of_time_range", *["schema_invalid"] * 5]
    assert (o.records_emitted, o.records_durable, o.records_rejected) == (6, 2, 4)
    # The delete of a key never stored stores nothing.
    assert [r["key"] for r in await records(harness, name)] == ["in"]
    [answer] = [json.loads(x) for x in log.read_text().splitlines()]
    assert (answer["request_id"], answer["status"]) == ("r1", "cancelled")


async def test_a_recovery_keeps_the_records_of_streams_it_did_not_ask_for(harness: Harness) -> None:
    # The reference SDK does not filter by START.scope; the reference's recoveries ask for every
    # stream. A recovery here asks for one: the others' records are kept, and no violation.
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 2}},
            {"records": {"stream": "b", "count": 3}},
            {"state": "b"},
            skip("b", "rate_limited"),
            {"state": "a"},
            DONE,
        ]
    )
    o = await run(harness, harness.run_input(name, ["a"], trigger=Trigger.RECOVERY, mode=Mode.RECOVERY))
    assert o.status is RunStatus.SUCCEEDED and o.records_durable == 5 and o.gaps_opened == 0
    assert len(await records(harness, name, "b")) == 3
    # Its cursors and misses are the forward runs' to act on: a scoped recovery commits no
    # cursor, not even of the stream it asked for (its STATEs are resume points only).
    assert await committed(harness, name) == {}


async def test_a_connector_has_its_run_keys_and_a_home_that_survives_runs(harness: Harness) -> None:
    notes = harness.tmp / "home.jsonl"
    name = harness.scripted([{"home_note": str(notes)}, DONE])
    await harness.run(name)
    await harness.run(name)
    first, second = [json.loads(x) for x in notes.read_text().splitlines()]
    assert first["home"] == second["home"] == str(connector_home(harness.data_dir, name))
    assert (first["seen"], second["seen"]) == (False, True)


async def test_cancel_of_a_run_that_had_ended_says_how_and_fails(harness: Harness, pg_url: str) -> None:
    name = harness.scripted([DONE])
    o = await harness.run(name)
    code, out, err = await cli(harness, pg_url, "cancel", o.run_id)
    assert code == 2 and "cancellation" not in out
    assert f"run {o.run_id} had already ended: succeeded" in " ".join(err.split())
