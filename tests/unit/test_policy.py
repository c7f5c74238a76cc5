"""pdpp_orch.policy and workflows.ids, table by table: the retry and terminal rules the store and
the workflows only apply."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from pdpp_orch import policy, walkcost
from pdpp_orch.models import (
    CheckpointFact,
    CollectFacts,
    GapKind,
    GapStatus,
    Mode,
    RecoveryClass,
    StreamCommit,
    StreamFacts,
)
from workflows import ids

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PRESSURE, TRANSIENT, UNKNOWN = RecoveryClass.PROVIDER_PRESSURE, RecoveryClass.TRANSIENT, RecoveryClass.UNKNOWN


def test_a_checkpoint_gap_still_leased_after_a_clean_run_was_not_recovered_by_it() -> None:
    # Its run's commit of the stream would have closed it: still leased, it used an attempt.
    gap = policy.ServedGap("gap_cp", TRANSIENT, 0, False, closed_by_commit=True, served=False)
    s = policy.settle(gap, "invalid_state_line", True, max_attempts=5, max_no_progress=8)
    assert (s.status, s.attempts, s.attempted) == (GapStatus.PENDING, 1, True)
    last = policy.ServedGap("gap_cp", TRANSIENT, 7, False, closed_by_commit=True, served=False)
    assert policy.settle(last, "invalid_state_line", True, 5, 8).terminal_reason == "quarantined"


@pytest.mark.parametrize(
    ("mode", "kinds", "walks"),
    [
        (Mode.FORWARD, set(), True),
        (Mode.RECOVERY, {GapKind.CHECKPOINT}, True),
        (Mode.RECOVERY, {GapKind.STREAM}, True),
        (Mode.RECOVERY, {GapKind.RUN}, True),
        (Mode.RECOVERY, {GapKind.ITEM, GapKind.CHECKPOINT}, True),
        (Mode.RECOVERY, {GapKind.ITEM}, False),
        (Mode.RECOVERY, set(), False),  # a range chunk's run: nothing leased
    ],
)
def test_which_recovery_runs_walk_their_stream_forward(mode: Mode, kinds: set[GapKind], walks: bool) -> None:
    assert policy.walks_forward(mode, kinds) is walks


def test_a_hint_adopts_the_kinds_its_recovery_can_recover() -> None:
    # A range hint's chunks close every open gap of it: it adopts ranges only; a leased hint
    # fetches items and walks streams, never a range.
    assert policy.adoptable({GapKind.RANGE}) == {GapKind.RANGE}
    leased = policy.adoptable({GapKind.CHECKPOINT})
    assert leased == policy.adoptable({GapKind.ITEM}) and GapKind.RANGE not in leased
    assert {GapKind.ITEM, GapKind.CHECKPOINT, GapKind.STREAM, GapKind.RUN} <= leased


@pytest.mark.parametrize(
    ("cls", "attempts", "has_locator", "seen_again", "clean", "expected"),
    [
        # A resource gap a clean run did not report again was fetched: recovered at its first attempt.
        (TRANSIENT, 0, False, False, True, (GapStatus.RECOVERED, 1, None)),
        # ... but not when the run reported it missing again, or the run was not clean.
        (TRANSIENT, 0, False, True, True, (GapStatus.PENDING, 1, None)),
        (TRANSIENT, 0, False, False, False, (GapStatus.PENDING, 1, None)),
        # A detail gap still leased after its run was not recovered by it.
        (PRESSURE, 3, True, False, True, (GapStatus.PENDING, 4, None)),
        # No progress for 8 attempts: quarantined, whatever the class.
        (PRESSURE, 7, True, False, False, (GapStatus.TERMINAL, 8, "quarantined")),
        (TRANSIENT, 7, False, True, True, (GapStatus.TERMINAL, 8, "quarantined")),
        # Turned permanent (no longer runtime-retryable): terminal after max_attempts (5).
        (UNKNOWN, 3, True, False, False, (GapStatus.PENDING, 4, None)),
        (UNKNOWN, 4, True, False, False, (GapStatus.TERMINAL, 5, "permanent:not_found")),
        (RecoveryClass.OWNER_ACTION, 4, False, True, True, (GapStatus.TERMINAL, 5, "permanent:not_found")),
        # A retryable one is not held to max_attempts.
        (PRESSURE, 4, True, False, False, (GapStatus.PENDING, 5, None)),
    ],
)
def test_settle_decides_each_served_gap(
    cls: RecoveryClass,
    attempts: int,
    has_locator: bool,
    seen_again: bool,
    clean: bool,
    expected: tuple[GapStatus, int, str | None],
) -> None:
    gap = policy.ServedGap("gap_1", cls, attempts, has_locator, seen_again)
    s = policy.settle(gap, "not_found", clean, max_attempts=5, max_no_progress=policy.MAX_NO_PROGRESS)
    assert (s.status, s.attempts, s.terminal_reason) == expected


@pytest.mark.parametrize(
    ("cls", "attempt", "seconds"),
    [
        (PRESSURE, 1, 900),
        (PRESSURE, 2, 1800),
        (PRESSURE, 8, 86400),  # capped at a day
        (TRANSIENT, 1, 300),
        (TRANSIENT, 3, 1200),
        (TRANSIENT, 100, 6 * 3600),  # capped, and never multiplied towards an overflow
    ],
)
def test_backoff_without_an_upstream_signal(cls: RecoveryClass, attempt: int, seconds: int) -> None:
    assert policy.RetryPolicy().delay(cls, attempt) == timedelta(seconds=seconds)
    assert policy.not_before(NOW, None, policy.RetryPolicy(), cls, attempt) == NOW + timedelta(
        seconds=seconds
    )


def test_the_upstreams_signal_wins_over_the_backoff() -> None:
    signalled = NOW + timedelta(hours=24)
    assert policy.not_before(NOW, signalled, policy.RetryPolicy(), PRESSURE, 1) == signalled


@pytest.mark.parametrize(("idle", "minutes"), [(1, 5), (2, 10), (3, 20), (7, 320), (8, 360), (30, 360)])
def test_idle_backoff_doubles_to_six_hours(idle: int, minutes: int) -> None:
    assert policy.idle_backoff(idle) == timedelta(minutes=minutes)


def group(kind: GapKind, **kw: object) -> policy.GapGroup:
    base: dict[str, object] = {
        "stream": "messages",
        "kind": kind,
        "reason": "rate_limited",
        "recovery_class": PRESSURE,
        "count": 3,
        "not_before": None,
        "attempts": 0,
    }
    return policy.GapGroup(**{**base, **kw})  # type: ignore[arg-type]


def test_an_item_hint_refers_to_its_gaps_and_costs_each() -> None:
    h = policy.hint_for("hint_x", group(GapKind.ITEM), policy.RetryPolicy(), 2, NOW, 8)
    assert h.scope.stream == "messages" and h.scope.include_resources is not None
    assert (h.scope.include_resources.count, h.scope.include_resources.ref) == (3, "gaps?hint_id=hint_x")
    assert (h.gap_count, h.estimated_cost, h.attempt, h.max_attempts) == (3, 6, 1, 8)
    assert h.not_before == NOW + timedelta(seconds=900)


def chunks_of(*subjects: str, max_days: int | None = None) -> list[tuple[str | None, str | None]]:
    g = group(GapKind.RANGE, ranges=subjects, max_days=max_days, count=1, recovery_class=TRANSIENT)
    h = policy.hint_for("hint_r", g, policy.RetryPolicy(), 1, NOW, 8)
    assert h.estimated_cost == len(h.scope.time_ranges or []) and h.scope.include_resources is None
    return [(c.since, c.until) for c in h.scope.time_ranges or []]


def test_a_range_hint_is_cut_into_half_open_chunks_that_meet_at_their_bounds() -> None:
    # [2021-04-20, 2021-07-31) is 102 days: 40 + 40 + 22, each chunk's until the next's since.
    assert chunks_of('{"since":"2021-04-20","until":"2021-07-31"}', max_days=40) == [
        ("2021-04-20", "2021-05-30"),
        ("2021-05-30", "2021-07-09"),
        ("2021-07-09", "2021-07-31"),
    ]
    # Exactly two chunks' worth: no empty third one.
    assert chunks_of('{"since":"2025-01-01","until":"2025-01-07"}', max_days=3) == [
        ("2025-01-01", "2025-01-04"),
        ("2025-01-04", "2025-01-07"),
    ]
    # Without a length the source accepted: the range as it is, one chunk.
    assert chunks_of('{"since":"2025-01-01","until":"2025-01-07"}') == [("2025-01-01", "2025-01-07")]


def test_a_range_with_times_keeps_its_own_bounds_and_is_covered_to_its_end() -> None:
    # An until at 12:00 touches 2025-01-07: the last chunk ends at the range's own until, not at
    # the day before it (and a since at 18:00 begins the first chunk).
    assert chunks_of('{"since":"2025-01-01T18:00:00Z","until":"2025-01-07T12:00:00Z"}', max_days=3) == [
        ("2025-01-01T18:00:00Z", "2025-01-04"),
        ("2025-01-04", "2025-01-07"),
        ("2025-01-07", "2025-01-07T12:00:00Z"),
    ]
    # An offset is read as the time it is: 2025-01-04T02:00+05:00 is 21:00 UTC on the 3rd.
    assert chunks_of('{"since":"2025-01-01","until":"2025-01-04T02:00:00+05:00"}', max_days=2) == [
        ("2025-01-01", "2025-01-03"),
        ("2025-01-03", "2025-01-04T02:00:00+05:00"),
    ]
    # An empty range is fetched as it is (nothing), a range that ends before it begins and bounds
    # that are no times as the whole stream; open-ended ranges as the widest of them.
    empty = ("2025-01-01", "2025-01-01")
    assert chunks_of('{"since":"2025-01-01","until":"2025-01-01"}', max_days=2) == [empty]
    assert chunks_of('{"since":"2025-01-02","until":"2025-01-01"}') == [(None, None)]
    assert chunks_of('{"since":"2025-02-01"}', '{"since":"2025-01-01"}', '{"until":"2024-01-01"}') == [
        ("2025-01-01", None),
        (None, "2024-01-01"),
    ]


def test_a_range_of_too_many_chunks_is_cut_into_longer_ones_still_meeting() -> None:
    # Ranges of 1,001 and 153 days, one day at a time, would be 1,154 recovery runs: their whole
    # span, from the earliest since to the latest until, is cut into longer chunks that still meet.
    got = chunks_of(
        '{"since":"2020-01-01","until":"2022-09-27T06:00:00Z"}',
        '{"since":"2019-12-31T23:00:00Z","until":"2020-06-01"}',
        max_days=1,
    )
    assert len(got) <= policy.MAX_RANGE_CHUNKS - 3
    assert got[0][0] == "2019-12-31T23:00:00Z" and got[-1][1] == "2022-09-27T06:00:00Z"
    assert all(a[1] == b[0] for a, b in itertools.pairwise(got))
    lengths = {(date.fromisoformat(b or "") - date.fromisoformat(a or "")).days for a, b in got[1:-1]}
    assert lengths == {11}  # ceil(1,002 days touched / 97)


def test_a_whole_run_gap_has_no_stream_scope() -> None:
    g = group(GapKind.RUN, stream=policy.NO_STREAM, count=1, recovery_class=TRANSIENT, attempts=2)
    h = policy.hint_for("hint_run", g, policy.RetryPolicy(), 5, NOW, 8)
    # Nothing known of what its walk re-collects: one item's worth.
    assert (h.scope.stream, h.estimated_cost, h.attempt) == (None, 5, 3)


@pytest.mark.parametrize("kind", [GapKind.STREAM, GapKind.CHECKPOINT, GapKind.RUN])
def test_a_walk_is_priced_at_what_its_stream_held_last_time(kind: GapKind) -> None:
    # One gap, but its recovery re-collects the stream from its committed cursor: the 1,200
    # records its last committed collection collected, at 2 units each.
    g = group(kind, count=1, recovery_class=TRANSIENT, walk_records=1200)
    h = policy.hint_for("hint_w", g, policy.RetryPolicy(), 2, NOW, 8)
    assert (h.gap_count, h.estimated_cost) == (1, 2400)
    assert walkcost.walks(h) and h.scope.include_resources is None and not h.scope.time_ranges
    items = policy.hint_for("hint_i", group(GapKind.ITEM, walk_records=1200), policy.RetryPolicy(), 2, NOW, 8)
    assert items.estimated_cost == 6 and not walkcost.walks(items)


def test_a_walk_re_reads_what_was_collected_past_the_committed_cursor() -> None:
    assert walkcost.stream_walk(38000, 37900, None) == 100  # Case A: the last page again
    assert walkcost.stream_walk(120, 120, None) == 120  # committed at its end: an increment like it
    assert walkcost.stream_walk(120, None, None) == 120
    assert walkcost.stream_walk(None, None, 4) == 4  # never committed: all that is stored
    assert walkcost.stream_walk(None, None, None) is None


def test_a_walk_asks_for_all_of_its_estimate_at_most_a_window_and_pays_what_it_found_beyond() -> None:
    assert walkcost.walk_cost(0, 3) == walkcost.walk_cost(None, 3) == 3
    assert walkcost.walk_grant(2400, 2, None) == 2400  # unlimited
    assert walkcost.walk_grant(2400, 2, 5000) == 2400
    # Dearer than a whole window: it waits for an untouched window and takes all of it.
    assert walkcost.walk_grant(2400, 2, 2000) == 2000
    assert walkcost.walk_grant(2400, 2, 1) == 2  # never less than one item (then it never runs)
    # Charged after as a forward run is (records and gaps found): beyond its grant only.
    assert walkcost.walk_overspend(1300, 1, 2, 2400) == 202
    assert walkcost.walk_overspend(900, 0, 2, 2400) == 0  # no refund


def facts(**kw: object) -> CollectFacts:
    f = CollectFacts.model_validate({"done_status": "succeeded", **kw})
    f.checkpoints["a"] = CheckpointFact(stream="a", staged=1, proven_seq=10)
    f.checkpoints["b"] = CheckpointFact(
        stream="b", staged=1, proven_seq=None, unproven_reason="coverage_unaccounted"
    )
    return f


@pytest.mark.parametrize(
    ("kw", "strict", "a", "b"),
    [
        ({}, False, None, "coverage_unaccounted"),
        ({"cancelled": True}, False, "cancelled", "cancelled"),
        ({"done_status": "failed"}, False, None, "coverage_unaccounted"),
        ({"done_status": "failed"}, True, "pdpp_strict_run_failed", "pdpp_strict_run_failed"),
        ({}, True, None, "coverage_unaccounted"),
    ],
)
def test_which_checkpoints_may_commit(
    kw: dict[str, object], strict: bool, a: str | None, b: str | None
) -> None:
    f = facts(**kw)
    assert (policy.why_not_committed("a", f, strict), policy.why_not_committed("b", f, strict)) == (a, b)


def test_a_scoped_recovery_runs_checkpoint_is_withheld_whatever_the_policy() -> None:
    f = facts()
    f.checkpoints["a"].resume_only = True
    assert {policy.why_not_committed("a", f, strict) for strict in (False, True)} == {"scoped_recovery"}
    assert "scoped_recovery" in policy.WITHHELD
    f.cancelled = True
    assert policy.why_not_committed("a", f, False) == "cancelled"


def test_a_certified_stream_failure_commits_the_siblings_under_pdpp_strict() -> None:
    f = facts(done_status="failed", done_error_code="stream_collection_failed")
    f.streams["b"] = StreamFacts(stream="b", skipped_by_reason={"stream_collection_failed": 1})
    assert policy.why_not_committed("a", f, True) is None
    assert policy.why_not_committed("b", f, True) == "pdpp_strict_run_failed"


@pytest.mark.parametrize(
    ("reason", "cls"),
    [
        ("state_too_large", RecoveryClass.OWNER_ACTION),
        ("coverage_unaccounted", RecoveryClass.CONNECTOR_DEFECT),
        ("after_protocol_violation", TRANSIENT),
        (None, TRANSIENT),
    ],
)
def test_what_kind_of_miss_a_lost_checkpoint_is(reason: str | None, cls: RecoveryClass) -> None:
    assert policy.checkpoint_gap_class(StreamCommit(stream="a", committed=False, reason=reason)) is cls


def test_hint_ids_are_stable_per_group_and_requeue_ids_new_every_time() -> None:
    assert policy.hint_id("run-1", "a", "item", "rate_limited") == policy.hint_id(
        "run-1", "a", "item", "rate_limited"
    )
    assert policy.hint_id("run-1", "a", "item", "rate_limited") != policy.hint_id(
        "run-2", "a", "item", "rate_limited"
    )
    first, again = policy.requeue_hint_id("gap_1", "n1"), policy.requeue_hint_id("gap_1", "n2")
    assert first != again and first.startswith("hint_")


def test_recovery_run_ids_differ_for_every_hint_and_every_recovery_of_it() -> None:
    # Requeued hints share a prefix; the old run id kept only 8 characters of the hint, so all of
    # them (and every restart of one) got the same run id.
    a, b = policy.requeue_hint_id("gap_a", "n"), policy.requeue_hint_id("gap_b", "n")
    assert ids.legacy_recovery_run_id("c", "hint_requeue_aaaa", 1) == ids.legacy_recovery_run_id(
        "c", "hint_requeue_bbbb", 1
    )
    made = {
        ids.recovery_run_id("c", a, "exec0001-x", 1),
        ids.recovery_run_id("c", b, "exec0001-x", 1),
        ids.recovery_run_id("c", a, "exec0002-x", 1),
        ids.recovery_run_id("c", a, "exec0001-x", 2),
    }
    assert len(made) == 4
