"""A connector's words are a stranger's (issue 26, DESIGN §14): whatever it says is bounded before
it reaches facts or Temporal history, a step that fails for good ends the run with an outcome,
and a cancel always reaches the run. Each test plays a hostile connector of ours."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from typing import Any

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from pdpp_orch import words
from pdpp_orch.models import RunStatus
from tests.conftest import ABC_MANIFEST, Harness, history_text, outcome_of, until
from tests.helpers import cli
from workflows.connector_run import ConnectorRunWorkflow

pytestmark = pytest.mark.faults

HUGE = "x" * 3_000_000  # past Temporal's 2 MiB payload limit on its own


def hostile_misses(wait_for: str | None = None) -> list[dict[str, Any]]:
    """Records, then misses whose words are too long and too many for any history: a 3 MB skip
    reason, a 3 MB gap reason, 200 distinct reasons, a time range that is no range."""
    skip = {"type": "SKIP_RESULT", "stream": "b"}
    skips = [
        {"msg": {**skip, "reason": f"why-{i}-" + "y" * 500, "resource_ids": [f"r{i}"]}} for i in range(200)
    ]
    gap = {"type": "DETAIL_GAP", "stream": "a", "record_key": "k1", "reason": HUGE, "last_error": HUGE}
    ranges = [
        {"since": "yesterday", "until": HUGE[:5000]},
        {"since": "0001-01-01", "until": "9999-12-31"},
    ]
    days = {"longest_accepted_days": 1}
    huge = 10**4000  # JSON has no limit on an integer's digits
    coverage = {"type": "DETAIL_COVERAGE", "stream": "a", "state_stream": HUGE, "required_keys": huge}
    steps: list[dict[str, Any]] = [
        {"records": {"stream": "a", "count": 5}},
        {"state": "a"},
        {"msg": {"type": "SKIP_RESULT", "stream": "a", "reason": HUGE}},
        {"msg": gap},
        {"msg": {"type": "PROGRESS", "stream": "a", "total": huge}},
        {"msg": {**coverage, "hydrated_keys": 1, "considered": huge}},
        *skips,
        *(
            {"msg": {**skip, "stream": "c", "reason": "range_cut", "time_range": r, "diagnostics": days}}
            for r in ranges
        ),
    ]
    if wait_for:
        steps.append({"wait_for": wait_for})
    return [*steps, {"done": "succeeded"}]


async def test_a_connector_s_huge_and_many_reasons_end_in_a_bounded_outcome_at_the_first_attempt(
    harness: Harness,
) -> None:
    name = harness.scripted(hostile_misses(), reasons={"range_cut": "transient"})
    started = time.monotonic()
    o = await asyncio.wait_for(harness.run(name), 60)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.records_durable == 5
    assert time.monotonic() - started < 30
    # Collected once: the facts were never too large to hand back (before: five attempts, each
    # running the connector again, then a wedge).
    assert len(harness.starts(name)) == 1
    assert all(len(r) <= words.MAX_REASON_CHARS for r in o.skipped_by_reason)
    assert words.OTHER_REASONS in o.skipped_by_reason and sum(o.skipped_by_reason.values()) == 204
    # The ledger keeps every miss with its own reason, bounded (the two 3 MB ones are one).
    reasons = await harness.store.pool.fetch("SELECT DISTINCT reason FROM gaps WHERE connector = $1", name)
    assert len(reasons) == 202 and max(len(r["reason"]) for r in reasons) <= words.MAX_REASON_CHARS
    # A range of centuries is a bounded number of chunks; one that is no range, the stream.
    chunks = [len(h.scope.time_ranges or []) for h in o.retry_hints if h.scope.time_ranges]
    assert chunks and max(chunks) <= 100
    history = await harness.client.get_workflow_handle(o.run_id).fetch_history()
    assert len(history_text(history)) < 400_000
    assert {s.stream: s.considered for s in o.streams}["a"] == 2**63 - 1  # a count, kept to a bigint


async def test_a_cancel_reaches_a_run_whose_connector_said_too_much_and_frees_its_connector(
    harness: Harness,
) -> None:
    go = harness.tmp / "go"
    name = harness.scripted(hostile_misses(wait_for=str(go)))
    inp = harness.run_input(name)
    async with harness.worker():
        handle = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )

        async def has_gaps() -> bool:
            n = await harness.store.pool.fetchval("SELECT count(*) FROM gaps WHERE connector = $1", name)
            return bool(n and n >= 200)

        await until(has_gaps, "the connector's misses in the ledger")
        await handle.cancel()
        # Before: the saved facts were past the payload limit, `load_facts` was retried for
        # ever in a step a cancel does not interrupt, and the connector's lock stayed held.
        o = await asyncio.wait_for(outcome_of(harness.store, handle), 30)
    assert o.status is RunStatus.CANCELLED and o.records_durable == 5
    lock = await harness.store.pool.fetchval("SELECT run_id FROM connector_locks WHERE connector = $1", name)
    assert lock is None


class FailForGood(Interceptor):
    """Makes the named activities raise a defect (what a value that can never be read or
    stored raises), every attempt."""

    def __init__(self, *names: str):
        self.names = names

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        names = self.names

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                name = activity.info().activity_type
                if name == "collect" and name in names:  # its own few retries aside
                    raise ApplicationError("collect cannot go on", non_retryable=True)
                if name in names:
                    raise ValueError(f"{name} cannot go on")
                return await super().execute_activity(input)

        return Inbound(next)


@pytest.mark.parametrize(
    ("failing", "why"),
    [
        (("commit_checkpoints",), "ValueError: commit_checkpoints failed"),
        (("plan_retries",), "ValueError: plan_retries failed"),
        (("collect", "load_facts"), "collect cannot go on"),  # the first cause is told
    ],
    ids=["commit", "plan", "load_facts"],
)
async def test_a_step_that_fails_for_good_ends_the_run_with_a_recorded_outcome(
    harness: Harness, failing: tuple[str, ...], why: str
) -> None:
    name = harness.scripted([{"records": {"stream": "a", "count": 5}}, {"state": "a"}, {"done": "succeeded"}])
    inp = harness.run_input(name)
    async with harness.worker(FailForGood(*failing)):
        handle = await harness.client.start_workflow(
            ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=harness.task_queue
        )
        # Before: the step was retried for ever (DB_RETRY has no maximum of attempts).
        o = await asyncio.wait_for(outcome_of(harness.store, handle), 40)
    assert o.status is not RunStatus.SUCCEEDED and o.reason == "runtime_error"
    assert o.error is not None and why in (o.error.message or "")
    row = await harness.store.runs.get(inp.run_id)
    assert row is not None and row.finished_at is not None and row.status == o.status
    lock = await harness.store.pool.fetchval("SELECT run_id FROM connector_locks WHERE connector = $1", name)
    assert lock is None


TOKEN = "tok-5d1c0e-printed-by-its-connector"
KEY = "key-8a7f33-printed-by-its-connector"


def secret_telling_plan() -> list[dict[str, Any]]:
    """Its secrets, and their base64 and hex, in every word it says."""
    b64 = base64.b64encode(TOKEN.encode()).decode()
    notice = {"owner_action": "act_elsewhere", "progress_posture": "running", "response_contract": "none"}
    gap = {"type": "DETAIL_GAP", "stream": "a", "record_key": "k1", "reason": f"denied:{TOKEN}"}
    ask = {"type": "INTERACTION", "request_id": "r1", "kind": "otp", "timeout_seconds": 0.2}
    return [
        {"stderr": f"using token {TOKEN} and key {KEY.encode().hex()}"},
        {"records": {"stream": "a", "count": 3}},
        {"raw": f'{{"type": "RECORD", "stream": "a", "key": "{TOKEN}", "data": {{"id": "{KEY}"'},
        {"msg": {**gap, "last_error": {"status": 401, "sent": f"Bearer {b64}"}}},
        {"msg": {"type": "SKIP_RESULT", "stream": "b", "reason": "denied", "message": f"bad key {KEY}"}},
        {"msg": {"type": "ASSISTANCE", "message": f"paste {TOKEN} in the app", **notice}},
        {"msg": {**ask, "message": f"the code sent for {TOKEN}"}},
        {"await_response": True},
        {"stderr": f"giving up: {b64}"},
        {"done": "failed", "error": {"code": "auth_failed", "message": f"401 for {TOKEN}"}},
    ]


async def test_a_connector_that_prints_its_secrets_never_has_them_kept_or_shown(
    harness: Harness, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDPP_TEST_TOKEN", TOKEN)
    key_file = harness.tmp / "key.secret"
    key_file.write_text(KEY + "\n")
    env = {
        "TOKEN": "env:PDPP_TEST_TOKEN",
        "KEY": f"file:{key_file}",
        "SCRIPT_RESPONSE_LOG": str(harness.tmp / "responses.jsonl"),
    }
    name = harness.scripted(secret_telling_plan(), env=env)
    o = await asyncio.wait_for(harness.run(name), 60)
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.records_durable == 3
    pool = harness.store.pool
    row = "SELECT coalesce(json_agg(t)::text, '') FROM {} t WHERE {} = $1"
    kept = {
        table: await pool.fetchval(row.format(table, where), value)
        for table, where, value in [
            ("runs", "run_id", o.run_id),
            ("quarantine", "run_id", o.run_id),
            ("gaps", "connector", name),
            ("interactions", "run_id", o.run_id),
            ("assistance", "run_id", o.run_id),
            ("spine_events", "run_id", o.run_id),
        ]
    }
    _, shown, err = await cli(harness, pg_url, "status", o.run_id)
    kept["status"] = shown + err
    kept["history"] = history_text(await harness.client.get_workflow_handle(o.run_id).fetch_history())
    # What the connector said is there, without its secrets (before: its stderr tail, error,
    # quarantined line, gap error and prompt held them, and `status` showed them).
    assert "giving up" in kept["runs"] and "bad key" in kept["gaps"] and "401 for" in shown
    for secret in (TOKEN, KEY, base64.b64encode(TOKEN.encode()).decode(), KEY.encode().hex()):
        for where, text in kept.items():
            assert secret not in text, (secret, where)


async def test_a_registry_error_never_quotes_a_value(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret pasted where an `env:` reference's name belongs."""
    pasted = "sk-live-0123456789-pasted-here"
    name = harness.register("leaky", [sys.executable, "-c", "pass"], ABC_MANIFEST, {"K": f"env:{pasted}"})
    o = await asyncio.wait_for(harness.run(name), 60)
    assert o.status is RunStatus.FAILED and o.reason == "configuration_error"
    assert o.error is not None and "env: must be followed by an environment variable's name" in (
        o.error.message or ""
    )
    history = history_text(await harness.client.get_workflow_handle(o.run_id).fetch_history())
    # Before: the error quoted the value, and the pydantic error chained to it (the failure's
    # cause in the history, the traceback in the worker's log) quoted it too.
    assert pasted[:20] not in history and pasted[:20] not in caplog.text
