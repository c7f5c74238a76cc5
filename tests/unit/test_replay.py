"""Recorded histories (tests/replay/histories, written by tests/replay/record_histories.py)
replay against the current workflow code: a change that would break workflows already running
fails here instead of in production (then use `workflow.patched`, docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, VersioningBehavior
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from pdpp_orch.control.recoveries import OPERATOR_CANCEL
from tests.conftest import HERE
from workflows import patches
from workflows.versioning import UNVERSIONED, VERSIONED

# One folder per recording: histories recorded before a versioned change (`workflow.patched`)
# must keep replaying after it.
HISTORIES = sorted((HERE / "replay" / "histories").glob("*/*.json"))
# The recorder gained a failing and a cancelled run with `temporal-status-agrees`; the two
# recordings made before it cannot have them.
BEFORE_FAILING_AND_CANCELLED = {"before-connector-lock", "with-connector-lock"}
# ...and the runs that take the paths behind the newer patches (tests/replay/patched_paths.py)
# with `present-truth`.
BEFORE_PATCHED_PATHS = {*BEFORE_FAILING_AND_CANCELLED, "temporal-status-agrees"}
# ...and a recovery that walks a stream, charged for its walk (WALK_CHARGED), with `walk-charged`.
BEFORE_WALK_CHARGED = {*BEFORE_PATCHED_PATHS, "present-truth"}
# Every `workflow.patched` id: a new one without a history that takes it fails here.
PATCH_IDS = {v for k, v in vars(patches).items() if k.isupper() and isinstance(v, str)}
# The run of a recording (its workflow id) that takes each path behind a newer patch.
TAKEN_BY = {
    "placed": patches.PLACEMENT,
    "defective": patches.STEP_FAILED_FOR_GOOD,
    "lost-worker": patches.LOST_WORKER,
    "cancel-while-recording": patches.LATE_CANCEL,
}


@cache
def events(path: Path) -> list[Any]:
    return list(WorkflowHistory.from_json("w", path.read_text()).events)


def patches_taken(path: Path) -> set[str]:
    """The patch ids the workflow took: their markers (`core_patch`, the id in its details)."""
    return {
        json.loads(p.data)["id"]
        for e in events(path)
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
        for p in e.marker_recorded_event_attributes.details["patch-data"].payloads
    }


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
    if recording not in BEFORE_PATCHED_PATHS:
        the_patched_paths_are_taken(mine)
    if recording not in BEFORE_WALK_CHARGED:
        a_walk_is_charged(mine)


def the_patched_paths_are_taken(mine: list[Path]) -> None:
    by_id = {p.name.split("--", 1)[1].removesuffix(".json"): p for p in mine}
    for run, patch in TAKEN_BY.items():
        assert patch in patches_taken(by_id[run]), (run, patch)
    # A run on a versioned worker (PDPP_WORKER_BUILD_ID): pinned to its build.
    assert {
        e.workflow_task_completed_event_attributes.versioning_behavior
        for e in events(by_id["versioned"])
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    } == {VersioningBehavior.VERSIONING_BEHAVIOR_PINNED}
    # A recovery that records it ended done, and one an operator cancelled, saying so.
    fated = [p for p in mine if patches.RECOVERY_FATE in patches_taken(p)]
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED in {events(p)[-1].event_type for p in fated}
    said = {
        e.workflow_execution_cancel_requested_event_attributes.cause
        for p in fated
        for e in events(p)
        if e.HasField("workflow_execution_cancel_requested_event_attributes")
    }
    assert OPERATOR_CANCEL in said, said


def a_walk_is_charged(mine: list[Path]) -> None:
    """`walked`'s recovery walked its stream: it asked for the walk's estimate and was charged
    after for what it re-collected beyond (tests/replay/patched_paths.py)."""
    walks = [p for p in mine if patches.WALK_CHARGED in patches_taken(p)]
    assert walks and all(p.name.startswith("GapRecoveryWorkflow--") for p in walks)
    charged = {
        e.activity_task_scheduled_event_attributes.activity_type.name
        for p in walks
        for e in events(p)
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    assert {"request_budget", "charge_budget"} <= charged, charged


def test_every_patch_id_is_taken_by_a_recorded_history() -> None:
    """Each path behind a `workflow.patched` id has a history that replays it, so a later
    change to that path fails here, not in the workflows running it."""
    taken = set().union(*(patches_taken(p) for p in HISTORIES))
    assert PATCH_IDS - taken == set(), "record a history that takes them (tests/replay/record_histories.py)"


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
