"""`report`'s "am I missing anything?", derived from the same facts as the outcome: the latest
finished forward run, the ledger as it stands now, and what the recoveries are doing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pdpp_orch.models import (
    CommitStatus,
    GapKind,
    GapStatus,
    LiveStatus,
    Mode,
    RecoveryClass,
    RunError,
    RunOutcome,
    RunStatus,
    StreamOutcome,
    Trigger,
)
from pdpp_orch.report import RecoveryState, Severity, build, to_html
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


def recovery(running: bool, state: str, next_retry: datetime | None) -> RecoveryState:
    return RecoveryState(
        workflow_id="recovery-hint_x",
        stream="a",
        reason="rate_limited",
        open=4,
        running=running,
        state=state,
        next_retry=next_retry,
    )


def test_nothing_missing_only_when_the_latest_forward_run_succeeded_and_nothing_is_open() -> None:
    [r] = build(rows(outcome(RunStatus.SUCCEEDED)), {}, {}, NOW)
    assert (r.missing_anything, r.severity, r.verdict) == (
        False,
        Severity.OK,
        "nothing missing · 100 records",
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


def test_gaps_recovered_since_count_as_recovered() -> None:
    partial = outcome(
        RunStatus.PARTIALLY_COMPLETED,
        reason="records_skipped",
        streams=[
            StreamOutcome(stream="a", collected=100, checkpoint="committed", coverage="partial", gaps_open=4)
        ],
    )
    [r] = build(rows(partial, [gap(GapStatus.RECOVERED, 4)]), {}, {}, NOW)
    [a] = r.streams
    assert a.coverage == "recovered" and a.gaps[0].recovered == 4 and a.gaps[0].open == 0
    assert a.records_missing_estimate == 0


def test_next_retry_is_a_live_recoverys_future_time_or_says_why_none_comes() -> None:
    partial = outcome(RunStatus.PARTIALLY_COMPLETED, reason="records_skipped")
    due = NOW + timedelta(hours=24)
    live = {"c": [recovery(True, "waiting until not_before", due)]}
    [r] = build(rows(partial, [gap(GapStatus.PENDING, 4, not_before=due)]), {}, live, NOW)
    assert r.severity is Severity.MISSING_RETRY_PLANNED and r.next_retry == due
    assert r.next_retry_state == "next retry 2026-12-03 12:00 UTC (in 24h00m)"
    assert "4 missing (4%)" in r.verdict
    late = {"c": [recovery(True, "waiting", NOW - timedelta(minutes=5))]}
    [r] = build(rows(partial, [gap(GapStatus.PENDING, 4)]), {}, late, NOW)
    assert r.next_retry_state is not None and "overdue by 5m" in r.next_retry_state
    cancelled = {"c": [recovery(False, "canceled", None)]}
    [r] = build(rows(partial, [gap(GapStatus.PENDING, 4)]), {}, cancelled, NOW)
    assert r.severity is Severity.MISSING_NO_RETRY and r.next_retry is None
    assert (
        r.next_retry_state
        == "no retry coming: its recovery is canceled; `pdpp-orch recover now c` starts it again"
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
