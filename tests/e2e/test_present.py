"""Time passes: every fate of a retry hint, and every surface before and after it.

A run leaves gaps; then its recovery waits (for not_before, for the budget), runs, recovers them
all or some, is cancelled (by an operator, by the demo) and started again, or a later run
supersedes it. Before and after each fate, `status` (text and --json), `runs`, `gaps`, `report`
(text, --json, HTML) and the web UI's details are read as a user reads them — the commands'
own functions, in-process, against the time-skipping server and a real PostgreSQL — and every
command they print for it is run (`pdpp-orch …` as a subprocess) to see that it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from pdpp_orch import demo
from pdpp_orch.cli import gaps as gaps_cli
from pdpp_orch.cli import report as report_cli
from pdpp_orch.cli import runs as runs_cli
from pdpp_orch.models import RecoveryStep, RunOutcome, RunStatus
from pdpp_orch.settings import Settings
from pdpp_orch.store import Store
from tests.conftest import Harness, outcome_of, until
from tests.helpers import cli, current_details
from workflows.connector_run import ConnectorRunWorkflow
from workflows.recovery import GapRecoveryWorkflow

pytestmark = pytest.mark.slow

GAP = {"type": "DETAIL_GAP", "stream": "a", "reason": "rate_limited"}


def gaps_of(n: int, retry_after: float) -> list[dict[str, Any]]:
    """`n` rate-limited details of stream a (keys k0…), each with its locator."""
    return [
        {
            "msg": {
                **GAP,
                "record_key": f"k{i}",
                "detail_locator": {"id": f"k{i}"},
                "retry_after_seconds": retry_after,
            }
        }
        for i in range(n)
    ]


class Surfaces:
    """One test's connector, worker and the commands a user reads it with."""

    def __init__(self, tmp: Path, env: WorkflowEnvironment, store: Store, pg_url: str):
        self.env = env
        self.h = Harness(tmp, env.client, store)
        self.pg_url = pg_url
        self.settings = Settings(
            TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
            PDPP_DATABASE_URL=pg_url,
            PDPP_TASK_QUEUE=self.h.task_queue,
            PDPP_CONNECTORS=str(self.h.registry_path),
            PDPP_DATA_DIR=str(tmp / "data"),
        )

    def connector(self, forward: list[dict[str, Any]], recovery: list[dict[str, Any]], **extra: Any) -> str:
        plan = self.h.tmp / "recovery.json"
        plan.write_text(json.dumps(recovery))
        env = {"SCRIPT_RECOVERY_PLAN": str(plan), "SCRIPT_RESPONSE_LOG": str(self.h.tmp / "responses.jsonl")}
        return self.h.scripted(forward, env=env, **extra)

    def replan(self, name: str, forward: list[dict[str, Any]]) -> None:
        (self.h.tmp / f"{name}.plan.json").write_text(json.dumps(forward))

    async def run(self, name: str) -> RunOutcome:
        """A forward run that starts its recoveries, as `pdpp-orch run` does."""
        inp = self.h.run_input(name)
        handle = await self.env.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=self.h.task_queue
        )
        return await outcome_of(self.h.store, handle)

    async def said(self, step: Awaitable[int]) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            await step
        return buf.getvalue()

    async def status(self, run_id: str) -> str:
        return await self.said(runs_cli._status(self.settings, run_id, False))

    async def status_json(self, run_id: str) -> dict[str, Any]:
        now: dict[str, Any] = json.loads(await self.said(runs_cli._status(self.settings, run_id, True)))
        return now

    async def runs(self, name: str) -> str:
        return await self.said(runs_cli._runs(self.settings, name, 20, False))

    async def runs_json(self, name: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(
            await self.said(runs_cli._runs(self.settings, name, 20, True))
        )
        return rows

    async def gaps(self, name: str) -> str:
        return await self.said(gaps_cli._list(self.settings, name, None, 50, False))

    async def gaps_json(self, name: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(
            await self.said(gaps_cli._list(self.settings, name, None, 50, True))
        )
        return rows

    async def report(self, name: str) -> tuple[str, dict[str, Any], str]:
        """The report as text, its JSON and its HTML page."""
        page = self.h.tmp / "report.html"
        text = await self.said(report_cli._report(self.settings, name, False, None))
        [js] = json.loads(await self.said(report_cli._report(self.settings, name, True, page)))
        return text, js, page.read_text()

    async def command(self, line: str, starting: str) -> tuple[int, str]:
        """Run the `pdpp-orch STARTING…` command a surface printed, as a user would paste it."""
        [cmd] = [c for c in re.findall(r"`pdpp-orch ([^`]+)`", line) if c.startswith(starting)]
        code, out, err = await cli(
            self.h, self.pg_url, *cmd.split(), PDPP_DATA_DIR=str(self.settings.data_dir)
        )
        return code, out + err

    async def recovery_state(self, wid: str, step: RecoveryStep) -> None:
        seen: list[object] = []

        async def there() -> bool:
            state = await self.env.client.get_workflow_handle(wid).query(GapRecoveryWorkflow.state)
            seen[:] = [state]
            return bool(state.step is step)

        try:
            await until(there, f"{wid} to be {step.value}")
        except AssertionError as e:
            raise AssertionError(f"{e}; it is {seen}") from None

    async def ended(self, name: str, wid: str) -> None:
        """Wait for a recovery to end, whichever way (time skipped meanwhile), and to record how."""
        # Only handles of workflows this client started skip time while they wait; a recovery
        # started by a run or a command is waited for with time skipping unlocked by hand.
        unlocked = self.env.time_skipping_unlocked  # type: ignore[attr-defined]
        latest = (await self.env.client.get_workflow_handle(wid).describe()).run_id
        async with unlocked():
            with contextlib.suppress(WorkflowFailureError):
                await self.env.client.get_workflow_handle(wid, run_id=latest).result()

        async def recorded() -> bool:
            return wid in await self.h.store.recoveries.ends(name, [wid])

        await until(recorded, f"{wid} to record its end")


@pytest.fixture
def seen(tmp_path: Path, time_env: WorkflowEnvironment, store: Store, pg_url: str) -> Surfaces:
    return Surfaces(tmp_path, time_env, store, pg_url)


async def test_a_recovery_waits_runs_and_recovers_and_every_surface_follows(seen: Surfaces) -> None:
    flag = seen.h.tmp / "go"
    forward = [
        {"records": {"stream": "a", "count": 5}},
        # A day's Retry-After: the time-skipping server may jump an hour (its metronome) whenever
        # nothing holds time still, so the recovery is still waiting whenever it is looked at.
        *gaps_of(3, 86400),
        {"state": "a"},
        {"done": "succeeded"},
    ]
    recovery = [{"wait_for": str(flag)}, {"drain": {}}, {"done": "succeeded"}]
    name = seen.connector(forward, recovery)
    async with seen.h.worker():
        o = await seen.run(name)
        # At its end the run says what is missing: 3 open detail gaps are 3 records (it said 0).
        assert (o.status, o.records_missing_estimate, o.streams[0].records_missing_estimate) == (
            RunStatus.PARTIALLY_COMPLETED, 3, 3,
        )  # fmt: skip
        [wid] = o.recovery_workflow_ids

        # Waiting for not_before: every surface says so, with the command that acts on it.
        await seen.recovery_state(wid, RecoveryStep.WAITING_NOT_BEFORE)
        text = await seen.status(o.run_id)
        assert "3 missing (38%)" in text and "at the end" not in text
        assert "next: retry 3 × rate_limited of a: waiting for not_before, until" in text
        assert f"by {wid}: `pdpp-orch recover now {name}` brings it forward" in text
        js = await seen.status_json(o.run_id)
        assert {k: v for k, v in js.items() if k != "now"} == o.model_dump(mode="json")
        assert (js["now"]["records_missing_estimate"], js["now"]["hints"][0]["fate"]) == (3, "waiting")
        _, report, _ = await seen.report(name)
        assert (report["missing_anything"], report["severity"], report["records_missing_estimate"]) == (
            True,
            3,
            3,
        )
        assert report["next_retry"] is not None and "waiting for not_before" in report["next_retry_state"], (
            report
        )
        assert "waiting until" in await seen.gaps(name)

        # A later forward run that found nothing new: it too says the 3 are missing, as the
        # report does (for case C `status` said none while `report` said 1).
        seen.replan(name, [{"records": {"stream": "a", "count": 1}}, {"state": "a"}, {"done": "succeeded"}])
        later = await seen.run(name)
        assert later.status is RunStatus.SUCCEEDED and later.records_missing_estimate == 3
        assert "3 missing" in await seen.status(later.run_id)

        # Running: the wait brought forward by the command the status printed; its recovery run
        # waits on the flag.
        line = next(x for x in (await seen.status(o.run_id)).splitlines() if "brings it forward" in x)
        code, said = await seen.command(line, "recover now")
        assert code == 0 and "brought forward" in said, said
        await seen.recovery_state(wid, RecoveryStep.RECOVERING)
        text = await seen.status(o.run_id)
        assert re.search(
            r"recovery run \S+-recovery-\S+ \(round 1\) in progress: `pdpp-orch watch \S+` follows it", text
        )
        _, report, _ = await seen.report(name)
        assert report["severity"] == 3 and "in progress" in report["verdict"]
        # The printed `pdpp-orch watch RUN` follows the recovery run to its end.
        line = next(x for x in text.splitlines() if "follows it" in x)
        watching = asyncio.create_task(seen.command(line, "watch"))

        # Recovered: every surface says now what it is, and still what it was at the end.
        flag.touch()
        code, said = await watching
        assert code == 0 and "succeeded" in said, said
        await seen.ended(name, wid)
        # The web UI: the finished run's details are its end, and say where to look for now;
        # the recovery's are live (and now done).
        details = await current_details(seen.h, o.run_id)
        assert "at the end of the run" in details and f"`pdpp-orch status {o.run_id}`" in details
        assert f"`{wid}`" in details
        assert "**done**" in await current_details(seen.h, wid)
    text = await seen.status(o.run_id)
    assert "at the end (" in text and "): 3 missing (38%); retry 3 × rate_limited of a not before" in text
    assert "now (" in text and "): none known missing" in text
    [rec_run] = [r for r in await seen.runs_json(name) if r["trigger"] == "recovery"]
    assert f"next: rate_limited of a: all 3 recovered by {rec_run['run_id']} at" in text
    assert f"a later run: {later.run_id}, succeeded" in text and "waiting for not_before" not in text
    js = await seen.status_json(o.run_id)
    assert js["now"]["changed"] and js["now"]["records_missing_estimate"] == 0
    assert js["now"]["hints"][0]["fate"] == "recovered" and js["status"] == "partially_completed"
    text, report, page = await seen.report(name)
    assert (report["missing_anything"], report["severity"], report["records_missing_estimate"]) == (
        False,
        4,
        0,
    )
    assert report["verdict"].startswith(
        "none known missing now · 9 records (rate_limited of a: all 3 recovered"
    )
    assert "nothing needs your attention" in text and "Nothing needs your attention." in page
    assert "now none known missing; all 3 recovered" in await seen.runs(name)
    assert f"recovered by {rec_run['run_id']}" in await seen.gaps(name)
    # The recovery run does not call the gaps it recovered open, nor "not retried on its own".
    text = await seen.status(rec_run["run_id"])
    assert "does not retry" not in text and "not retried" not in text
    assert f"all 3 recovered by {rec_run['run_id']}" in text


async def test_a_budget_wait_then_a_partial_recovery(seen: Surfaces) -> None:
    forward = [
        {"records": {"stream": "a", "count": 5}},
        *gaps_of(3, 0),
        {"state": "a"},
        {"done": "succeeded"},
    ]
    recovery = [{"drain": {"gone": ["k2"]}}, {"done": "succeeded"}]
    name = seen.connector(forward, recovery, budget={"units": 2, "window": "24h"})
    async with seen.h.worker():
        o = await seen.run(name)  # charged 5 records + 3 gaps: the day's 2 units are spent
        [wid] = o.recovery_workflow_ids
        await seen.recovery_state(wid, RecoveryStep.WAITING_BUDGET)
        text = await seen.status(o.run_id)
        waits = "waiting for the budget's next window: it needs 1 unit, until"
        line = next(x for x in text.splitlines() if waits in x)
        assert f"`pdpp-orch budget {name}` shows the budget" in line
        code, said = await seen.command(line, "budget")
        assert code == 0 and "2 units per 24h" in said, said
        _, report, _ = await seen.report(name)
        assert report["severity"] == 3 and report["next_retry"] is not None
        assert "waiting for the budget" in (await seen.gaps_json(name))[0]["now"]["says"]

        # Days pass: two recovered, one gone for good after its attempts.
        await seen.ended(name, wid)
    text = await seen.status(o.run_id)
    line = next(x for x in text.splitlines() if "recovered by" in x)
    assert (
        "rate_limited of a: 2 of 3 recovered by" in line
        and "1 permanent:not_found: no longer retried" in line
    )
    code, said = await seen.command(line, "gaps list")
    assert code == 0 and "k2" in said and "k0" not in said, said
    _, report, _ = await seen.report(name)
    assert report["missing_anything"] and report["severity"] == 2 and "2 of 3 recovered" in report["verdict"]
    assert "2 recovered, 1 given up" in await seen.runs(name)


async def test_cancelled_by_an_operator_started_again_cancelled_by_the_demo_then_superseded(
    seen: Surfaces,
) -> None:
    down = {"done": "failed", "error": {"code": "upstream_down", "message": "down", "retryable": True}}
    day = {"base_seconds": 86400, "cap_seconds": 86400}
    name = seen.connector([down], [down], retry={"transient": day})
    async with seen.h.worker():
        o = await seen.run(name)
        assert (o.status, o.needs_retry) == (RunStatus.FAILED, True)
        [wid] = o.recovery_workflow_ids
        await seen.recovery_state(wid, RecoveryStep.WAITING_NOT_BEFORE)
        assert "none known missing, 1 gap(s) open" in await seen.status(o.run_id)

        # An operator cancels it: every surface says who, when, and what starts it again.
        code, _, err = await cli(seen.h, seen.pg_url, "recover", "cancel", name)
        assert code == 0, err
        await seen.ended(name, wid)
        text = await seen.status(o.run_id)
        line = next(x for x in text.splitlines() if "was cancelled by" in x)
        assert f"1 × upstream_down open: its recovery {wid} was cancelled by an operator" in line
        assert f"`pdpp-orch recover now {name}` starts it again" in line
        _, report, page = await seen.report(name)
        assert (report["severity"], report["next_retry"]) == (0, None)  # its latest run failed
        assert "no retry coming" in report["verdict"] and "cancelled by an operator" in page
        assert "cancelled by an operator" in await seen.runs(name)
        assert "cancelled by an operator" in (await seen.gaps_json(name))[0]["now"]["says"]
        assert "**cancelled** by an operator" in await current_details(seen.h, wid)

        # The printed command works: the recovery starts again, due now; the upstream is still
        # down, so it backs off.
        code, said = await seen.command(line, "recover now")
        assert code == 0 and "started" in said, said
        await seen.recovery_state(wid, RecoveryStep.BACKING_OFF)
        assert "backing off after a round without progress, until" in await seen.status(o.run_id)

        # The demo stops it: said as the demo's doing, with the same command.
        case = demo.Case("X", "a whole run down", name, "example")
        await demo.cancel_waiting_recoveries(seen.env.client, [demo.CaseResult(case, o, 0.0)])
        await seen.ended(name, wid)
        text = await seen.status(o.run_id)
        assert f"its recovery {wid} was cancelled by the demo (its worker stops with it)" in text
        assert f"`pdpp-orch recover now {name}` starts it again" in text
        _, report, _ = await seen.report(name)
        assert "cancelled by the demo" in report["hints"][0]["says"]
        assert "cancelled by the demo" in await seen.runs(name)

        # A later whole forward run collects again: it supersedes the plan.
        seen.replan(name, [{"records": {"stream": "a", "count": 2}}, {"state": "a"}, {"done": "succeeded"}])
        later = await seen.run(name)
    text = await seen.status(o.run_id)
    assert f"superseded, closed by the later run {later.run_id}" in text
    assert f"a later run: {later.run_id}, succeeded" in text and f"`pdpp-orch status {later.run_id}`" in text
    _, report, _ = await seen.report(name)
    assert not report["missing_anything"] and "superseded" in report["verdict"]
    assert f"recovered by {later.run_id}" in await seen.gaps(name)
