"""The operator's commands against the dev server: schedules, watch, cancel, one run at a time."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import Payload

from pdpp_orch.codec import Keyring, data_converter, new_key_entry
from pdpp_orch.models import RunInput, Trigger
from tests.conftest import Harness
from tests.helpers import cli

SLOW = [{"records": {"stream": "a", "count": 20}}, {"state": "a"}, {"sleep": 30}, {"done": "succeeded"}]
QUICK = [{"records": {"stream": "a", "count": 3}}, {"state": "a"}, {"done": "succeeded"}]


async def started(h: Harness, run_id: str) -> None:
    """Wait until the run's connector is collecting (its row shows durable records)."""
    for _ in range(200):
        n = await h.store.pool.fetchval("SELECT records_durable FROM runs WHERE run_id = $1", run_id)
        if n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never started collecting")


async def test_cancel_watch_and_one_run_at_a_time(harness: Harness, pg_url: str) -> None:
    slow = harness.scripted(SLOW)
    async with harness.worker():
        code, out, _ = await cli(harness, pg_url, "run", slow, "--json")
        assert code == 0
        run_id = json.loads(out)["run_id"]
        await started(harness, run_id)
        # A second run of the same connector while one is going: a clear refusal, no duplicate.
        code, _, err = await cli(harness, pg_url, "run", slow)
        assert code == 2 and f"has a run in progress: {run_id}" in err
        code, out, err = await cli(harness, pg_url, "cancel", run_id, "--wait", "--json")
        outcome = json.loads(out)
        assert code == 1 and outcome["status"] == "cancelled" and outcome["records_durable"] == 20
        assert outcome["state_streams_committed"] == 0
        # Once it is over, the next run may start; `watch` follows it to its outcome.
        quick = harness.scripted(QUICK)
        code, out, _ = await cli(harness, pg_url, "run", quick, "--json")
        code, out, _ = await cli(harness, pg_url, "watch", json.loads(out)["run_id"], "--json")
        assert code == 0 and json.loads(out)["status"] == "succeeded"
        code, _, err = await cli(harness, pg_url, "watch", "no-such-run")
        assert code == 2 and "no run" in err


async def test_schedule_lifecycle_and_skipped_overlap(harness: Harness, pg_url: str) -> None:
    name = harness.scripted(SLOW)
    async with harness.worker():
        code, out, err = await cli(harness, pg_url, "schedule", "create", name, "--every", "1h", "--paused")
        assert code == 0, err
        code, out, _ = await cli(harness, pg_url, "schedule", "describe", name, "--json")
        d = json.loads(out)
        assert (d["schedule_id"], d["every"], d["overlap"], d["paused"]) == (
            f"sync-{name}",
            "1h",  # as typed
            "skip",
            True,
        )
        # Creating it again is a clear refusal, not a traceback.
        code, _, err = await cli(harness, pg_url, "schedule", "create", name, "--every", "1h")
        assert code == 2 and "has a schedule already" in err and "Traceback" not in err

        # Triggered twice while the first run is still going: the second is skipped, visibly.
        assert (await cli(harness, pg_url, "schedule", "trigger", name))[0] == 0
        for _ in range(100):
            d = json.loads((await cli(harness, pg_url, "schedule", "describe", name, "--json"))[1])
            if d["running"]:
                break
            await asyncio.sleep(0.1)
        [run_id] = d["running"]
        assert run_id.startswith(f"sync-{name}-")
        await started(harness, run_id)
        assert (await cli(harness, pg_url, "schedule", "trigger", name))[0] == 0
        for _ in range(100):
            d = json.loads((await cli(harness, pg_url, "schedule", "describe", name, "--json"))[1])
            if d["skipped_overlaps"]:
                break
            await asyncio.sleep(0.1)
        assert d["skipped_overlaps"] == 1 and d["runs"] == 1
        row = await harness.store.runs.get(run_id)
        assert row is not None and row.trigger == "scheduled"
        await harness.client.get_workflow_handle(run_id).cancel()

        assert (await cli(harness, pg_url, "schedule", "unpause", name))[0] == 0
        assert (
            await cli(
                harness,
                pg_url,
                "schedule",
                "update",
                name,
                "--cron",
                "0 */6 * * *",
                "--overlap",
                "buffer_one",
            )
        )[0] == 0
        d = json.loads((await cli(harness, pg_url, "schedule", "describe", name, "--json"))[1])
        assert (d["cron"], d["every"], d["overlap"], d["paused"]) == (
            "0 */6 * * *",
            None,
            "buffer_one",
            False,
        )
        code, out, _ = await cli(harness, pg_url, "schedule", "list", "--json")
        assert f"sync-{name}" in [x["schedule_id"] for x in json.loads(out)]
        assert (await cli(harness, pg_url, "schedule", "delete", name))[0] == 0
        code, _, err = await cli(harness, pg_url, "schedule", "describe", name)
        assert code == 2 and "no schedule" in err
        code, _, err = await cli(
            harness, pg_url, "schedule", "create", name, "--every", "1h", "--cron", "* * * * *"
        )
        assert code == 2 and "exactly one" in err


async def test_report_answers_am_i_missing_anything(harness: Harness, pg_url: str, tmp_path: Any) -> None:
    gap = {"type": "DETAIL_GAP", "stream": "a", "reason": "rate_limited", "retry_after_seconds": 3600}
    missing = harness.scripted(
        [
            {"records": {"stream": "a", "count": 5}},
            *({"msg": {**gap, "record_key": f"k{i}"}} for i in range(3)),
            {"records": {"stream": "b", "count": 2}},
            {
                "msg": {
                    "type": "SKIP_RESULT",
                    "stream": "b",
                    "reason": "credentials_expired",
                    "recovery_hint": "refresh_credentials",
                }
            },
            {"state": "a"},
            {"state": "b"},
            {"done": "succeeded"},
        ]
    )
    clean = harness.scripted(QUICK)
    await harness.run(missing, recover=False)
    await harness.run(clean)
    page = tmp_path / "report.html"
    code, out, err = await cli(harness, pg_url, "report", missing, "--json", "--html", str(page))
    assert code == 0, err
    [r] = json.loads(out)
    assert r["missing_anything"] and r["waiting_on_owner"] == 1 and r["next_retry_cost"] == 3
    streams = {s["stream"]: s for s in r["streams"]}
    a, b = streams["a"], streams["b"]
    assert (a["records_held"], a["coverage"], a["checkpoint_bytes"] is not None) == (5, "partial", True)
    [g] = a["gaps"]
    assert (g["reason"], g["recovery_class"], g["open"], g["estimated_cost"]) == (
        "rate_limited",
        "provider_pressure",
        3,
        3,
    )
    assert b["waiting_on_owner"] == 1 and b["gaps"][0]["estimated_cost"] is None
    assert [p["records_durable"] for p in r["recent_runs"]] == [7]
    text = page.read_text()
    assert missing in text and "waiting on you" in text and "<svg" in text
    assert "src=" not in text and "href=" not in text  # self-contained: nothing fetched

    code, out, _ = await cli(harness, pg_url, "report", clean, "--json")
    [c] = json.loads(out)
    assert not c["missing_anything"] and c["next_retry"] is None
    code, out, _ = await cli(harness, pg_url, "report", clean)
    assert code == 0 and "none known missing" in out
    code, _, err = await cli(harness, pg_url, "report", "never-ran")
    assert code == 2 and "unknown connector 'never-ran'" in err


async def test_a_scheduled_run_waits_for_the_manual_run_of_its_connector(harness: Harness) -> None:
    from pdpp_orch.models import RunProgress, RunStatus, Trigger
    from tests.helpers import current_details
    from workflows.connector_run import ConnectorRunWorkflow

    name = harness.scripted([{"records": {"stream": "a", "count": 20}}, {"state": "a"}, {"sleep": 3},
                             {"done": "succeeded"}])  # fmt: skip
    async with harness.worker():
        manual = harness.run_input(name)
        first = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, manual, id=manual.run_id, task_queue=harness.task_queue
        )
        await started(harness, manual.run_id)
        # What a Schedule starts: same connector, no CLI in between to refuse it.
        scheduled = harness.run_input(name, trigger=Trigger.SCHEDULED)
        second = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, scheduled, id=scheduled.run_id, task_queue=harness.task_queue
        )
        for _ in range(100):
            p = await second.query("progress", result_type=RunProgress)
            if p.phase.startswith("waiting for run"):
                break
            await asyncio.sleep(0.1)
        assert p.phase == f"waiting for run {manual.run_id}"
        assert f"waiting** for run `{manual.run_id}`" in await current_details(harness, second.id)
        # Nothing of the second run touched the connector while the first was going.
        assert len(harness.starts(name)) == 1
        o1 = await first.result()
        o2 = await second.result()
    assert o1.status is RunStatus.SUCCEEDED and o2.status is RunStatus.SUCCEEDED
    row = await harness.store.runs.get(o2.run_id)
    assert row is not None and row.started_at >= o1.finished_at - timedelta(seconds=1)
    assert len(harness.starts(name)) == 2
    # An operator who asks for it gets two at once.
    both = [harness.run_input(name, allow_concurrent=True) for _ in range(2)]
    async with harness.worker():
        handles = [
            await harness.client.start_workflow(
                ConnectorRunWorkflow.run, i, id=i.run_id, task_queue=harness.task_queue
            )
            for i in both
        ]
        for h in handles:
            await started(harness, h.id)
        await asyncio.gather(*(h.result() for h in handles))


async def test_schedule_update_rekey_moves_the_stored_input_to_the_first_key(
    harness: Harness, pg_url: str
) -> None:
    name = harness.scripted(QUICK)
    old, new, other = (new_key_entry(k) for k in ("k-old", "k-new", "k-other"))
    handle = harness.client.get_schedule_handle(f"sync-{name}")

    async def stored() -> Payload:
        [p] = (await handle.describe()).schedule.action.args  # type: ignore[attr-defined]
        assert isinstance(p, Payload)
        return p

    code, _, err = await cli(
        harness, pg_url, "schedule", "create", name, "--every", "1h", "--paused", PDPP_ENCRYPTION_KEYS=old
    )
    assert code == 0, err
    assert (await stored()).metadata["encryption-key-id"] == b"k-old"
    # Rotated: the new key first, the old one still there to decrypt with.
    code, _, err = await cli(
        harness, pg_url, "schedule", "update", name, "--rekey", PDPP_ENCRYPTION_KEYS=f"{new},{old}"
    )
    assert code == 0, err
    p = await stored()
    assert p.metadata["encryption-key-id"] == b"k-new"
    [inp] = await data_converter(Keyring.parse([new], "test")).decode([p], [RunInput])
    assert (inp.connector, inp.trigger) == (name, Trigger.SCHEDULED)
    # A keyring without the key it is under: a clear refusal, and the schedule is left as it was.
    code, _, err = await cli(
        harness, pg_url, "schedule", "update", name, "--rekey", PDPP_ENCRYPTION_KEYS=other
    )
    assert code == 2 and "'k-new', which is not configured" in err and "keep the old key" in err
    assert (await stored()).metadata["encryption-key-id"] == b"k-new"
    await handle.delete()


async def test_a_finished_runs_progress_agrees_with_its_outcome(harness: Harness) -> None:
    """`watch` of a run that has ended prints its `progress` query: the checkpoints and each
    stream's count are the outcome's, not those of the last live report (0 checkpoints, a
    stream's first batch) just before the outcome's own lines."""
    from pdpp_orch.models import RunOutcome, RunProgress
    from workflows.connector_run import ConnectorRunWorkflow

    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 5}},
            {"state": "a"},
            {"records": {"stream": "b", "count": 3}},
            {"state": "b"},
            {"done": "succeeded"},
        ]
    )
    inp = harness.run_input(name)
    async with harness.worker():
        handle = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )
        outcome: RunOutcome = await asyncio.wait_for(handle.result(), 30)
        p = await handle.query("progress", result_type=RunProgress)
    assert (p.phase, outcome.state_streams_committed) == ("done", 2)
    assert p.live.checkpoints == 2
    assert {n: s.collected for n, s in p.live.streams.items()} == {"a": 5, "b": 3}
