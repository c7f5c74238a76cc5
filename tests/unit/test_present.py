"""The read model of the present, table by table: every fate of a retry hint from the ledger and
what its recovery says, the estimate of what open gaps stand for, and the present of a run where
its end and now differ."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pdpp_orch.models import (
    CommitStatus,
    GapKind,
    HintProgress,
    HintScope,
    Mode,
    RecoveryClass,
    RecoveryEnd,
    RecoveryEnding,
    RecoveryState,
    RecoveryStep,
    RetryHint,
    RunOutcome,
    RunStatus,
    StreamOutcome,
    TimeRange,
    Trigger,
)
from pdpp_orch.present.derive import brief, present
from pdpp_orch.present.estimate import Missing, OpenGaps, missing, missing_text, range_estimate
from pdpp_orch.present.fates import hint_now
from pdpp_orch.present.model import Fate, HintLedger, LaterRun, RecoveryLook, UnplannedGaps, WorkflowState

NOW = datetime(2026, 12, 4, 14, 58, tzinfo=UTC)
WID = "recovery-hint_x"
RUN = "c-recovery-x-e1-1"


def ledger(**kw: Any) -> HintLedger:
    return HintLedger(
        hint_id="hint_x",
        stream="item_details",
        kind=GapKind.ITEM,
        reason="rate_limited",
        recovery_class=RecoveryClass.PROVIDER_PRESSURE,
        **kw,
    )


def live(step: RecoveryStep, until: datetime | None = None, **kw: Any) -> RecoveryLook:
    state = RecoveryState(step=step, until=until, **kw)
    return RecoveryLook(workflow_id=WID, state=WorkflowState.RUNNING, live=state)


def ended(
    state: WorkflowState, ending: RecoveryEnding | None = None, said: str | None = None
) -> RecoveryLook:
    end = None
    if ending is not None:
        end = RecoveryEnd(
            connector="c", hint_id="hint_x", workflow_id=WID, ending=ending, said=said,
            at=NOW - timedelta(minutes=1), progress=HintProgress(pending=300), runs=5,
        )  # fmt: skip
    return RecoveryLook(workflow_id=WID, state=state, ended=end)


SOON = NOW + timedelta(minutes=58)
FATES = [
    # (ledger, look, fate, words said, command)
    (
        {"pending": 300},
        live(RecoveryStep.WAITING_NOT_BEFORE, SOON),
        Fate.WAITING,
        "retry 300 × rate_limited of item_details: waiting for not_before,"
        " until 2026-12-04 15:56 UTC (in 58m), by recovery-hint_x",
        "`pdpp-orch recover now c` brings it forward",
    ),
    (
        {"pending": 300},
        live(RecoveryStep.WAITING_NOT_BEFORE, NOW - timedelta(minutes=2)),
        Fate.WAITING,
        "until 2026-12-04 14:56 UTC (overdue by 2m) (overdue: is a worker up?)",
        "`pdpp-orch recover now c` brings it forward",
    ),
    (
        {"pending": 100, "recovered": 200, "recovered_by": [RUN]},
        live(RecoveryStep.WAITING_BUDGET, SOON),
        Fate.WAITING_BUDGET,
        "retry 100 × rate_limited of item_details: waiting for the budget's next window,"
        " until 2026-12-04 15:56 UTC (in 58m), by recovery-hint_x (200 recovered so far)",
        "`pdpp-orch budget c` shows the budget",
    ),
    (
        {"pending": 300},
        live(RecoveryStep.BACKING_OFF, SOON),
        Fate.BACKING_OFF,
        "backing off after a round without progress",
        "`pdpp-orch recover now c` brings it forward",
    ),
    (
        {"leased": 300},
        live(RecoveryStep.RECOVERING, run_id=RUN, round=1),
        Fate.RUNNING,
        f"retry 300 × rate_limited of item_details: recovery run {RUN} (round 1) in progress",
        f"`pdpp-orch watch {RUN}` follows it",
    ),
    (
        {"pending": 300, "next_retry": SOON},
        RecoveryLook(workflow_id=WID, state=WorkflowState.RUNNING, no_worker="pdpp-demo-1"),
        Fate.WAITING,
        "waiting, until 2026-12-04 15:56 UTC (in 58m), by recovery-hint_x"
        " (no worker polls its task queue pdpp-demo-1)",
        "`pdpp-orch recover show c`; is `pdpp-orch worker` up?",
    ),
    (
        {"recovered": 300, "recovered_by": [RUN], "settled_at": NOW},
        ended(WorkflowState.UNASKED),
        Fate.RECOVERED,
        f"rate_limited of item_details: all 300 recovered by {RUN} at 2026-12-04 14:58 UTC",
        None,
    ),
    (
        {
            "recovered": 2,
            "terminal": 1,
            "terminal_reasons": {"permanent:not_found": 1},
            "recovered_by": [RUN],
        },
        ended(WorkflowState.UNASKED),
        Fate.PARTLY_RECOVERED,
        f"2 of 3 recovered by {RUN}, 1 permanent:not_found: no longer retried",
        "`pdpp-orch gaps list c --status terminal` lists them;"
        " `pdpp-orch gaps requeue GAP_ID` tries one again",
    ),
    (
        {"terminal": 3, "terminal_reasons": {"quarantined": 3}},
        ended(WorkflowState.UNASKED),
        Fate.EXHAUSTED,
        "none recovered, 3 quarantined: no longer retried",
        "`pdpp-orch gaps requeue GAP_ID` tries one again",
    ),
    (
        {"recovered": 1, "recovered_by": ["c-20261204-later"], "recovered_by_forward": ["c-20261204-later"]},
        ended(WorkflowState.UNASKED),
        Fate.SUPERSEDED,
        "superseded, closed by the later run c-20261204-later",
        None,
    ),
    (
        {"pending": 300},
        ended(WorkflowState.CANCELLED, RecoveryEnding.CANCELLED, "the demo (its worker stops with it)"),
        Fate.CANCELLED,
        "300 × rate_limited of item_details open: its recovery recovery-hint_x was cancelled by the demo"
        " (its worker stops with it) at 2026-12-04 14:57 UTC",
        "`pdpp-orch recover now c` starts it again",
    ),
    (
        {"pending": 300},
        ended(WorkflowState.ABSENT, RecoveryEnding.CANCELLED, "an operator (`pdpp-orch recover cancel`)"),
        Fate.CANCELLED,
        "was cancelled by an operator (`pdpp-orch recover cancel`)",
        "`pdpp-orch recover now c` starts it again",
    ),
    (
        {"pending": 300},
        ended(WorkflowState.CANCELLED),
        Fate.CANCELLED,
        "cancelled by someone who gave no reason (the web UI, `temporal`)",
        "`pdpp-orch recover now c` starts it again",
    ),
    (
        {"pending": 1},
        ended(WorkflowState.COMPLETED, RecoveryEnding.GAVE_UP),
        Fate.STOPPED,
        "1 × rate_limited of item_details open: its recovery gave up after 5 run(s)",
        "`pdpp-orch recover now c` starts it again",
    ),
    (
        {"pending": 300},
        ended(WorkflowState.ABSENT),
        Fate.STOPPED,
        "no recovery is running (none was started, or Temporal no longer remembers it)",
        "`pdpp-orch recover now c` starts it again",
    ),
    (
        {"pending": 300},
        ended(WorkflowState.UNREACHABLE),
        Fate.UNKNOWN,
        "Temporal did not answer for recovery-hint_x",
        "`pdpp-orch recover show c`",
    ),
]


@pytest.mark.parametrize(
    ("counts", "look", "fate", "says", "command"), FATES, ids=[f[2].value for f in FATES]
)
def test_every_fate_of_a_hint_is_told_with_the_command_that_acts_on_it(
    counts: dict[str, Any], look: RecoveryLook, fate: Fate, says: str, command: str | None
) -> None:
    h = hint_now(ledger(**counts), look, "c", NOW)
    assert h.fate is fate
    assert says in h.says, h.says
    assert (h.command is None) if command is None else (h.command is not None and command in h.command)
    assert h.fate.live == (fate in (Fate.WAITING, Fate.WAITING_BUDGET, Fate.BACKING_OFF, Fate.RUNNING))


def test_a_command_that_needs_the_connector_known_says_what_to_start_where_it_is_not() -> None:
    note = " (the demo's connectors run while `pdpp-orch demo --serve` serves)"
    h = hint_now(ledger(pending=1), ended(WorkflowState.CANCELLED), "demo_slack", NOW, note)
    assert h.command == f"`pdpp-orch recover now demo_slack` starts it again{note}"
    # Bringing a running recovery forward needs no registry: no note.
    h = hint_now(ledger(pending=1), live(RecoveryStep.WAITING_NOT_BEFORE, SOON), "demo_slack", NOW, note)
    assert h.command == "`pdpp-orch recover now demo_slack` brings it forward"


@pytest.mark.parametrize(
    ("groups", "checkpoints", "records", "unknown"),
    [
        ([OpenGaps(GapKind.ITEM, 300)], True, 300, 0),
        ([OpenGaps(GapKind.RANGE, 1, estimated=4224)], True, 4224, 0),
        ([OpenGaps(GapKind.RANGE, 1, unestimated=1)], True, 0, 1),
        ([OpenGaps(GapKind.STREAM, 1, estimated=50)], True, 50, 0),
        ([OpenGaps(GapKind.RUN, 1, unestimated=1)], True, 0, 1),
        ([OpenGaps(GapKind.INTERACTION, 1, unestimated=1)], True, 0, 1),
        # A lost checkpoint stands for the coverage keys behind it; none when only the cursor is lost.
        ([OpenGaps(GapKind.CHECKPOINT, 1, estimated=7)], True, 7, 0),
        ([OpenGaps(GapKind.CHECKPOINT, 1, unestimated=1)], True, 0, 0),
        ([OpenGaps(GapKind.CHECKPOINT, 1, estimated=7)], False, 0, 0),
        ([OpenGaps(GapKind.ITEM, 2), OpenGaps(GapKind.RANGE, 1, estimated=10)], True, 12, 0),
    ],
)
def test_what_open_gaps_stand_for_by_kind(
    groups: list[OpenGaps], checkpoints: bool, records: int, unknown: int
) -> None:
    assert missing(groups, checkpoints=checkpoints) == Missing(records, unknown)


def test_a_range_is_estimated_from_the_density_of_what_its_run_covered() -> None:
    # Case D: 219 transactions in the 90 days the bank served of five years asked for, every
    # range half-open: [2021-04-20, 2026-04-20) is 1,826 days, [2021-04-20, 2026-01-20) 1,736.
    asked = TimeRange(since="2021-04-20", until="2026-04-20")
    uncovered = TimeRange(since="2021-04-20", until="2026-01-20")
    assert range_estimate(219, asked, uncovered) == round(219 * 1736 / 90)
    # Half-open days: [01-01, 01-02) is one day uncovered of the three [01-01, 01-03 12:00)
    # touches, so 90 records in two days covered stand for 45 (read inclusively: 180).
    three = TimeRange(since="2026-01-01", until="2026-01-03T12:00:00Z")
    assert range_estimate(90, three, TimeRange(since="2026-01-01", until="2026-01-02")) == 45
    assert range_estimate(219, TimeRange(since="2021-04-20"), uncovered) is None  # open-ended: unknown
    assert range_estimate(0, asked, uncovered) is None
    # A range gap's bounds are the connector's words: one that is no date is of unknown size
    # (it failed the run's plan with a ValueError when the present merged with bounded words).
    assert range_estimate(219, asked, TimeRange(since="yesterday", until="x" * 64)) is None
    assert range_estimate(219, TimeRange(since="0001-01-01", until="x"), uncovered) is None
    assert missing_text(Missing(0, 1)) == "1 gap(s) of unknown size open"
    assert missing_text(Missing(3, 0), 8) == "3 missing (38%)"


def outcome(**kw: Any) -> RunOutcome:
    base: dict[str, Any] = dict(
        run_id="c-1", connector="c", trigger=Trigger.MANUAL, mode=Mode.FORWARD,
        status=RunStatus.PARTIALLY_COMPLETED, needs_retry=True, reason="records_skipped",
        records_emitted=10, records_durable=10, records_rejected=0, state_streams_staged=1,
        state_streams_committed=1, checkpoint_commit_status=CommitStatus.COMMITTED,
        skipped_by_reason={"rate_limited": 300}, gaps_opened=300, gaps_recovered=0, gaps_open_total=300,
        streams=[StreamOutcome(stream="item_details", collected=10, checkpoint="committed",
                               coverage="partial", gaps_open=300, records_missing_estimate=300)],
        retry_hints=[RetryHint(hint_id="hint_x", reason="rate_limited",
                               recovery_class=RecoveryClass.PROVIDER_PRESSURE,
                               not_before=datetime(2026, 12, 4, 14, 56, tzinfo=UTC),
                               scope=HintScope(stream="item_details"), gap_count=300, estimated_cost=300,
                               attempt=1, max_attempts=8)],
        recovery_workflow_ids=[WID], records_missing_estimate=300,
        started_at=datetime(2026, 12, 4, 13, 55, tzinfo=UTC),
        finished_at=datetime(2026, 12, 4, 13, 56, tzinfo=UTC),
    )  # fmt: skip
    return RunOutcome(**{**base, **kw})


def test_a_run_whose_gaps_were_all_recovered_shows_its_end_and_now() -> None:
    done = ledger(recovered=300, recovered_by=[RUN], settled_at=NOW - timedelta(minutes=1))
    p = present("c", [done], {"hint_x": ended(WorkflowState.UNASKED)}, {}, [], NOW, outcome=outcome())
    assert p.changed and p.records_missing_estimate == 0 and p.gaps_open == 0
    assert p.at_end == (
        "at the end (2026-12-04 13:56 UTC): 300 missing (97%); retry 300 × rate_limited of item_details"
        " not before 2026-12-04 14:56 UTC (in 1h00m), 300 units, attempt 1 of 8 by recovery-hint_x"
    )
    assert p.next == [
        f"rate_limited of item_details: all 300 recovered by {RUN} at 2026-12-04 14:57 UTC",
        "nothing to do",
    ]
    assert brief(p) == "now none known missing; all 300 recovered"


def test_a_run_whose_recovery_waits_as_planned_is_unchanged() -> None:
    waiting = ledger(pending=300)
    gaps = {"item_details": [OpenGaps(GapKind.ITEM, 300)]}
    p = present("c", [waiting], {"hint_x": live(RecoveryStep.WAITING_NOT_BEFORE, SOON)}, gaps, [], NOW,
                outcome=outcome())  # fmt: skip
    assert not p.changed and p.at_end is None and brief(p) == ""
    assert p.records_missing_estimate == 300 and p.next[0].startswith("retry 300 × rate_limited")


def test_later_runs_and_gaps_nobody_retries_are_told_with_their_commands() -> None:
    failed = outcome(status=RunStatus.FAILED, needs_retry=False, retry_hints=[], records_missing_estimate=0,
                     gaps_open_total=0, reason="connector_exit_without_done", streams=[])  # fmt: skip
    p = present("c", [], {}, {}, [], NOW, outcome=failed)
    assert p.next == ["nothing retries this on its own: fix the cause above, then `pdpp-orch run c`"]
    later = [LaterRun(run_id="c-2", status="succeeded", finished_at=NOW)]
    p = present("c", [], {}, {}, [], NOW, outcome=failed, later=later)
    assert p.changed and p.next == [
        "a later run: c-2, succeeded at 2026-12-04 14:58 UTC: `pdpp-orch status c-2`"
    ]
    owner = [
        UnplannedGaps(
            stream="b", reason="credentials_expired", recovery_class=RecoveryClass.OWNER_ACTION, open=1
        )
    ]
    p = present("c", [], {}, {"b": [OpenGaps(GapKind.STREAM, 1, unestimated=1)]}, owner, NOW)
    assert p.gaps_of_unknown_size == 1 and p.records_missing_estimate == 0
    assert p.next == [
        "1 × credentials_expired of b open, not retried on its own (owner_action: the owner's to fix):"
        " `pdpp-orch gaps list c`; `pdpp-orch gaps requeue GAP_ID` tries one again"
    ]
    # A connector's own word with no class: the operator is told how to class it (ical's
    # no_calendar_sources, which no recovery_hint or mapping classes).
    unknown = [UnplannedGaps(stream="b", reason="no_sources", recovery_class=RecoveryClass.UNKNOWN, open=1)]
    p = present("c", [], {}, {"b": [OpenGaps(GapKind.STREAM, 1, unestimated=1)]}, unknown, NOW)
    assert '`[connectors.c.reasons] no_sources = "informational"` (no miss)' in p.next[0]


def test_a_recovery_run_does_not_call_the_gaps_it_was_served_not_retried() -> None:
    run = outcome(run_id="c-recovery-x-e1-1", mode=Mode.RECOVERY, trigger=Trigger.RECOVERY, retry_hints=[],
                  needs_retry=False, recovery_workflow_ids=[], gaps_open_total=2)  # fmt: skip
    p = present("c", [], {}, {}, [], NOW, outcome=run)
    assert p.at_end is not None and "not retry" not in p.at_end
    assert "recovery-hint_x settles the gaps it was served" in p.at_end


def test_gaps_given_up_are_never_followed_by_nothing_to_do() -> None:
    partly = ledger(recovered=2, terminal=1, terminal_reasons={"permanent:not_found": 1}, recovered_by=[RUN])
    p = present("c", [partly], {"hint_x": ended(WorkflowState.UNASKED)}, {}, [], NOW, outcome=outcome())
    assert len(p.next) == 1 and "no longer retried" in p.next[0] and "nothing to do" not in p.next


def test_nothing_counted_missing_reads_one_way_at_the_end_now_and_in_the_demo() -> None:
    from pdpp_orch import advice
    from pdpp_orch.cli.demo import _now_cell
    from pdpp_orch.present.derive import now_text
    from pdpp_orch.present.model import Present

    # Two gaps open that stand for no record counted: at the run's end and now, the same words.
    at_end = advice.missing(outcome(retry_hints=[], records_missing_estimate=0, gaps_open_total=2))
    now = now_text(Present(at=NOW, records_missing_estimate=0, gaps_open=2), 10)
    assert at_end == "none known missing, 2 gap(s) open"  # was "none counted missing, …"
    assert now == "now (2026-12-04 14:58 UTC): none known missing, 2 gap(s) open for the connector"
    # The demo's `now` cell: a gap of unknown size is never "nothing missing".
    unknown = Present(at=NOW, records_missing_estimate=0, gaps_of_unknown_size=1, gaps_open=1)
    assert _now_cell(unknown) == "1 gap(s) of unknown size open"
    assert _now_cell(Present(at=NOW, records_missing_estimate=0, gaps_open=0)) == "none known missing"
