"""`report`'s "am I missing anything?", about now: the present (the ledger as it stands, every
hint's fate) over the latest finished forward run's outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pdpp_orch.models import (
    CommitStatus,
    GapKind,
    GapStatus,
    HintProgress,
    LiveStatus,
    Mode,
    RecoveryClass,
    RecoveryEnd,
    RecoveryEnding,
    RecoveryState,
    RecoveryStep,
    RunError,
    RunOutcome,
    RunStatus,
    StreamOutcome,
    Trigger,
)
from pdpp_orch.present.derive import present
from pdpp_orch.present.estimate import OpenGaps
from pdpp_orch.present.model import HintLedger, Present, RecoveryLook, WorkflowState
from pdpp_orch.report import Severity, build, to_html
from pdpp_orch.store import RunRow
from pdpp_orch.store.reports import CommittedState, GapCounts, HeldRecords, ReportRows

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def outcome(status: RunStatus, **kw: Any) -> RunOutcome:
    base: dict[str, Any] = dict(
        run_id="r1",
        connector="c",
        trigger=Trigger.MANUAL,
        mode=Mode.FORWARD,
        status=status,
        needs_retry=False,
        reason=None,
        records_emitted=100,
        records_durable=100,
        records_rejected=0,
        state_streams_staged=1,
        state_streams_committed=1,
        checkpoint_commit_status=CommitStatus.COMMITTED,
        skipped_by_reason={},
        gaps_opened=0,
        gaps_recovered=0,
        gaps_open_total=0,
        streams=[
            StreamOutcome(stream="a", collected=100, checkpoint="committed", coverage="complete", gaps_open=0)
        ],
        started_at=NOW - timedelta(hours=1),
        finished_at=NOW - timedelta(minutes=50),
    )
    return RunOutcome(**{**base, **kw})


def rows(o: RunOutcome | None, gaps: list[GapCounts] | None = None, running: bool = False) -> ReportRows:
    runs = []
    if o is not None:
        runs.append(
            RunRow(
                run_id=o.run_id,
                connector="c",
                trigger=Trigger.MANUAL,
                mode=Mode.FORWARD,
                status=o.status,
                needs_retry=o.needs_retry,
                reason=o.reason,
                attempt=1,
                records_emitted=o.records_emitted,
                records_durable=o.records_durable,
                outcome=o,
                started_at=o.started_at,
                finished_at=o.finished_at,
            )
        )
    if running:
        runs.append(
            RunRow(
                run_id="r2",
                connector="c",
                trigger=Trigger.MANUAL,
                mode=Mode.FORWARD,
                status=LiveStatus.RUNNING,
                needs_retry=False,
                reason=None,
                attempt=1,
                records_emitted=10,
                records_durable=10,
                outcome=None,
                started_at=NOW,
                finished_at=None,
            )
        )
    return ReportRows(
        records=[HeldRecords(connector="c", stream="a", held=100, deleted=0, last_write=NOW)],
        state=[CommittedState(connector="c", stream="a", cursor_bytes=20, run_id="r1", committed_at=NOW)],
        gaps=gaps or [],
        runs=runs,
        asks=[],
    )


def gap(status: GapStatus, n: int, *, not_before: datetime | None = None) -> GapCounts:
    return GapCounts(
        connector="c",
        stream="a",
        kind=GapKind.ITEM,
        reason="rate_limited",
        recovery_class=RecoveryClass.PROVIDER_PRESSURE,
        status=status,
        n=n,
        next_retry=not_before,
        planned=n,
    )


def now_with(look: RecoveryLook, **ledger: Any) -> dict[str, Present]:
    """Connector c's present with one hint of 4 rate-limited gaps of stream a."""
    h = HintLedger(
        hint_id="hint_x", stream="a", kind=GapKind.ITEM, reason="rate_limited",
        recovery_class=RecoveryClass.PROVIDER_PRESSURE, **ledger,
    )  # fmt: skip
    open_gaps = {"a": [OpenGaps(GapKind.ITEM, h.open)]} if h.open else {}
    return {"c": present("c", [h], {"hint_x": look}, open_gaps, [], NOW)}


def waiting(until: datetime) -> RecoveryLook:
    live = RecoveryState(step=RecoveryStep.WAITING_NOT_BEFORE, until=until)
    return RecoveryLook(workflow_id="recovery-hint_x", state=WorkflowState.RUNNING, live=live)


def test_nothing_missing_only_when_the_latest_forward_run_succeeded_and_nothing_is_open() -> None:
    [r] = build(rows(outcome(RunStatus.SUCCEEDED)), {}, {}, NOW)
    assert (r.missing_anything, r.severity, r.verdict) == (
        False,
        Severity.OK,
        "none known missing now · 100 records",
    )


def test_a_failed_crashed_or_cancelled_latest_run_is_missing_something_and_says_what() -> None:
    failed = outcome(
        RunStatus.FAILED,
        records_durable=0,
        reason="connector_exit_without_done",
        error=RunError(
            kind="connector_exit_without_done", message="the connector exited (code 1) without DONE"
        ),
    )
    crashed = outcome(RunStatus.PARTIALLY_COMPLETED, reason="connector_exit_without_done")
    cancelled = outcome(RunStatus.CANCELLED, reason="cancelled")
    for o in (failed, crashed, cancelled):
        [r] = build(rows(o), {}, {}, NOW)
        assert r.missing_anything and r.severity is Severity.FAILING, o.status
        assert f"latest run {o.status.value}" in r.verdict and "pdpp-orch status r1" in r.verdict
    [r] = build(rows(failed), {}, {}, NOW)
    assert "the connector exited (code 1) without DONE" in r.verdict


def test_an_unfinished_run_coverage_is_not_complete_and_its_missing_estimate_shows() -> None:
    stream = StreamOutcome(
        stream="a",
        collected=6055,
        checkpoint="cancelled",
        coverage="unproven",
        gaps_open=0,
        records_missing_estimate=93_945,
    )
    [r] = build(rows(outcome(RunStatus.CANCELLED, reason="cancelled", streams=[stream])), {}, {}, NOW)
    [a] = r.streams
    assert a.coverage == "unproven" and a.records_missing_estimate == 93_945


def test_gaps_recovered_since_count_as_recovered_and_the_verdict_says_by_whom() -> None:
    partial = outcome(
        RunStatus.PARTIALLY_COMPLETED,
        reason="records_skipped",
        records_missing_estimate=4,
        streams=[
            StreamOutcome(
                stream="a", collected=100, checkpoint="committed", coverage="partial", gaps_open=4,
                records_missing_estimate=4,
            )
        ],
    )  # fmt: skip
    done = RecoveryLook(workflow_id="recovery-hint_x", state=WorkflowState.UNASKED)
    now = now_with(done, recovered=4, recovered_by=["c-recovery-x-1"], settled_at=NOW)
    [r] = build(rows(partial, [gap(GapStatus.RECOVERED, 4)]), {}, now, NOW)
    [a] = r.streams
    assert a.coverage == "recovered" and a.gaps[0].recovered == 4 and a.gaps[0].open == 0
    assert a.records_missing_estimate == 0 and r.records_missing_estimate == 0
    # Needs attention is about now: nothing, and the verdict says what became of the 4.
    assert (r.missing_anything, r.severity) == (False, Severity.OK)
    assert r.verdict == (
        "none known missing now · 100 records (rate_limited of a: all 4 recovered by c-recovery-x-1"
        " at 2026-12-02 12:00 UTC)"
    )
    assert "coverage not proven for ;" not in r.verdict


def test_next_retry_is_a_live_recoverys_time_or_says_why_none_comes_and_who_stopped_it() -> None:
    partial = outcome(RunStatus.PARTIALLY_COMPLETED, reason="records_skipped")
    due = NOW + timedelta(hours=24)
    pending = [gap(GapStatus.PENDING, 4, not_before=due)]
    [r] = build(rows(partial, pending), {}, now_with(waiting(due), pending=4), NOW)
    assert r.severity is Severity.MISSING_RETRY_PLANNED and r.next_retry == due
    assert r.next_retry_state == (
        "retry 4 × rate_limited of a: waiting for not_before, until 2026-12-03 12:00 UTC (in 24h00m),"
        " by recovery-hint_x; `pdpp-orch recover now c` brings it forward"
    )
    assert r.streams[0].gaps[0].next_retry == due
    assert "4 missing (4%)" in r.verdict
    [r] = build(rows(partial, pending), {}, now_with(waiting(NOW - timedelta(minutes=5)), pending=4), NOW)
    assert r.next_retry_state is not None and "overdue by 5m" in r.next_retry_state
    end = RecoveryEnd(
        connector="c", hint_id="hint_x", workflow_id="recovery-hint_x", ending=RecoveryEnding.CANCELLED,
        said="the demo (its worker stops with it)", at=NOW, progress=HintProgress(pending=4),
    )  # fmt: skip
    cancelled = RecoveryLook(workflow_id="recovery-hint_x", state=WorkflowState.CANCELLED, ended=end)
    [r] = build(rows(partial, pending), {}, now_with(cancelled, pending=4), NOW)
    assert r.severity is Severity.MISSING_NO_RETRY and r.next_retry is None
    # The ledger's not_before is no longer a retry anyone will make.
    assert r.streams[0].gaps[0].next_retry is None
    assert r.next_retry_state == (
        "no retry coming: 4 × rate_limited of a open: its recovery recovery-hint_x was cancelled by the demo"
        " (its worker stops with it) at 2026-12-02 12:00 UTC; `pdpp-orch recover now c` starts it again"
    )


def test_the_page_lists_what_needs_attention_worst_first_with_dated_charts() -> None:
    failing = build(rows(outcome(RunStatus.FAILED, records_durable=0)), {}, {}, NOW)
    ok = build(rows(outcome(RunStatus.SUCCEEDED)), {}, {}, NOW)
    ok[0].connector = "b"
    page = to_html([*ok, *failing], "2026-12-02 12:00 UTC")
    assert page.index("Needs attention") < page.index("<h2>b</h2>")
    assert "<b>c</b>: 100 records; latest run failed" in page
    assert "11:00</text>" in page and "start (UTC)" in page  # each run's date and time, an axis
    assert "src=" not in page and "href=" not in page


def test_a_connector_with_nothing_held_says_so_instead_of_an_empty_table() -> None:
    empty = ReportRows(records=[], state=[], gaps=[], runs=rows(outcome(RunStatus.FAILED)).runs, asks=[])
    page = to_html(build(empty, {}, {}, NOW), "2026-12-02 12:00 UTC")
    assert "no stream has records or checkpoints yet" in page
    assert "<th>records held</th>" not in page
