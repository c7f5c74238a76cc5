"""The status table of DESIGN §1, row by row, and the outcome built around it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pdpp_orch.models import (
    CheckpointFact,
    CollectFacts,
    CommitResult,
    CommitStatus,
    CoverageFact,
    HintScope,
    RecoveryClass,
    RetryHint,
    RetryPlan,
    RunError,
    RunFacts,
    RunInput,
    RunStatus,
    StreamCommit,
    StreamFacts,
    Violation,
)
from pdpp_orch.outcome import commit_status, derive_outcome, derive_status, failed_retryably

CLEAN: dict[str, Any] = dict(
    cancelled=False,
    done_succeeded=True,
    violated=False,
    staged=2,
    committed=2,
    coverage_shortfall=False,
    gaps_opened=0,
    non_informational_skips=0,
    records_durable=10,
)


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({}, RunStatus.SUCCEEDED),
        ({"records_durable": 0, "staged": 0, "committed": 0}, RunStatus.SUCCEEDED),  # nothing new
        ({"cancelled": True}, RunStatus.CANCELLED),
        ({"cancelled": True, "records_durable": 0, "committed": 0}, RunStatus.CANCELLED),
        ({"done_succeeded": False}, RunStatus.PARTIALLY_COMPLETED),
        ({"violated": True}, RunStatus.PARTIALLY_COMPLETED),
        ({"committed": 1}, RunStatus.PARTIALLY_COMPLETED),
        ({"coverage_shortfall": True}, RunStatus.PARTIALLY_COMPLETED),
        ({"gaps_opened": 1}, RunStatus.PARTIALLY_COMPLETED),
        ({"non_informational_skips": 4188}, RunStatus.PARTIALLY_COMPLETED),
        ({"done_succeeded": False, "records_durable": 0, "committed": 0}, RunStatus.FAILED),
        ({"violated": True, "records_durable": 0, "committed": 0}, RunStatus.FAILED),
        ({"done_succeeded": False, "records_durable": 0, "committed": 1}, RunStatus.PARTIALLY_COMPLETED),
        ({"gaps_opened": 3, "records_durable": 0, "committed": 0}, RunStatus.FAILED),
    ],
)
def test_status_table(change: dict[str, Any], status: RunStatus) -> None:
    assert derive_status(**{**CLEAN, **change}) is status


@pytest.mark.parametrize(
    ("staged", "committed", "expected"),
    [
        (0, 0, CommitStatus.DISABLED),
        (4, 0, CommitStatus.NOT_COMMITTED),
        (4, 3, CommitStatus.PARTIALLY_COMMITTED),
        (4, 4, CommitStatus.COMMITTED),
    ],
)
def test_commit_status(staged: int, committed: int, expected: CommitStatus) -> None:
    assert commit_status(staged, committed) is expected


def facts(**kw: Any) -> RunFacts:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    collect = CollectFacts(
        done_status="succeeded",
        records_emitted=10,
        records_durable=10,
        streams={"a": StreamFacts(stream="a", emitted=10, collected=10)},
        checkpoints={"a": CheckpointFact(stream="a", staged=1, proven_seq=11)},
    )
    for k, v in kw.pop("collect", {}).items():
        setattr(collect, k, v)
    return RunFacts(
        input=RunInput(connector="c", run_id="r"),
        collect=collect,
        commit=kw.pop("commit", CommitResult(streams=[StreamCommit(stream="a", committed=True)])),
        started_at=now,
        finished_at=now,
        **kw,
    )


def test_outcome_of_a_clean_run() -> None:
    o = derive_outcome(facts())
    assert o.status is RunStatus.SUCCEEDED and o.reason is None and not o.needs_retry
    assert o.buffered_records_dropped == 0 and o.checkpoint_commit_status is CommitStatus.COMMITTED
    assert [s.model_dump() for s in o.streams] == [
        {
            "stream": "a",
            "collected": 10,
            "considered": None,
            "covered": None,
            "checkpoint": "committed",
            "coverage": "complete",
            "gaps_open": 0,
            "records_missing_estimate": 0,
            "continues": False,
        }
    ]
    assert o.error is None and o.records_missing_estimate == 0 and not o.cancel_too_late


HINT = RetryHint(
    hint_id="hint_x",
    reason="rate_limited",
    recovery_class=RecoveryClass.PROVIDER_PRESSURE,
    not_before=datetime(2026, 1, 2, tzinfo=UTC),
    scope=HintScope(stream="a"),
    gap_count=3,
    estimated_cost=3,
    attempt=1,
    max_attempts=5,
)


def test_needs_retry_follows_the_retry_plan() -> None:
    skipped = {"gaps_opened": 3, "gaps_retryable_opened": 3, "non_informational_skips": 3}
    o = derive_outcome(facts(collect=skipped, plan=RetryPlan(hints=[HINT], gaps_open_total=3)))
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.needs_retry and o.reason == "records_skipped"
    assert o.retry_hints == [HINT] and o.gaps_open_total == 3
    # Gaps only the owner can close (credentials) produce no hint, hence no retry.
    owner = {"gaps_opened": 1, "gaps_retryable_opened": 0, "non_informational_skips": 1}
    o = derive_outcome(facts(collect=owner, plan=RetryPlan(gaps_open_total=1)))
    assert o.status is RunStatus.PARTIALLY_COMPLETED and not o.needs_retry


def test_a_failed_run_with_a_retryable_error_is_planned_as_a_retry() -> None:
    collect = {"done_status": "failed", "done_error_retryable": True, "records_durable": 0, "checkpoints": {}}
    f = facts(collect=collect, commit=CommitResult())
    assert failed_retryably(f.collect, f.commit, cancelled=False, error=None)
    o = derive_outcome(f)
    assert o.status is RunStatus.FAILED and o.reason == "connector_reported_failed"
    # A partial run is not a failed one: its gaps, not the whole run, get retried.
    f = facts(collect={"done_status": "failed", "done_error_retryable": True})
    assert not failed_retryably(f.collect, f.commit, cancelled=False, error=None)


def test_a_connector_that_says_cancelled_is_not_an_operator_cancel() -> None:
    o = derive_outcome(facts(collect={"done_status": "cancelled"}))
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "connector_reported_cancelled"


def test_cancelled_runs_never_need_a_retry() -> None:
    f = facts(
        cancelled=True, collect={"gaps_retryable_opened": 2, "gaps_opened": 2}, plan=RetryPlan(hints=[HINT])
    )
    o = derive_outcome(f)
    assert o.status is RunStatus.CANCELLED and not o.needs_retry and o.reason == "cancelled"
    assert o.retry_hints == []


def test_a_checkpoint_kept_at_an_earlier_cursor_is_not_counted_as_committed() -> None:
    commit = CommitResult(
        streams=[
            StreamCommit(stream="a", committed=False, earlier_committed=True, reason="invalid_state_line")
        ],
        checkpoint_gaps_opened=1,
    )
    o = derive_outcome(facts(commit=commit))
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.state_streams_committed == 0
    assert o.checkpoint_commit_status is CommitStatus.NOT_COMMITTED and o.gaps_opened == 1
    assert o.streams[0].checkpoint == "earlier_committed"


@pytest.mark.parametrize("reason", ["scoped_recovery", "superseded"])
def test_a_checkpoint_withheld_by_design_is_no_miss(reason: str) -> None:
    # A range chunk's recovery wrote STATE: not the stream's cursor, and the run is clean.
    commit = CommitResult(streams=[StreamCommit(stream="a", committed=False, withheld=True, reason=reason)])
    o = derive_outcome(facts(commit=commit))
    assert o.status is RunStatus.SUCCEEDED and o.reason is None
    assert (o.state_streams_staged, o.state_streams_committed) == (0, 0)
    assert o.checkpoint_commit_status is CommitStatus.DISABLED and o.streams[0].checkpoint == reason


def test_state_too_large_is_the_reason_when_nothing_worse_happened() -> None:
    commit = CommitResult(streams=[StreamCommit(stream="a", committed=False, reason="state_too_large")])
    o = derive_outcome(facts(commit=commit))
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "state_too_large"
    assert o.checkpoint_commit_status is CommitStatus.NOT_COMMITTED


def test_a_cancelled_collect_is_not_a_cancelled_run_unless_the_workflow_says_so() -> None:
    # The collect attempt saw a CancelledError (say its heartbeat timed out), but nobody
    # cancelled the run: its proven checkpoint counts, and it is not `cancelled`.
    o = derive_outcome(facts(collect={"cancelled": True, "done_status": None}))
    assert o.status is RunStatus.PARTIALLY_COMPLETED and o.reason == "connector_exit_without_done"
    assert derive_outcome(facts(cancelled=True)).status is RunStatus.CANCELLED


EXIT_2 = {"done_status": None, "exit_code": 2}
DONE_FAILED = {"done_status": "failed", "done_error_code": "token_expired"}
VIOLATED = {"violation_count": 2, "violations": [Violation(kind="invalid_json", line_no=7, detail="x")]}
CONFIG = RunError(kind="config_error", message="no such file: ./x")
TOKEN, LINE_7 = "token_expired", "invalid_json at line 7"


@pytest.mark.parametrize(
    ("collect", "error", "kind", "message"),
    [
        (EXIT_2, None, "connector_exit_without_done", "the connector exited (code 2) without DONE"),
        (
            DONE_FAILED,
            None,
            "connector_reported_failed",
            "the connector reported DONE failed (token_expired)",
        ),
        (
            VIOLATED,
            None,
            "connector_protocol_violation",
            "2 protocol violation(s): first invalid_json at line 7",
        ),
        (
            {"runtime_error": "connector_stalled", "runtime_limit_seconds": 600},
            None,
            "connector_stalled",
            "no output for 600 s (stall_timeout_seconds in the connector's registry entry)",
        ),
        (
            {"runtime_error": "max_run_duration_exceeded", "runtime_limit_seconds": 3600},
            None,
            "max_run_duration_exceeded",
            "still running after 3,600 s (max_run_seconds in the registry or the run's)",
        ),
        ({}, CONFIG, "config_error", "no such file: ./x"),
    ],
)
def test_the_outcome_says_why(
    collect: dict[str, Any], error: RunError | None, kind: str, message: str | None
) -> None:
    o = derive_outcome(facts(collect=collect, error=error))
    assert o.error is not None and (o.error.kind, o.error.message) == (kind, message)
    if error is not None:
        assert o.reason == "configuration_error"


def test_coverage_of_an_unfinished_run_is_never_complete_and_its_shortfall_is_missing() -> None:
    stream = StreamFacts(stream="a", emitted=6055, collected=6055, total=100_000)
    o = derive_outcome(facts(cancelled=True, collect={"done_status": None, "streams": {"a": stream}}))
    [a] = o.streams
    assert a.coverage == "unproven" and a.records_missing_estimate == 100_000 - 6055
    assert o.records_missing_estimate == 93_945


def test_open_item_gaps_and_unaccounted_keys_are_missing_records() -> None:
    coverage = {"a": CoverageFact(stream="a", required=10, hydrated=6, gap_backed=1)}
    plan = RetryPlan(gaps_open_by_stream={"a": 4}, missing_by_stream={"a": 4}, gaps_open_total=4)
    o = derive_outcome(facts(collect={"coverage": coverage}, plan=plan))
    assert (o.streams[0].records_missing_estimate, o.records_missing_estimate) == (4 + 3, 7)
