"""The owner's right to erase (issue 26 item 5): `pdpp-orch erase` removes a key's, a stream's or
a connector's personal data from every place it can sit, says what it removed and what remains,
and refuses without --yes and while a run of the connector is going."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pdpp_orch.models import RunStatus
from tests.conftest import Harness, until
from tests.helpers import cli
from workflows.connector_run import ConnectorRunWorkflow

WHO = "alice@example.com"  # the owner's personal data, wherever the connector puts it
NOTICE = {"owner_action": "act_elsewhere", "progress_posture": "running", "response_contract": "none"}
# Every place personal data can sit, as text.
PLACES = {
    "records": "SELECT row_to_json(t)::text FROM records t WHERE connector = $1",
    "gaps": "SELECT row_to_json(t)::text FROM gaps t WHERE connector = $1",
    "quarantine": "SELECT row_to_json(q)::text FROM quarantine q JOIN runs r USING (run_id) "
    "WHERE r.connector = $1",
    "runs": "SELECT row_to_json(t)::text FROM runs t WHERE connector = $1",
    "spine_events": "SELECT row_to_json(t)::text FROM spine_events t WHERE connector = $1",
    "interactions": "SELECT row_to_json(t)::text FROM interactions t WHERE connector = $1",
    "assistance": "SELECT row_to_json(t)::text FROM assistance t WHERE connector = $1",
    "stream_state": "SELECT row_to_json(t)::text FROM stream_state t WHERE connector = $1",
    "run_checkpoints": "SELECT row_to_json(c)::text FROM run_checkpoints c JOIN runs r USING (run_id) "
    "WHERE r.connector = $1",
    "connector_stderr": "SELECT row_to_json(e)::text FROM connector_stderr e JOIN runs r USING (run_id) "
    "WHERE r.connector = $1",
}  # fmt: skip


def record(key: str, stream: str = "a") -> dict[str, Any]:
    return {"msg": {"type": "RECORD", "stream": stream, "key": key, "data": {"id": key, "owner": WHO}}}


def personal_plan(wait_for: str | None = None) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"stderr": f"fetching the mail of {WHO}"},
        *(record(f"a-{i}") for i in range(3)),
        *(record(f"b-{i}", "b") for i in range(2)),
        {"msg": {"type": "STATE", "stream": "a", "cursor": {"after": WHO}}},
        {"msg": {"type": "STATE", "stream": "b", "cursor": {"after": WHO}}},
        {"raw": f'{{"type": "RECORD", "stream": "a", "data": {{"owner": "{WHO}"'},
        {"msg": {"type": "DETAIL_GAP", "stream": "a", "record_key": "a-1", "last_error": f"403 for {WHO}"}},
        {"msg": {"type": "ASSISTANCE", "message": f"approve the sign-in of {WHO}", **NOTICE}},
        {"msg": {"type": "INTERACTION", "request_id": "r1", "kind": "otp", "message": f"code for {WHO}",
                 "timeout_seconds": 0.2}},
        {"await_response": True},
    ]  # fmt: skip
    if wait_for:
        steps.append({"wait_for": wait_for})
    return [*steps, {"done": "failed", "error": {"code": "partial", "message": f"gave up on {WHO}"}}]


async def where(harness: Harness, name: str) -> dict[str, int]:
    """How many rows of each place hold the owner's data."""
    pool = harness.store.pool
    return {
        place: sum(WHO in (row[0] or "") for row in await pool.fetch(sql, name))
        for place, sql in PLACES.items()
    }


async def test_erase_removes_a_key_then_everything_and_says_what_remains(
    harness: Harness, pg_url: str
) -> None:
    env = {"SCRIPT_RESPONSE_LOG": str(harness.tmp / "responses.jsonl")}
    name = harness.scripted(personal_plan(), env=env)
    o = await harness.run(name)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.records_durable == 5
    before = await where(harness, name)
    # (The outcome's error is ours, a protocol violation, so the spine quotes nothing here.)
    assert all(n for place, n in before.items() if place != "spine_events"), before

    code, _, err = await cli(harness, pg_url, "erase", name, "--stream", "a", "--key", "a-1")
    assert code == 2 and "--yes" in err and await where(harness, name) == before  # refused

    code, out, err = await cli(harness, pg_url, "erase", name, "--stream", "a", "--key", "a-1", "--yes")
    assert code == 0, err
    assert "records" in out and "remains: 1 run outcome(s)" in out and "no personal data by design" in out
    keys = {
        r["key"] for r in await harness.store.pool.fetch("SELECT key FROM records WHERE connector = $1", name)
    }
    assert keys == {"a-0", "a-2", "b-0", "b-1"}  # the key, and nothing else of its stream's
    sql = "SELECT count(*) FROM gaps WHERE connector = $1 AND subject = 'a-1'"
    gaps = await harness.store.pool.fetchval(sql, name)
    after_key = await where(harness, name)
    # What the connector said cannot be told apart by key: it went with the key's data.
    assert gaps == 0 and all(
        after_key[p] == 0 for p in ("quarantine", "runs", "interactions", "assistance", "connector_stderr")
    )
    assert after_key["records"] == 4 and after_key["stream_state"] == 2  # cursors stay without --state

    code, out, err = await cli(harness, pg_url, "erase", name, "--state", "--yes", "--json")
    assert code == 0, err
    done = json.loads(out)
    assert done["erased"]["records"] == 4 and done["erased"]["stream_state"] == 2
    assert (
        done["remains"]["runs"] == 1 and done["remains"]["run_ids"] == [o.run_id] and done["histories"] == 1
    )
    assert await where(harness, name) == dict.fromkeys(PLACES, 0)
    row = await harness.store.runs.get(o.run_id)
    assert row is not None and row.outcome is not None and row.outcome.records_durable == 5  # counts stay


async def test_erase_is_refused_while_a_run_of_the_connector_is_going(harness: Harness, pg_url: str) -> None:
    go = harness.tmp / "go"
    env = {"SCRIPT_RESPONSE_LOG": str(harness.tmp / "responses.jsonl")}
    name = harness.scripted(personal_plan(wait_for=str(go)), env=env)
    inp = harness.run_input(name)
    async with harness.worker():
        handle = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )

        async def has_state() -> bool:
            n = await harness.store.pool.fetchval(
                "SELECT count(*) FROM run_checkpoints WHERE run_id = $1", inp.run_id
            )
            return bool(n)

        await until(has_state, "the run's checkpoints")
        code, _, err = await cli(harness, pg_url, "erase", name, "--yes")
        go.touch()
        await asyncio.wait_for(handle.result(), 30)
    assert code == 2 and f"run {inp.run_id}" in err and "nothing was erased" in err
    assert (await where(harness, name))["records"] == 5
