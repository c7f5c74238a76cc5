"""The report's rows, read from the real PostgreSQL: what a connector's coverage rests on (its
latest finished forward run) is there however many recovery runs came after it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from pdpp_orch.models import Mode, RunStatus, Trigger
from pdpp_orch.report import latest_forward
from pdpp_orch.store.reports import RECENT_RUNS
from tests.conftest import Harness
from tests.unit.test_report import outcome


async def test_the_latest_forward_run_is_read_past_a_recoverys_many_runs(harness: Harness) -> None:
    name = f"walked{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC) - timedelta(hours=2)
    forward = outcome(
        RunStatus.PARTIALLY_COMPLETED, run_id=f"{name}-forward", connector=name, needs_retry=True,
        started_at=start, finished_at=start + timedelta(minutes=1),
    )  # fmt: skip
    await harness.store.runs.start(forward.run_id, name, Trigger.MANUAL, Mode.FORWARD)
    await harness.store.runs.finish(forward, [])
    # A range recovery in chunks: more runs than the report shows as recent, all after it.
    for i in range(RECENT_RUNS + 1):
        at = start + timedelta(minutes=2 + i)
        rec = outcome(
            RunStatus.SUCCEEDED, run_id=f"{name}-recovery-{i}", connector=name, mode=Mode.RECOVERY,
            started_at=at, finished_at=at + timedelta(seconds=30),
        )  # fmt: skip
        await harness.store.runs.start(rec.run_id, name, Trigger.RECOVERY, Mode.RECOVERY)
        await harness.store.runs.finish(rec, [])

    rows = await harness.store.reports.rows(name)
    latest = latest_forward(rows, name)
    assert latest is not None and latest.run_id == forward.run_id
    assert sum(r.mode is Mode.RECOVERY for r in rows.runs) == RECENT_RUNS
