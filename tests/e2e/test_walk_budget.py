"""A recovery that walks a stream (a stream skipped whole, a checkpoint that did not commit, a run
that failed) is charged for what it re-collects, end to end: priced before it starts from what
the stream held last time, waiting for the budget when that does not fit, and charged after for
what it re-collected beyond (Temporal's time-skipping server, real PostgreSQL, the scripted
connector)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from pdpp_orch import policy
from pdpp_orch.advice import budget_wanted
from pdpp_orch.control.budget import budget_status
from pdpp_orch.models import GapKind, RecoveryInput, RecoveryState, RecoveryStep, RunOutcome, RunStatus
from pdpp_orch.report import build
from pdpp_orch.store import Store
from tests.conftest import Harness, outcome_of, until
from tests.helpers import current_details
from workflows.connector_run import ConnectorRunWorkflow
from workflows.ids import recovery_workflow_id
from workflows.recovery import GapRecoveryWorkflow

pytestmark = pytest.mark.slow

COLLECT_A = [{"records": {"stream": "a", "count": 10}}, {"state": "a"}, {"done": "succeeded"}]
SKIP_A = [
    {"msg": {"type": "SKIP_RESULT", "stream": "a", "reason": "temporary_unavailable"}},
    {"done": "succeeded"},
]


async def forward(h: Harness, name: str) -> RunOutcome:
    inp = h.run_input(name, recover=False)  # the test starts the recovery itself
    handle = await h.client.start_workflow(
        ConnectorRunWorkflow.run, inp, id=inp.run_id, task_queue=h.task_queue
    )
    return await outcome_of(h.store, handle)


async def test_a_stream_walk_dearer_than_the_budget_left_waits_for_the_next_window(
    tmp_path: Path, time_env: WorkflowEnvironment, store: Store
) -> None:
    h = Harness(tmp_path, time_env.client, store)
    name = h.scripted(COLLECT_A, budget={"units": 12, "window": "24h", "cost_per_item": 1})
    plan = tmp_path / f"{name}.plan.json"

    def play(steps: list[dict[str, Any]]) -> None:
        plan.write_text(json.dumps(steps))

    async with h.worker():
        first = await forward(h, name)  # 10 records of `a`, committed: charged 10 of 12
        assert first.status is RunStatus.SUCCEEDED, first.model_dump_json(indent=1)
        play(SKIP_A)
        skipped = await forward(h, name)  # `a` skipped whole: one stream gap, charged 1
        [hint] = skipped.retry_hints
        [gap] = await store.gaps.find(name)
        assert gap.kind == GapKind.STREAM.value
        # Its walk re-collects `a` from the committed cursor: priced at what `a` held last time.
        assert hint.estimated_cost == 10
        # The report prices the gap as its hint does, not as one item.
        [report] = build(await store.reports.rows(name), {name: 1}, {}, await time_env.get_current_time())
        [priced] = [g for s in report.streams for g in s.gaps if g.open]
        assert (priced.estimated_cost, report.next_retry_cost) == (10, 10)
        play([*COLLECT_A[:1], {"records": {"stream": "a", "count": 5}}, *COLLECT_A[1:]])  # 15 now
        due = hint.model_copy(update={"not_before": await time_env.get_current_time()})
        handle = await h.client.start_workflow(
            GapRecoveryWorkflow.run,
            RecoveryInput(connector=name, hint=due, found_run_id=skipped.run_id),
            id=recovery_workflow_id(hint.hint_id),
            task_queue=h.task_queue,
        )

        async def waiting() -> RecoveryState | None:
            s = await handle.query(GapRecoveryWorkflow.state)
            return s if s.step is RecoveryStep.WAITING_BUDGET else None

        # 1 unit left of 12: the walk waits for the next window instead of running at once.
        state = await until(waiting, "the walk waiting for the budget")
        assert state.wanted == 10 and budget_wanted(state) == ": it needs 10 units"
        assert "it needs 10 units" in await current_details(h, handle.id)
        assert await store.runs.recovery_outcomes(name) == []
        result = await handle.result()  # the time-skipping server skips to the next window
        # Granted its 10 in the new window, then charged the 5 it re-collected beyond: 2 of
        # them fit the window's 12, 3 are overspent.
        status = await budget_status(h.client, name, await time_env.get_current_time())
    assert status is not None
    assert (status.windows_elapsed, status.spent, status.overspent) == (1, 12, 3)
    assert (result.budget_waits, result.runs, result.progress.recovered) == (1, 1, 1)
    [walk] = await store.runs.recovery_outcomes(name)
    assert state.until is not None and walk.started_at >= state.until
    assert walk.records_emitted == 15


async def test_a_walk_is_priced_at_what_it_re_reads_past_the_committed_cursor(harness: Harness) -> None:
    # `a`: 10 records, a checkpoint that commits, 5 more and a final STATE that is no JSON (Case
    # A's shape): a walk re-reads those 5. `b`: 4 records stored, never a committed cursor.
    lost = '{"type":"STATE","stream":"a","cursor":{"offset":18446744073709551615n}}'
    steps = [COLLECT_A[0], {"state": "a"}, {"records": {"stream": "a", "count": 5}}, {"raw": lost}]
    name = harness.scripted([*steps, {"records": {"stream": "b", "count": 4}}, {"done": "succeeded"}])
    first = await harness.run(name, recover=False)
    assert {s.stream: s.checkpoint for s in first.streams}["a"] == "earlier_committed"
    walks = harness.store.hints.walk_records
    assert (await walks(name, "a"), await walks(name, "b"), await walks(name, "c")) == (5, 4, 0)
    assert await walks(name, policy.NO_STREAM) == 5  # a whole run's walk: its committed streams
    # Then a run that commits `a` at its end after 2 records: the next walk's increment is taken
    # to be like that one.
    later = [{"records": {"stream": "a", "count": 2}}, {"state": "a"}, {"done": "succeeded"}]
    (harness.tmp / f"{name}.plan.json").write_text(json.dumps(later))
    await harness.run(name, recover=False)
    assert await walks(name, "a") == 2


async def test_a_recovery_started_again_asks_the_budget_afresh(
    tmp_path: Path, time_env: WorkflowEnvironment, store: Store
) -> None:
    """`recover now` after a cancel starts the hint's recovery again under the same workflow
    id: its requests are its own, not answered with what the budget told the one before."""
    h = Harness(tmp_path, time_env.client, store)
    name = h.scripted(COLLECT_A, budget={"units": 12, "window": "24h", "cost_per_item": 1})
    async with h.worker():
        await forward(h, name)  # 10 of 12 spent
        (tmp_path / f"{name}.plan.json").write_text(json.dumps(SKIP_A))
        skipped = await forward(h, name)  # 11 of 12: the walk's 10 do not fit
        (tmp_path / f"{name}.plan.json").write_text(json.dumps(COLLECT_A))
        [hint] = skipped.retry_hints
        due = hint.model_copy(update={"not_before": await time_env.get_current_time()})
        inp = RecoveryInput(connector=name, hint=due, found_run_id=skipped.run_id)
        wid = recovery_workflow_id(hint.hint_id)
        first = await h.client.start_workflow(GapRecoveryWorkflow.run, inp, id=wid, task_queue=h.task_queue)

        async def refused() -> RecoveryState | None:
            s = await first.query(GapRecoveryWorkflow.state)
            return s if s.step is RecoveryStep.WAITING_BUDGET else None

        await until(refused, "the walk refused by the budget")
        await first.cancel()
        with pytest.raises(WorkflowFailureError):
            await first.result()
        await time_env.sleep(timedelta(hours=25))  # a new window: the walk's 10 fit now
        again = await h.client.start_workflow(GapRecoveryWorkflow.run, inp, id=wid, task_queue=h.task_queue)
        result = await again.result()
    assert (result.budget_waits, result.runs, result.progress.recovered) == (0, 1, 1)
