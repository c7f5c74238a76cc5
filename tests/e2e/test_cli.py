"""`pdpp-orch run/status/runs` as an operator uses them, against the real servers."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowExecutionStatus

from pdpp_orch.models import Mode, Trigger
from tests.conftest import Harness, until
from tests.helpers import cli, cli_env, current_details

PDPP_ORCH = (sys.executable, "-m", "pdpp_orch.cli")

OUTCOME_FIELDS = {
    "run_id",
    "connector",
    "trigger",
    "mode",
    "status",
    "needs_retry",
    "reason",
    "records_emitted",
    "records_durable",
    "records_rejected",
    "buffered_records_dropped",
    "state_streams_staged",
    "state_streams_committed",
    "checkpoint_commit_status",
    "skipped_by_reason",
    "gaps_opened",
    "gaps_recovered",
    "gaps_open_total",
    "streams",
    "retry_hints",
    "recovery_workflow_ids",
    "started_at",
    "finished_at",
    "records_missing_estimate",
    "error",
    "cancel_too_late",
    "build_id",
    "sandbox",
    "reported_by_reason",
    "recovery_action",
    "continuations",
}


async def test_run_wait_json_exit_codes_and_status(harness: Harness, pg_url: str) -> None:
    good = harness.scripted([{"records": {"stream": "a", "count": 3}}, {"state": "a"}, {"done": "succeeded"}])
    partial = harness.scripted(
        [{"records": {"stream": "a", "count": 3}}, {"raw": "oops"}, {"done": "succeeded"}]
    )
    failed = harness.scripted([{"exit": 1}])
    async with harness.worker():
        code, out, _ = await cli(harness, pg_url, "run", good, "--wait", "--json")
        assert code == 0
        outcome: dict[str, Any] = json.loads(out)
        assert set(outcome) == OUTCOME_FIELDS
        assert outcome["status"] == "succeeded" and outcome["records_durable"] == 3
        code, out, _ = await cli(harness, pg_url, "run", partial, "--wait", "--json")
        assert code == 3 and json.loads(out)["status"] == "partially_completed"
        # What was quarantined is read without SQL, with its line number and class.
        partial_id = json.loads(out)["run_id"]
        code, out, _ = await cli(harness, pg_url, "quarantine", partial_id)
        assert code == 0 and "invalid_json" in out and " 4 " in out and "oops" in out
        code, out, _ = await cli(harness, pg_url, "status", partial_id)
        assert "1 line(s) quarantined: `pdpp-orch quarantine" in out
        code, out, _ = await cli(harness, pg_url, "run", failed, "--wait", "--json")
        failure = json.loads(out)
        assert code == 1 and failure["status"] == "failed"
        assert failure["error"]["kind"] == "connector_exit_without_done"
        # Temporal says the same: the failed run's workflow ended Failed.
        desc = await harness.client.get_workflow_handle(failure["run_id"]).describe()
        assert desc.status is WorkflowExecutionStatus.FAILED
        # And a person reading `status` is told why and what next.
        code, out, _ = await cli(harness, pg_url, "status", failure["run_id"])
        assert code == 1 and "why: connector_exit_without_done: the connector exited (code 1)" in out
        assert (
            f"next: nothing retries this on its own: fix the cause above, then `pdpp-orch run {failed}`"
            in out
        )

        # `status --json` is the outcome as recorded, and the present beside it as `now`.
        code, out, _ = await cli(harness, pg_url, "status", outcome["run_id"], "--json")
        shown = json.loads(out)
        assert code == 0 and {k: v for k, v in shown.items() if k != "now"} == outcome
        assert (shown["now"]["records_missing_estimate"], shown["now"]["next"]) == (0, ["nothing to do"])
        code, out, _ = await cli(harness, pg_url, "runs", "--connector", good, "--json")
        assert code == 0 and [r["run_id"] for r in json.loads(out)] == [outcome["run_id"]]

        code, out, err = await cli(harness, pg_url, "run", good, "--wait")
        assert code == 0 and "succeeded" in out and "durable" in out

        code, _, err = await cli(harness, pg_url, "run", good, "--stream", "nope")
        assert code == 2 and "has no stream 'nope'" in err
        code, _, err = await cli(harness, pg_url, "run", good, "--since", "yesterday")
        assert code == 2 and "not an ISO time" in err
        code, _, err = await cli(harness, pg_url, "status", "no-such-run")
        assert code == 2 and "no run" in err


async def test_time_range_reaches_the_connector(harness: Harness, pg_url: str) -> None:
    name = harness.scripted([{"done": "succeeded"}])
    async with harness.worker():
        code, _, _ = await cli(
            harness, pg_url, "run", name, "--stream", "a", "--since", "2021-01-01", "--wait"
        )
        assert code == 0
        # As given: half-open, the connector reads the until exclusive; nothing adds a day.
        code, _, _ = await cli(harness, pg_url, "run", name, "--until", "2021-02-01T12:00:00Z", "--wait")
    assert code == 0
    assert [s["scope"] for s in harness.starts(name)] == [
        {"streams": [{"name": "a", "time_range": {"since": "2021-01-01"}}]},
        {"streams": [{"name": n, "time_range": {"until": "2021-02-01T12:00:00Z"}} for n in ("a", "b", "c")]},
    ]


async def test_demo_runs_the_seed_cases_and_says_whether_each_ended_as_designed(
    harness: Harness, pg_url: str, tmp_path: Any
) -> None:
    # A, D and E at the incidents' numbers (B and C, the big ones, run in test_seed_cases.py).
    code, out, err = await cli(
        harness,
        pg_url,
        "demo",
        "--json",
        "--case",
        "A",
        "--case",
        "d",
        "--case",
        "E",
        PDPP_DATA_DIR=str(tmp_path),
    )
    assert code == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["case"] for r in results] == ["A", "D", "E"]
    assert all(r["as_designed"] and not r["problems"] for r in results)
    assert all(set(r["outcome"]) == OUTCOME_FIELDS for r in results)
    by_case = {r["case"]: r["outcome"] for r in results}
    assert by_case["A"]["records_durable"] == 50_396
    assert by_case["E"]["skipped_by_reason"] == {"rate_limited": 4188}
    assert by_case["E"]["retry_hints"][0]["gap_count"] == 4188
    # E's recovery, brought forward, within the demo budget of 2,000 units per window.
    recovery = next(r for r in results if r["case"] == "E")["recovery"]
    assert (recovery["recovered"], recovery["open"], recovery["per_window"]) == (4188, 0, [2000, 2000, 188])
    assert recovery["requests"] == 4188 and recovery["requests_per_gap"] == 1.0
    # A and D's recoveries would wait minutes for a worker that stops with the demo: cancelled.
    for case in ("A", "D"):
        [wid] = by_case[case]["recovery_workflow_ids"]
        desc = await harness.client.get_workflow_handle(wid).describe()
        assert desc.status is not None and desc.status.name in ("CANCELED", "CANCELLED")


async def test_gaps_recover_and_budget_commands(harness: Harness, pg_url: str) -> None:
    gap = {
        "type": "DETAIL_GAP",
        "stream": "a",
        "reason": "rate_limited",
        "retry_after_seconds": 86400,
    }
    name = harness.scripted(
        [
            {"records": {"stream": "a", "count": 5}},
            *({"msg": {**gap, "record_key": f"k{i}"}} for i in range(3)),
            {"state": "a"},
            {"done": "succeeded"},
        ],
        budget={"units": 100, "window": "1h"},
    )
    async with harness.worker():
        code, out, _ = await cli(harness, pg_url, "run", name, "--wait", "--json")
        assert code == 3
        outcome = json.loads(out)
        [wid] = outcome["recovery_workflow_ids"]

        code, out, _ = await cli(harness, pg_url, "gaps", name, "--json")
        rows = json.loads(out)
        assert code == 0 and sorted(r["subject"] for r in rows) == ["k0", "k1", "k2"]
        assert {r["status"] for r in rows} == {"pending"}
        code, out, _ = await cli(harness, pg_url, "gaps", name, "--status", "recovered", "--json")
        assert json.loads(out) == []

        # The recovery waits for the 24 h Retry-After; its state is visible.
        code, out, _ = await cli(harness, pg_url, "recover", name, "--json")
        [rec] = json.loads(out)
        assert (rec["workflow_id"], rec["open"]) == (wid, 3)
        assert rec["state"].startswith("waiting until not_before")

        # The forward run was charged: 5 records + 3 gaps, one unit each.
        code, out, _ = await cli(harness, pg_url, "budget", name, "--json")
        status = json.loads(out)
        assert (status["units"], status["spent"], status["remaining"]) == (100, 8, 92)
        # The web UI shows the same on the budget workflow and the recovery's wait.
        assert "92 of 100 units left" in await current_details(harness, f"budget-{name}")
        assert "3 open" in await current_details(harness, wid)

        code, out, _ = await cli(harness, pg_url, "recover", "cancel", name, "--json")
        assert json.loads(out)[0]["state"] == "cancel requested"
        desc = await harness.client.get_workflow_handle(wid).describe()
        for _ in range(50):
            if desc.status and desc.status.name != "RUNNING":
                break
            await asyncio.sleep(0.1)
            desc = await harness.client.get_workflow_handle(wid).describe()
        assert desc.status is not None and desc.status.name == "CANCELED"

        # Its gaps are still open: `recover --now` starts the hint's recovery again, due now.
        code, out, _ = await cli(harness, pg_url, "recover", name, "--now", "--json")
        [rec] = json.loads(out)
        assert (rec["workflow_id"], rec["state"]) == (wid, "started")
        again = await harness.client.get_workflow_handle(wid).describe()
        assert again.status is not None and again.status.name == "RUNNING" and again.run_id != desc.run_id
        await harness.client.get_workflow_handle(wid).terminate("test over")

        code, out, err = await cli(harness, pg_url, "gaps", "requeue", "gap_nope")
        assert code == 2 and "no gap" in err


async def test_health_says_which_server_does_not_answer(harness: Harness, pg_url: str) -> None:
    code, out, _ = await cli(harness, pg_url, "health")
    assert code == 0 and "ok" in out
    dead = "postgresql://worker:hunter2@127.0.0.1:1/records"
    code, _, err = await cli(harness, dead, "health", "--timeout", "2")
    assert code == 1 and "PostgreSQL" in err and "Temporal" not in err and "hunter2" not in err


async def test_a_configuration_error_is_printed_whole_brackets_included(
    harness: Harness, pg_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "connectors.toml"
    bad.write_text('[connector.gmail]\ncommand = ["true"]\n')  # "connector", not "connectors"
    code, _, err = await cli(harness, pg_url, "run", "gmail", PDPP_CONNECTORS=str(bad))
    assert code == 2
    assert "unknown top-level key 'connector' (expected [connectors.NAME] tables)" in err


async def test_two_requeued_gaps_of_one_connector_both_recover(harness: Harness, pg_url: str) -> None:
    # A forward run leaves two resources it could not fetch, in a class the runtime does not
    # retry on its own (no hint, no recovery); the operator requeues both by hand.
    skip = {"type": "SKIP_RESULT", "stream": "a", "reason": "upstream_refused", "resource_ids": ["x", "y"]}
    name = harness.scripted([{"records": {"stream": "a", "count": 2}}, {"msg": skip}, {"done": "succeeded"}])
    o = await harness.run(name)
    assert (o.status.value, o.needs_retry) == ("partially_completed", False)
    gaps = await harness.store.gaps.find(name)
    assert len(gaps) == 2
    # The upstream has recovered: the connector now fetches everything it is asked for.
    plan = harness.tmp / f"{name}.plan.json"
    plan.write_text(json.dumps([{"records": {"stream": "a", "count": 2}}, {"done": "succeeded"}]))
    async with harness.worker():
        for g in gaps:
            code, out, err = await cli(harness, pg_url, "gaps", "requeue", g.gap_id)
            assert code == 0, err
            assert f"requeued {g.gap_id}" in out

        async def recovered() -> list[str] | None:
            now = await harness.store.gaps.find(name)
            done = [g.recovered_run_id for g in now if g.status == "recovered" and g.recovered_run_id]
            return done if len(done) == 2 else None

        # Each recovery runs the connector once, due at once: seconds, not the back-off of a
        # recovery run refused for a run id already used (5 min).
        run_ids = await until(recovered, "both requeued gaps to be recovered", seconds=60)
    assert len(set(run_ids)) == 2, run_ids
    assert all(r.startswith(f"{name}-recovery-") for r in run_ids)


async def test_migrate_and_records_need_postgresql_only(
    harness: Harness, pg_url: str, tmp_path: Path
) -> None:
    # No Temporal named anywhere: no variable, no profile file, no dev stack in the data dir.
    env = {k: v for k, v in cli_env(harness, pg_url).items() if not k.startswith("TEMPORAL_")}
    env["TEMPORAL_CONFIG_FILE"] = str(tmp_path / "none.toml")

    async def pdpp(database: str, *args: str) -> tuple[int | None, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *PDPP_ORCH, *args, "--data-dir", str(tmp_path),
            env={**env, "PDPP_DATABASE_URL": database}, stdout=-1, stderr=-1,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await pdpp(pg_url, "migrate")
    assert (code, err) == (0, "") and out.startswith("record store schema at v"), (code, out, err)
    code, _, err = await pdpp("", "migrate")
    assert code == 2 and "no PostgreSQL to talk to: set PDPP_DATABASE_URL" in err, err
    # An owner reading their records back needs their database, not the orchestration server.
    name = f"owned{uuid.uuid4().hex[:8]}"
    await harness.store.runs.start(f"{name}-1", name, Trigger.MANUAL, Mode.FORWARD)
    await harness.store.pool.execute(
        "INSERT INTO records (connector, stream, key, data, first_run_id, last_run_id) "
        "VALUES ($1, 'a', 'k1', '{\"n\": 1}', $2, $2)",
        name,
        f"{name}-1",
    )
    code, out, err = await pdpp(pg_url, "records", name, "--format", "jsonl")
    assert code == 0 and '"key":"k1"' in out.replace(" ", ""), (code, out, err)
