"""Interactions (`pdpp-orch respond`) and live progress (the `progress` query), against the real
servers: the answer reaches the connector and nowhere else."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from temporalio.client import WorkflowHandle

from pdpp_orch.cli.progress import watch_run
from pdpp_orch.models import RunOutcome, RunProgress, RunStatus
from tests.conftest import Harness, history_text, outcome_of, until
from tests.helpers import cli, cli_env, current_details
from workflows.connector_run import ConnectorRunWorkflow

SECRET = "907142-marker"
PROMPT = "Enter the code sent to +1 555 0100"
T = TypeVar("T")


def otp(timeout: float | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "INTERACTION", "request_id": "r1", "kind": "otp", "message": PROMPT}
    if timeout is not None:
        msg["timeout_seconds"] = timeout
    return {"msg": msg}


def interactive(h: Harness, tmp: Path, steps: list[dict[str, Any]]) -> tuple[str, Path]:
    log = tmp / "responses.jsonl"
    return h.scripted(steps, env={"SCRIPT_RESPONSE_LOG": str(log)}), log


async def start(h: Harness, name: str) -> WorkflowHandle[Any, RunOutcome]:
    inp = h.run_input(name)
    return await h.client.start_workflow(
        ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=h.task_queue
    )


async def progress(handle: WorkflowHandle[Any, RunOutcome]) -> RunProgress:
    return await handle.query("progress", result_type=RunProgress)


async def waiting_on_owner(handle: WorkflowHandle[Any, RunOutcome]) -> RunProgress:
    """The run's progress once it says it waits on its owner."""

    async def waiting() -> RunProgress | None:
        p = await progress(handle)
        return p if p.waiting else None

    return await until(waiting, "the run to wait on its owner")


async def test_respond_delivers_the_answer_to_the_connector_only(
    harness: Harness, tmp_path: Path, pg_url: str
) -> None:
    name, responses = interactive(
        harness,
        tmp_path,
        [
            {"records": {"stream": "a", "count": 3}},
            otp(),
            {"await_response": True},
            {"records": {"stream": "a", "count": 2}},
            {"state": "a"},
            {"done": "succeeded"},
        ],
    )
    async with harness.worker():
        handle = await start(harness, name)

        p = await waiting_on_owner(handle)
        assert [(w.request_id, w.kind) for w in p.waiting] == [("r1", "otp")]
        # What came before the interaction is durable while the owner is away.
        assert (
            await harness.store.pool.fetchval("SELECT count(*) FROM records WHERE connector = $1", name) == 3
        )
        assert "waiting on the owner" in await current_details(harness, handle.id)
        query = f'PdppRunStatus = "waiting_on_owner" AND PdppConnector = "{name}"'

        async def listed() -> list[str] | None:
            return [w.id async for w in harness.client.list_workflows(query)] or None

        assert await until(listed, "the UI's filter to find the waiting run") == [handle.id]

        code, out, _ = await cli(harness, pg_url, "runs", "--json")
        [row] = [r for r in json.loads(out) if r["run_id"] == handle.id]
        assert row["status"] == "waiting_on_owner"
        assert row["waiting_on"] == [
            {
                "request_id": "r1",
                "kind": "otp",
                "message": PROMPT,
                "expires_at": row["waiting_on"][0]["expires_at"],
            }
        ]

        page = tmp_path / "report.html"
        code, out, _ = await cli(harness, pg_url, "report", name, "--json", "--html", str(page))
        [report] = json.loads(out)
        assert report["missing_anything"] and report["waiting_on_owner"] == 1
        assert [(a["run_id"], a["kind"]) for a in report["asks"]] == [(handle.id, "otp")]
        assert f"pdpp-orch respond {handle.id}" in page.read_text()

        code, out, err = await cli(
            harness, pg_url, "respond", handle.id, "--data", "-", stdin=json.dumps({"code": SECRET}).encode()
        )
        assert code == 0, err
        assert "delivered to the connector" in out and SECRET not in out + err
        o = await handle.result()

    assert o.status is RunStatus.SUCCEEDED and o.records_durable == 5 and o.gaps_opened == 0
    [answer] = [json.loads(x) for x in responses.read_text().splitlines()]
    assert answer == {
        "type": "INTERACTION_RESPONSE",
        "request_id": "r1",
        "status": "success",
        "data": {"code": SECRET},
        "value": SECRET,  # a single string, where the reference's connectors also look for a code
    }
    # Neither the answer nor the prompt is in Temporal history; the answer is gone from PostgreSQL.
    history = history_text(await handle.fetch_history())
    assert "r1" in history and SECRET not in history and "555 0100" not in history
    row = await harness.store.pool.fetchrow(
        "SELECT status, response, response_status FROM interactions WHERE run_id = $1", handle.id
    )
    assert (row["status"], row["response"]) == ("success", None)


async def test_every_record_before_an_interaction_is_durable_when_the_run_says_it_waits(
    harness: Harness, tmp_path: Path
) -> None:
    """The owner may take hours: what the connector sent before asking must already be in
    PostgreSQL when the run is seen waiting, not still on its way (enough records that writing
    them takes longer than the workflow needs to say it waits)."""
    name, _ = interactive(
        harness,
        tmp_path,
        [
            {"records": {"stream": "a", "count": 60_000}},
            otp(),
            {"await_response": True},
            {"done": "succeeded"},
        ],
    )
    async with harness.worker():
        handle = await start(harness, name)

        await waiting_on_owner(handle)
        held = await harness.store.pool.fetchval("SELECT count(*) FROM records WHERE connector = $1", name)
        await handle.cancel()
    assert held == 60_000


async def test_unanswered_interaction_times_out_into_an_owner_action_gap(
    harness: Harness, tmp_path: Path
) -> None:
    name, responses = interactive(
        harness,
        tmp_path,
        [
            {"records": {"stream": "a", "count": 1}},
            otp(timeout=1),
            {"await_response": True},
            {"state": "a"},
            {"done": "succeeded"},
        ],
    )
    o = await harness.run(name)
    answer = json.loads(responses.read_text())
    assert (answer["status"], answer["error"]["code"]) == ("timeout", "timeout")
    assert "data" not in answer and "within 1 s" in answer["error"]["message"]
    assert o.status is RunStatus.PARTIALLY_COMPLETED and not o.needs_retry
    assert o.skipped_by_reason == {"interaction_otp": 1}
    [gap] = await harness.store.gaps.find(name)
    assert (gap.kind, gap.recovery_class) == ("interaction", "owner_action")


async def test_respond_to_a_run_that_does_not_wait_is_a_clear_error(harness: Harness, pg_url: str) -> None:
    name = harness.scripted([{"records": {"stream": "a", "count": 1}}, {"sleep": 30}, {"done": "succeeded"}])
    async with harness.worker():
        handle = await start(harness, name)
        await until(lambda: harness.store.runs.get(handle.id), "the run to start")
        code, _, err = await cli(harness, pg_url, "respond", handle.id, "--data", '{"code": "1"}')
        assert code == 2 and "is not waiting on its owner" in err
        code, _, err = await cli(harness, pg_url, "respond", handle.id, "--data", "{not json")
        assert code == 2 and "not valid JSON" in err and "not json" not in err
        await handle.cancel()
        assert (await outcome_of(harness.store, handle)).status is RunStatus.CANCELLED


async def test_progress_query_and_ui_details_follow_a_running_collect(harness: Harness) -> None:
    name = harness.scripted(
        [
            {"msg": {"type": "PROGRESS", "stream": "a", "message": "listing", "total": 250}},
            {"records": {"stream": "a", "count": 120}},
            {"state": "a"},
            {"sleep": 4},
            {"records": {"stream": "a", "count": 130}},
            {"state": "a"},
            {"done": "succeeded"},
        ]
    )
    async with harness.worker():
        handle = await start(harness, name)

        async def live() -> RunProgress | None:
            p = await progress(handle)
            return p if p.live.records_durable else None

        p = await until(live, "a progress signal")
        assert p.phase == "collecting" and p.live.records_durable == 120
        a = p.live.streams["a"]
        assert (a.collected, a.total, a.checkpointed) == (120, 250, True)
        details = await current_details(harness, handle.id)
        assert "records durable: 120 of 120 emitted" in details and "120 of ~250" in details
        o = await handle.result()
        done = await progress(handle)
    assert o.records_durable == 250
    assert (done.phase, done.status, done.live.records_durable) == ("done", "succeeded", 250)


async def test_watch_renders_the_progress_query_as_bars_or_plain_lines(harness: Harness, pg_url: str) -> None:
    release = harness.tmp / "release"
    steps = [
        {"msg": {"type": "PROGRESS", "stream": "a", "message": "listing", "total": 90}},
        {"records": {"stream": "a", "count": 40}},
        {"state": "a"},
        {"wait_for": str(release)},
        {"records": {"stream": "a", "count": 50}},
        {"state": "a"},
        {"done": "succeeded"},
    ]
    async with harness.worker():
        # Off a terminal: plain lines from the query, then the outcome. The connector holds at
        # 40 records until `watch` has printed them, however long the command takes to start.
        handle = await start(harness, harness.scripted(steps))
        watch = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pdpp_orch.cli", "watch", handle.id,
            env=cli_env(harness, pg_url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert watch.stderr is not None and watch.stdout is not None
        line = b""
        async with asyncio.timeout(60):
            while b"40 durable of 40 emitted" not in line:
                line = await watch.stderr.readline()
                assert line, "watch ended before it showed the 40 records"
        assert (
            f"{handle.id}: collecting · 40 durable of 40 emitted" in line.decode()
            and "a 40/90" in line.decode()
        )
        release.touch()
        async with asyncio.timeout(60):
            out = (await watch.stdout.read()).decode()
            assert await watch.wait() == 0 and "succeeded" in out

        # On a terminal: a bar per stream, with the connector's estimate as its total.
        release.unlink()
        handle = await start(harness, harness.scripted(steps))
        screen = io.StringIO()
        console = Console(file=screen, force_terminal=True, width=200)
        watching = asyncio.create_task(watch_run(handle, handle.id, console, quiet=False))

        async def forty() -> bool:
            return "40 of ~90 ✓" in screen.getvalue()

        await until(forty, "a bar at 40 of ~90")
        release.touch()
        outcome = await watching
    assert outcome.records_durable == 90
    frames = screen.getvalue()
    assert "━" in frames and f"{handle.id} · collecting" in frames
