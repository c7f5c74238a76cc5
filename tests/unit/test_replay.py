"""Recorded histories (tests/replay/histories, written by tests/replay/record_histories.py)
replay against the current workflow code: a change that would break workflows already running
fails here instead of in production (then use `workflow.patched`, docs/operations.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.conftest import HERE
from workflows.versioning import UNVERSIONED, VERSIONED

# One folder per recording: histories recorded before a versioned change (`workflow.patched`)
# must keep replaying after it.
HISTORIES = sorted((HERE / "replay" / "histories").glob("*/*.json"))
# The recorder gained a failing and a cancelled run with `temporal-status-agrees`; the two
# recordings made before it cannot have them.
BEFORE_FAILING_AND_CANCELLED = {"before-connector-lock", "with-connector-lock"}


@pytest.mark.parametrize("recording", sorted({p.parent.name for p in HISTORIES}))
def test_each_recording_covers_every_workflow_and_case(recording: str) -> None:
    mine = [p for p in HISTORIES if p.parent.name == recording]
    types = {p.name.split("--")[0] for p in mine}
    assert types == {"ConnectorRunWorkflow", "GapRecoveryWorkflow", "ConnectorBudgetWorkflow"}
    runs = " ".join(p.name for p in mine if p.name.startswith("ConnectorRunWorkflow"))
    for case in (
        "gmail",
        "claude_code-",
        "claude_code_capped",
        "slack",
        "usaa",
        "chatgpt-2",
        "recovery",
        "interactive",
    ):
        assert case in runs, case
    if recording not in BEFORE_FAILING_AND_CANCELLED:
        for ended in ("--failing.json", "--slow.json"):
            assert ended in runs, ended


# A versioned worker registers the same code with its versioning behaviours: the auto-upgrade
# workflows move to a new build at their next task, so their histories must replay there too.
@pytest.mark.parametrize("workers", ["unversioned", "versioned"])
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_recorded_history_replays_on_the_current_code(path: Path, workers: str) -> None:
    workflow_id = path.name.split("--", 1)[1].removesuffix(".json")
    history = WorkflowHistory.from_json(workflow_id, await asyncio.to_thread(path.read_text))
    replayer = Replayer(
        workflows=UNVERSIONED if workers == "unversioned" else VERSIONED,
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
